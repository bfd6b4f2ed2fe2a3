"""The SavedModel as TF Serving runs it, on GPT-2 Medium: the default
(XLA-free) variant against the `--xla` one, each loaded into a TF1 Session
the way the server loads it and called through its signatures.

    python bench/serving.py
    python bench/serving.py --batch_sizes=1 --settings=greedy   # quicker

Protocol (docs/benchmarks.md): seeded random weights, an 8-token prompt per
row, 64 new tokens per row; tok/s is all rows' new tokens per second,
median of --repeats calls after a warm-up one, the variants interleaved
call by call. Settings: greedy (temperature 0) and the serving defaults
(`serving_default`'s: top-k 50 sampling at temperature 1, here with fixed
seeds). Then, in the default variant: --clients concurrent single-prompt
calls against one batched call of as many prompts (prompts/s), and the
per-row sampler alone, op by op, against a decode step. The bound
(--bound): bench/weight_stream.py's chain of the same weight mat-vecs, as
one XLA program and as a plain TF graph, at each batch size, run in the same
invocation: no decode step runs faster than its chain, so the plain chain
over the XLA chain is the most the default variant can reach against --xla.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

from bench_support import random_medium_checkpoint  # noqa: E402

# The SavedModel in a TF1 Session as TF Serving holds it: the tests' helper.
sys.path.insert(0, os.path.join(ROOT, "tests", "export"))
import serving_session  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "tfgpt2-bench-export"),
                    "Where the random Medium checkpoint and the SavedModels are kept.")
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
flags.DEFINE_list("settings", ["greedy", "serving_defaults"], "Sampling settings.")
flags.DEFINE_integer("new_tokens", 64, "New tokens per row.")
flags.DEFINE_integer("repeats", 3, "Timed calls per variant and case (median).")
flags.DEFINE_integer("clients", 8, "Concurrent single-prompt clients (0: skip).")
flags.DEFINE_bool("sampler", True, "Time the per-row sampler alone.")
flags.DEFINE_bool("bound", True, "Measure the weight mat-vec chains (bench/weight_stream.py).")

PROMPT = [464, 3139, 286, 1204, 318, 257, 1310, 1110]  # 8 tokens
SETTINGS = {"greedy": dict(temperature=0.0, top_k=0, top_p=1.0),
            "serving_defaults": dict(temperature=1.0, top_k=50, top_p=1.0)}


def log(message):
    print(message, file=sys.stderr, flush=True)


def ensure_saved_model(checkpoint, xla):
    base = os.path.join(FLAGS.work_dir, "served-xla" if xla else "served")
    if not os.path.isdir(os.path.join(base, "1")):
        from tfgpt2 import GPT2LMHeadModel

        log(f"Writing {base}/1 ...")
        GPT2LMHeadModel.from_pretrained(checkpoint).export(
            base, format="tf_saved_model", version=1, xla=xla, overwrite=True)
    return os.path.join(base, "1")


def request(text, batch, setting, first_seed=0):
    values = SETTINGS[setting]
    return serving_session.request(
        [text] * batch, max_new_tokens=[FLAGS.new_tokens] * batch,
        **{name: [value] * batch for name, value in values.items()},
        seed=list(range(first_seed, first_seed + batch)))


def timed_call(model, inputs):
    start = time.perf_counter()
    out = model.run("generate", **inputs)
    return time.perf_counter() - start, int(out["num_tokens"].sum())


def concurrency(model, text):
    """prompts/s: --clients threads with one prompt each, against one call
    of all the prompts (the serving defaults)."""
    clients = FLAGS.clients

    def one(i):
        return timed_call(model, request(text, 1, "serving_defaults", first_seed=i))

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))  # warm-up
        start = time.perf_counter()
        list(pool.map(one, range(clients)))
        concurrent_s = time.perf_counter() - start
    timed_call(model, request(text, clients, "serving_defaults"))
    batched_s, _ = timed_call(model, request(text, clients, "serving_defaults"))
    return clients / concurrent_s, clients / batched_s


def sampler_cost(vocab, batch):
    """ms per call of the per-row sampler (and the previous run-time one)
    in a plain TF graph, on random logits [batch, vocab]."""
    import tensorflow as tf

    from tfgpt2.generation import sampling

    logits = tf.random.stateless_normal([batch, vocab], seed=[0, 0]) * 3.0
    seeds = tf.zeros([batch, 2], tf.int32)
    results = {}
    for setting, values in SETTINGS.items():
        per_row = {k: tf.fill([batch], tf.constant(v, tf.float32 if k != "top_k" else tf.int32))
                   for k, v in values.items()}
        cases = {
            "per-row sampler (now)": tf.function(lambda: sampling.choose_tokens_per_row(
                logits, seeds, **per_row), autograph=False),
            "run-time sampler (before)": tf.function(lambda: sampling.choose_tokens_at_run_time(
                logits, seeds[0], temperature=tf.constant(values["temperature"]),
                top_k=tf.constant(values["top_k"]), top_p=tf.constant(values["top_p"])),
                autograph=False),
        }
        for name, fn in cases.items():
            fn()
            times = []
            for _ in range(30):
                start = time.perf_counter()
                fn().numpy()
                times.append(time.perf_counter() - start)
            results[(name, setting)] = 1e3 * statistics.median(times)
    return results


def chain_rates(batch):
    """tok/s (all rows) of the XLA and plain-graph mat-vec chains."""
    import subprocess

    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "weight_stream.py"),
                          "--systems=tf_out_in,tf_graph", f"--batch_size={batch}"],
                         capture_output=True, text=True, check=True).stdout
    rates = {}
    for line in out.splitlines():
        for key, label in (("xla", "| TF + XLA"), ("plain", "| TF plain graph")):
            if line.startswith(label):
                rates[key] = float(line.split("|")[2]) * batch
    return rates


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    checkpoint = random_medium_checkpoint(os.path.join(FLAGS.work_dir, "medium"))
    paths = {"default (no XLA)": ensure_saved_model(checkpoint, False),
             "--xla": ensure_saved_model(checkpoint, True)}
    from tfgpt2.tokenizer import GPT2Tokenizer

    text = GPT2Tokenizer.from_pretrained(checkpoint).decode(PROMPT)
    models, first = {}, {}
    for name, path in paths.items():
        start = time.perf_counter()
        models[name] = serving_session.Served(path)
        timed_call(models[name], request(text, 1, "greedy"))
        first[name] = time.perf_counter() - start
    cases = [(int(b), s) for b in FLAGS.batch_sizes for s in FLAGS.settings]
    rates = {}
    for batch, setting in cases:
        log(f"batch {batch}, {setting} ...")
        times = {name: [] for name in models}
        tokens = {}
        for name, model in models.items():  # warm-up (a new shape bucket)
            timed_call(model, request(text, batch, setting))
        for _ in range(FLAGS.repeats):
            for name, model in models.items():
                seconds, tokens[name] = timed_call(model, request(text, batch, setting))
                times[name].append(seconds)
        for name in models:
            rates[(name, batch, setting)] = tokens[name] / statistics.median(times[name])

    default, xla = paths
    concurrent_rate = batched_rate = None
    if FLAGS.clients:
        log("concurrent clients ...")
        concurrent_rate, batched_rate = concurrency(models[default], text)
    # Each chain holds its own copy of the weights: close the sessions first
    # (two Medium sessions and a chain at once ran a shared 24 GiB machine
    # out of memory).
    for model in models.values():
        model.session.close()
    models.clear()
    bounds = {}
    if FLAGS.bound:
        for batch in sorted({b for b, _ in cases}):
            log(f"the mat-vec chains at batch {batch} ...")
            bounds[batch] = chain_rates(batch)
    print(f"\nGPT-2 Medium SavedModel in a TF1 Session (TF Serving's loader), random weights, "
          f"8-token prompts, {FLAGS.new_tokens} new tokens per row, median of {FLAGS.repeats}; "
          f"{os.cpu_count()} CPU threads; load {os.getloadavg()[0]:.2f}\n")
    print(f"| batch | settings | {default} tok/s | {xla} tok/s | default / --xla |"
          " default / its chain | --xla / its chain |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for batch, setting in cases:
        a, b = rates[(default, batch, setting)], rates[(xla, batch, setting)]
        chain = bounds.get(batch)
        of_chain = (f"{a / chain['plain']:.2f} | {b / chain['xla']:.2f}" if chain else "- | -")
        print(f"| {batch} | {setting} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {of_chain} |")
    if bounds:
        print("\n| batch | chain, XLA (tok/s) | chain, plain graph (tok/s) | plain / XLA: the "
              "ceiling of default / --xla |")
        print("|---:|---:|---:|---:|")
        for batch, chain in bounds.items():
            print(f"| {batch} | {chain['xla']:.2f} | {chain['plain']:.2f} | "
                  f"{chain['plain'] / chain['xla']:.2f}x |")
    print("\nFirst call (load + a first greedy request): "
          + ", ".join(f"{name} {s:.1f} s" for name, s in first.items()))
    if FLAGS.clients:
        print(f"\n{default}, serving defaults: {FLAGS.clients} concurrent single-prompt calls "
              f"{concurrent_rate:.2f} prompts/s; one batched call of {FLAGS.clients} "
              f"{batched_rate:.2f} prompts/s ({batched_rate / concurrent_rate:.2f}x).")
    if FLAGS.sampler:
        from tfgpt2 import GPT2Config

        vocab = GPT2Config.from_preset("gpt2-medium").vocab_size
        print("\n| sampler, op by op | batch | settings | ms per token | of a decode step |")
        print("|---|---:|---|---:|---:|")
        for batch in sorted({int(b) for b in FLAGS.batch_sizes}):
            costs = sampler_cost(vocab, batch)
            for (name, setting), ms in costs.items():
                key = (default, batch, setting)
                step_ms = 1e3 * batch / rates[key] if key in rates else None
                share = f"{ms / step_ms:.1%}" if step_ms else "-"
                print(f"| {name} | {batch} | {setting} | {ms:.2f} | {share} |")


if __name__ == "__main__":
    app.run(main)
