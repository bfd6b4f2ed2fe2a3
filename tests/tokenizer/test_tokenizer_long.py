"""Long BPE pieces (ops/windows.py): exact on every family of long runs,
with a number of merge rounds bounded by the window length, not by the
input. Oracle: tiktoken (same vocabulary files).

The families: long digit runs, letter runs, mixed runs, runs with repeated
patterns, and random strings over small alphabets (which make long pieces:
most of their byte bigrams occur inside some token)."""

import random
import string

import numpy as np
import pytest
import tensorflow as tf

import tokenizer_support as support
from tfgpt2.tokenizer.ops import merge as merge_ops, windows


def _families(size: int, seed: int) -> dict[str, str]:
    rng = random.Random(seed)

    def pick(alphabet, n=size):
        return "".join(rng.choice(alphabet) for _ in range(n))

    def mixed(parts):
        out = []
        while sum(map(len, out)) < size:
            out.append(rng.choice(parts)())
        return "".join(out)[:size]

    return {
        "random digits": pick(string.digits),
        "random letters": pick(string.ascii_lowercase),
        "1111...": "1" * size,
        "1212...": "12" * (size // 2),
        "000...": "0" * size,
        "x000...": "x" + "0" * size,
        "abab...": "ab" * (size // 2),
        "babab...": "b" + "ab" * (size // 2),
        "abcabc...": "abc" * (size // 3),
        "alphabet 01": pick("01"),
        "alphabet 019": pick("019"),
        "alphabet ab": pick("ab"),
        "alphabet etaoin": pick("etaoin"),
        "alphabet -=": pick("-="),
        "digits and zero runs": mixed([lambda: "0" * rng.randint(1, 40),
                                       lambda: str(rng.randint(0, 10**9))]),
        "letters and a-runs": mixed([lambda: "a" * rng.randint(1, 40),
                                     lambda: pick("ab", rng.randint(1, 9))]),
        "dash runs": mixed([lambda: "-" * rng.randint(1, 40), lambda: "=" * rng.randint(1, 40),
                            lambda: "-=" * rng.randint(1, 9)]),
        "long number then text": pick(string.digits, size // 2) + " and " + pick("xyz", size // 2),
    }


def _encode_rows(fn, texts):
    ids, splits = fn(tf.constant([t.encode("utf-8") for t in texts]))
    ids, splits = ids.numpy(), splits.numpy()
    return [ids[a:b].tolist() for a, b in zip(splits[:-1], splits[1:])]


def _assert_exact(texts: dict[str, str], got):
    for (name, text), ids in zip(texts.items(), got):
        assert ids == support.oracle_ids(text, special_tokens=False), name


def test_long_families_are_exact_in_the_graph():
    tok = support.graph_tokenizer()
    texts = _families(100_000, seed=0)
    _assert_exact(texts, _encode_rows(tok.encode_strings, list(texts.values())))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_families_are_exact_with_other_seeds_and_sizes(seed):
    tok = support.graph_tokenizer()
    texts = _families([997, 5_003, 20_011][seed - 1], seed=seed)
    _assert_exact(texts, _encode_rows(tok.encode_strings, list(texts.values())))


def test_long_pieces_next_to_short_ones_and_across_rows():
    tok = support.graph_tokenizer()
    rng = random.Random(7)
    digits = "".join(rng.choice(string.digits) for _ in range(3000))
    texts = ["short 12 words", digits, f"x {digits} y {digits[::-1]} z", "", "1" * 97,
             "2" * 96, digits[:95] + "\n" + digits, "<|endoftext|>" + digits]
    ids, splits = tok.encode_strings(tf.constant([t.encode() for t in texts]))
    rows = tf.RaggedTensor.from_row_splits(ids, splits).to_list()
    assert rows == [support.oracle_ids(t) for t in texts]


def _count_rounds(monkeypatch) -> list[int]:
    """Record the number of tokens of every merge round (eager runs)."""
    sizes = []
    real = merge_ops.merge_round

    def counting(tok, *args):
        sizes.append(int(tf.size(tok)))
        return real(tok, *args)

    monkeypatch.setattr(merge_ops, "merge_round", counting)
    return sizes


def test_rounds_are_bounded_by_the_window_not_the_input(monkeypatch):
    programs = support.graph_tokenizer()._programs  # noqa: SLF001 -- eager, to count
    sizes = _count_rounds(monkeypatch)
    rng = np.random.default_rng(0)
    rounds = {}
    for n in (2_000, 8_000):
        digits = "".join(rng.choice(list(string.digits), n))
        sizes.clear()
        got = _encode_rows(programs._encode_strings, [digits])  # noqa: SLF001
        assert got == [support.oracle_ids(digits)]
        rounds[n] = len(sizes)
    window = windows.WINDOW + 2 * windows.HALO
    # One merge pass over the windows (at most window - 1 rounds) and one
    # over the pairs checked at the stitches; the old way needed one round
    # per distinct merge in the whole run (hundreds here).
    assert rounds[8_000] <= 2 * window, rounds
    assert rounds[8_000] <= rounds[2_000] + 8, rounds


def test_failed_stitches_are_retried_and_stay_exact(monkeypatch):
    """Tiny halos make stitches fail often: the retry (joined windows)
    must still give exact ids."""
    programs = support.graph_tokenizer()._programs  # noqa: SLF001
    calls = []
    real = windows.WindowedBpe._merge_windows  # noqa: SLF001

    def merge_windows(self, b, start, end):
        calls.append(int(tf.size(start)))
        return real(self, b, start, end)

    monkeypatch.setattr(windows.WindowedBpe, "_merge_windows", merge_windows)
    texts = _families(3_000, seed=11)
    for halo, tail in [(2, 2), (1, 1)]:
        monkeypatch.setattr(windows, "HALO", halo)
        monkeypatch.setattr(windows, "TAIL", tail)
        calls.clear()
        encode = programs._encode_strings  # noqa: SLF001
        _assert_exact(texts, _encode_rows(encode, list(texts.values())))
        assert len(calls) == 2, calls  # the windows, then the joined ones


def test_segments_failing_again_are_merged_whole(monkeypatch):
    """The last resort, forced: every stitch check fails after the first."""
    programs = support.graph_tokenizer()._programs  # noqa: SLF001
    real = windows.WindowedBpe._compatible  # noqa: SLF001
    checks = []

    def compatible(self, b, left_start, right_end, left_id):
        ok = real(self, b, left_start, right_end, left_id)
        checks.append(int(tf.size(ok)))
        if len(checks) == 1:  # fail one cut of the first check, all of the retry's
            return tf.concat([[False], ok[1:]], 0)
        return tf.zeros_like(ok, tf.bool)

    monkeypatch.setattr(windows.WindowedBpe, "_compatible", compatible)
    rng = random.Random(3)
    texts = {"digits": "".join(rng.choice(string.digits) for _ in range(2_000)),
             "letters": "".join(rng.choice(string.ascii_lowercase) for _ in range(2_000))}
    encode = programs._encode_strings  # noqa: SLF001
    _assert_exact(texts, _encode_rows(encode, list(texts.values())))
    assert len(checks) == 2 and checks[1] > 0, checks


def test_tie_period_of_gpt2():
    from tfgpt2.tokenizer import tables, vocab

    # Tokens that merge with themselves repeat with periods up to 6 bytes
    # (e.g. "\xc3\x83\xc3\x82" = "ÃÂ" repeats with period 4, "?????-" is 6).
    assert tables.tie_period(vocab.load_vocabulary()) == 6


def test_long_pieces_in_litert():
    from ai_edge_litert.interpreter import Interpreter

    from tfgpt2.tokenizer import run_tflite

    tok = support.graph_tokenizer()
    texts = list(_families(2_000, seed=5).values())
    data = [t.encode() for t in texts]
    interpreter = Interpreter(model_content=tok.to_tflite())
    flat = np.frombuffer(b"".join(data), np.uint8)
    out = run_tflite(interpreter, "encode", bytes=flat,
                     row_splits=np.cumsum([0] + [len(d) for d in data]))
    ids, splits = out["ids"].tolist(), out["row_splits"].tolist()
    got = [ids[splits[i]:splits[i + 1]] for i in range(len(texts))]
    assert got == [support.oracle_ids(t) for t in texts]
