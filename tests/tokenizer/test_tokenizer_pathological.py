"""No pathological cost: long runs tokenise exactly, in time roughly linear
in their size (against a quarter of the input, timed in the same process)
and in bounded memory. The absolute time bound per MB is a guard in
`python bench/tokenizer.py --pathological --guard` (a wall-clock bound fails
on a loaded machine); the bound on merge rounds for long pieces is tested
exactly in test_tokenizer_long.py.

Oracle: tiktoken; for 1 MB of spaces (one regex piece, on which tiktoken's
regex engine overflows its stack) tiktoken's BPE of that single piece."""

import os
import string
import time

import numpy as np
import pytest
import tensorflow as tf

import tokenizer_support as support

_RNG = np.random.default_rng(1234)
CASES = {
    "1 MB of spaces": " " * 1_000_000,
    "100k-letter word": "a" * 100_000,
    "100k random letters": "".join(_RNG.choice(list(string.ascii_lowercase), 100_000)),
    "1 MB of emoji": "".join(chr(c) for c in _RNG.integers(0x1F600, 0x1F650, 250_000)),
    # Every digit bigram is in the vocabulary, so the whole run is one BPE
    # sub-piece: merged in windows (ops/windows.py), not ~1000 rounds.
    "100k random digits": "".join(_RNG.choice(list(string.digits), 100_000)),
}


def _oracle(text: str) -> list[int]:
    if text.strip() == "":
        return support.tiktoken_gpt2()._encode_single_piece(text.encode())  # noqa: SLF001
    return support.oracle_ids(text)


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _timed_encode(text: str) -> tuple[list[int], float]:
    tok = support.graph_tokenizer()
    data = tf.constant([text.encode("utf-8")])
    start = time.perf_counter()
    ids, _ = tok.encode_strings(data)
    return ids.numpy().tolist(), time.perf_counter() - start


@pytest.mark.parametrize("name", list(CASES))
def test_long_runs_are_exact_and_linear(name):
    text = CASES[name]
    _timed_encode("warm up")
    quarter = min(_timed_encode(text[: len(text) // 4])[1] for _ in range(2))
    can_measure = _peak_rss_reset()
    before = _peak_rss_bytes()
    ids, full = _timed_encode(text)
    peak = _peak_rss_bytes() - before
    assert ids == _oracle(text)
    back, _ = support.graph_tokenizer().decode_bytes(ids)
    assert bytes(back.numpy().astype("uint8")) == text.encode("utf-8")
    size_mb = len(text.encode("utf-8")) / 1e6
    assert full < 12 * quarter + 0.5, f"{name}: {full:.2f} s vs {quarter:.2f} s for a quarter"
    if can_measure and os.environ.get("TFGPT2_SKIP_MEMORY_CHECK") != "1":
        assert peak < 400e6 * max(size_mb, 0.1), f"{name}: peak RSS grew {peak / 1e6:.0f} MB"
