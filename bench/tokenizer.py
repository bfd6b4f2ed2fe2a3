"""Tokenizer encode throughput: ours in graph and in LiteRT vs keras-hub and tiktoken.

    python bench/tokenizer.py [--quick] [--pathological [--guard]] [--cpu]

All peers run in this one process on the same >= 1 MB corpus
(tests/tokenizer_support.real_corpus: stdlib, numpy/TF/Keras sources,
licences, docs, multilingual and emoji samples). Each timing is the median
of 3 runs after a warm-up; tracing is never timed. keras-hub's tokenizer
caches the words it has seen, so each of its runs uses a fresh tokenizer
(warmed up and traced on unrelated text) and the corpus is new to it; it is
timed both on the whole corpus in one call and one call per document (its
cache emptied before each), and ours is compared with the faster.
Ratios are the robust numbers: this machine is shared and noisy.
Prints one markdown table (and the pathological inputs below it).
`--pathological --guard` exits with status 1 if a pathological input's ids
differ from tiktoken's or its median time passes `SECONDS_PER_MB` (generous:
3 s for 100k random digits, the worst case, which take ~0.2 s on a quiet
machine; it catches a return to super-linear cost, and is kept out of the
unit tests, where a loaded machine would fail it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import string
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import tokenizer_support as support  # noqa: E402
from tfgpt2.tokenizer import BytePairTokenizer, run_tflite  # noqa: E402


CLOCK = time.perf_counter  # --cpu: time.process_time


def median_seconds(run, repeats: int = 3) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = CLOCK()
        run()
        times.append(CLOCK() - start)
    return statistics.median(times)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), {model}, {platform.system()} {platform.release()}"


def bench_ours(docs, data) -> tuple[float, float, BytePairTokenizer]:
    tok = BytePairTokenizer()
    strings = tf.constant(data)
    whole = median_seconds(lambda: tok.encode_strings(strings)[0].numpy())
    one_by_one = [tf.constant([d]) for d in data]
    per_doc = median_seconds(lambda: [tok.encode_strings(d)[0].numpy() for d in one_by_one])
    got = tok.tokenize(strings).to_list()
    assert got == [support.oracle_ids(d) for d in docs], "ours disagrees with tiktoken"
    return whole, per_doc, tok


def bench_tflite(tok, docs, data) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tok.to_tflite(), num_threads=os.cpu_count())
    flat = np.frombuffer(b"".join(data), np.uint8).astype(np.int32)
    splits = np.cumsum([0] + [len(d) for d in data]).astype(np.int32)

    def run():
        return run_tflite(interpreter, "encode", bytes=flat, row_splits=splits)

    seconds = median_seconds(run)
    out = run()
    ids, rows = out["ids"].tolist(), out["row_splits"].tolist()
    got = [ids[rows[i]:rows[i + 1]] for i in range(len(docs))]
    assert got == [support.oracle_ids(d) for d in docs], "LiteRT disagrees with tiktoken"
    return seconds


def bench_keras_hub(data) -> tuple[float, float]:
    """(seconds for the whole corpus in one call, seconds for one call per
    document). Its word cache is empty at the start of every timed call: a
    fresh tokenizer for the whole corpus; per document, the cache is reset
    to its initial content (untimed) before each document."""
    import tempfile

    import keras_hub

    from tfgpt2.tokenizer import GPT2Tokenizer

    with tempfile.TemporaryDirectory(prefix="keras_hub_vocab_") as tmp:
        return _time_keras_hub(keras_hub, GPT2Tokenizer, Path(tmp), data)


def _time_keras_hub(keras_hub, our_tokenizer, vocab_dir: Path, data) -> tuple[float, float]:
    our_tokenizer().save_pretrained(vocab_dir)  # the same GPT-2 files, in HF layout

    def fresh():
        tok = keras_hub.tokenizers.GPT2Tokenizer(vocabulary=str(vocab_dir / "vocab.json"),
                                                 merges=str(vocab_dir / "merges.txt"))
        fn = tf.function(lambda s: tok(s), input_signature=[tf.TensorSpec([None], tf.string)])
        fn(tf.constant(["warm up the graph on a few other words"]))  # traces, once
        return tok, fn

    def time_per_document() -> float:
        tok, fn = fresh()
        table = tok.cache.id2value  # keras-hub's word cache (a MutableHashTable)
        initial = set(table.export()[0].numpy().tolist())
        total = 0.0
        for d in data:
            learned = [k for k in table.export()[0].numpy().tolist() if k not in initial]
            if learned:
                table.remove(tf.constant(learned, tf.int64))
            start = time.perf_counter()
            fn(tf.constant([d]))
            total += time.perf_counter() - start
        return total

    whole, per_doc = [], []
    strings = tf.constant(data)
    for _ in range(3):
        _, fn = fresh()
        start = time.perf_counter()
        fn(strings)
        whole.append(time.perf_counter() - start)
        per_doc.append(time_per_document())
    return statistics.median(whole), statistics.median(per_doc)
def bench_tiktoken(docs) -> float:
    enc = support.tiktoken_gpt2()
    return median_seconds(lambda: enc.encode_ordinary_batch(docs, num_threads=1))


SECONDS_PER_MB = 30.0  # --guard: per input, on inputs of at least 0.1 MB


def _mixed(rng, parts, size: int) -> str:
    out, total = [], 0
    while total < size:
        out.append(parts[rng.integers(len(parts))](rng))
        total += len(out[-1])
    return "".join(out)[:size]


def pathological(tok) -> list[tuple[str, int, float, bool]]:
    rng = np.random.default_rng(0)

    def pick(alphabet, n=100_000):
        return "".join(rng.choice(list(alphabet), n))

    cases = [
        ("1 MB of spaces", " " * 1_000_000),
        ("100k 'a'", "a" * 100_000),
        ("100k random letters", pick(string.ascii_lowercase)),
        ("1 MB of emoji", "".join(chr(c) for c in rng.integers(0x1F600, 0x1F650, 250_000))),
        ("100k random digits", pick(string.digits)),
        ("100k '1'", "1" * 100_000),
        ("'12' * 50k", "12" * 50_000),
        ("'x' + 100k '0'", "x" + "0" * 100_000),
        ("'ab' * 50k", "ab" * 50_000),
        ("100k random of '019'", pick("019")),
        ("100k random of 'etaoin'", pick("etaoin")),
        ("100k digits and zero runs", _mixed(rng, [lambda r: "0" * int(r.integers(1, 41)),
                                                  lambda r: str(int(r.integers(0, 10**9)))],
                                             100_000)),
        ("100k dash and '=' runs", _mixed(rng, [lambda r: "-" * int(r.integers(1, 41)),
                                               lambda r: "=" * int(r.integers(1, 41))],
                                          100_000)),
    ]
    enc = support.tiktoken_gpt2()
    out = []
    for name, text in cases:
        data = tf.constant([text.encode()])
        seconds = median_seconds(lambda: tok.encode_strings(data)[0].numpy(), repeats=5)
        ids = tok.encode_strings(data)[0].numpy().tolist()
        want = (enc._encode_single_piece(text.encode()) if not text.strip()  # noqa: SLF001
                else enc.encode_ordinary(text))
        out.append((name, len(text.encode()), seconds, ids == want))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip keras-hub (slow)")
    parser.add_argument("--pathological", action="store_true",
                        help="only the pathological inputs (no corpus, no peers)")
    parser.add_argument("--guard", action="store_true",
                        help="with --pathological: exit 1 if an input's ids differ from "
                             "tiktoken's or it takes more than SECONDS_PER_MB")
    parser.add_argument("--cpu", action="store_true",
                        help="one TF thread, process CPU time instead of wall time: steadier "
                             "than wall time when other jobs share the machine")
    args = parser.parse_args()
    if args.cpu:
        global CLOCK
        CLOCK = time.process_time
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        print("(--cpu: one TF thread; seconds are process CPU time)\n")
    if args.pathological:
        print("| input | bytes | seconds | MB/s | ids == tiktoken |")
        print("|---|---:|---:|---:|---|")
        bad = []
        for name, size, seconds, same in pathological(BytePairTokenizer()):
            print(f"| {name} | {size:,} | {seconds:.3f} | {size / seconds / 1e6:.2f} | {same} |")
            limit = SECONDS_PER_MB * max(size / 1e6, 0.1)
            if not same or seconds > limit:
                bad.append(f"{name}: ids == tiktoken {same}, {seconds:.2f} s (limit {limit:.1f} s)")
        if args.guard and bad:
            sys.exit("over the limit: " + "; ".join(bad))
        return

    docs = list(support.real_corpus())
    data = [d.encode("utf-8") for d in docs]
    mb = sum(len(d) for d in data) / 1e6
    ours, ours_per_doc, tok = bench_ours(docs, data)
    lite = bench_tflite(tok, docs, data)
    tik = bench_tiktoken(docs)
    hub_whole, hub_per_doc = (None, None) if args.quick else bench_keras_hub(data)
    hub = None if hub_whole is None else min(hub_whole, hub_per_doc)  # its better mode

    print(f"# Tokenizer encode throughput — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}; TF {tf.__version__}")
    print(f"corpus: {len(docs)} documents, {mb:.2f} MB (tests/tokenizer_support.real_corpus)\n")
    print("| tokenizer | MB/s | vs tiktoken | vs keras-hub graph (its faster mode) |")
    print("|---|---:|---:|---:|")
    rows = [("tfgpt2 `BytePairTokenizer`, tf.function, whole corpus per call", ours),
            ("tfgpt2, tf.function, one call per document", ours_per_doc),
            ("tfgpt2 .tflite in LiteRT (builtins only), whole corpus per call", lite),
            ("tiktoken 0.14, `encode_ordinary_batch(num_threads=1)`", tik)]
    if hub is not None:
        rows.append(("keras-hub 0.32 `GPT2Tokenizer` in tf.function, whole corpus per call",
                     hub_whole))
        rows.append(("keras-hub 0.32 `GPT2Tokenizer` in tf.function, one call per document "
                     "(cache emptied before each)", hub_per_doc))
    for name, seconds in rows:
        vs_hub = f"{hub / seconds:.1f}x" if hub is not None else "n/a"
        print(f"| {name} | {mb / seconds:.2f} | {tik / seconds:.2f}x | {vs_hub} |")
    print("\nPathological inputs (tfgpt2, tf.function, one row; median of 5):\n")
    print("| input | bytes | seconds | MB/s | ids == tiktoken |")
    print("|---|---:|---:|---:|---|")
    for name, size, seconds, same in pathological(tok):
        print(f"| {name} | {size:,} | {seconds:.3f} | {size / seconds / 1e6:.2f} | {same} |")


if __name__ == "__main__":
    main()
