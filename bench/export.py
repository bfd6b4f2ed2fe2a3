"""The on-device artifacts against the peers, on the same GPT-2 Medium
weights: the .tflite in LiteRT (int8, float16, fp32) through our runner and,
packed as a .litertlm, in the stock LiteRT-LM engine; tfgpt2's `generate`
and transformers' PyTorch `generate`. (The SavedModel: bench/serving.py.)

    python bench/export.py                                # everything
    python bench/export.py --quantizations=int8 --notorch

Protocol (docs/benchmarks.md): seeded random weights, batch 1, an 8-token
prompt, 64 new greedy tokens; tok/s is new tokens per second, median of
--repeats timed generations after a warm-up one, peers interleaved round by
round. Each .tflite runs in its own process (so its peak resident memory is
its own), through export/litert_runner.py with 2 threads (XNNPACK).
Quantisation drift: on a fixed 256-token text, the largest logit
difference from the fp32 TF model, the mean NLL difference per token and
how many of 64 greedy tokens agree. Time to first token: a prompt of
--ttft_lengths tokens (of a real text) to its first new token, median of
--repeats. The bound: bench/weight_stream.py's chain of the same int8
mat-vecs in LiteRT, run in the same invocation (--bound).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench_support import random_medium_checkpoint  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("quantizations", ["int8", "float16", "none"], ".tflite files to measure.")
flags.DEFINE_bool("torch", True, "Measure transformers' PyTorch generate.")
flags.DEFINE_integer("new_tokens", 64, "New tokens per generation.")
flags.DEFINE_integer("repeats", 3, "Timed generations per system (median).")
flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "tfgpt2-bench-export"),
                    "Checkpoint and artifacts (reused when present).")
flags.DEFINE_integer("cache_length", None, "The artifacts' cache length (default: 1024).")
flags.DEFINE_bool("litertlm", True, "Measure each .tflite packed as a .litertlm in LiteRT-LM.")
flags.DEFINE_list("ttft_lengths", ["16", "128", "512"], "Prompt lengths for time to first token.")
flags.DEFINE_bool("bound", True, "Measure the int8 mat-vec chain (bench/weight_stream.py).")
flags.DEFINE_string("worker", None, "Internal: measure one .tflite in this process.")
flags.DEFINE_string("engine_worker", None, "Internal: measure one .litertlm in this process.")

PROMPT = [464, 3139, 286, 1204, 318, 257, 1310, 1110]  # 8 tokens
TEXT_TOKENS = 256


def log(message):
    print(message, file=sys.stderr, flush=True)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def checkpoint_dir():
    return random_medium_checkpoint(os.path.join(FLAGS.work_dir, "medium"))


@functools.cache
def fixed_text_ids():
    """256 tokens of real text (the tokenizer test corpus's start; fewer if
    the artifacts' cache is shorter), read and tokenized once per process."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from tokenizer_support import real_corpus, tiktoken_gpt2

    return tiktoken_gpt2().encode(real_corpus()[0])[:min(TEXT_TOKENS, FLAGS.cache_length or 1024)]


def artifact_name(quantization, suffix):
    cache = f".cache{FLAGS.cache_length}" if FLAGS.cache_length else ""
    return os.path.join(FLAGS.work_dir, f"medium.{quantization}{cache}.{suffix}")


def ensure_tflite(quantization):
    path = artifact_name(quantization, "tflite")
    if not os.path.isfile(path):
        log(f"Converting to {path} (a few minutes) ...")
        subprocess.run([sys.executable, "-c", (
            "import sys; sys.path.insert(0, %r)\n"
            "from tfgpt2 import GPT2LMHeadModel\n"
            "m = GPT2LMHeadModel.from_pretrained(%r)\n"
            "m.export(%r, format='litert', quantization=%r, cache_length=%r)\n") % (
                ROOT, checkpoint_dir(), path, quantization, FLAGS.cache_length)], check=True)
    return path


# --- one .tflite, in its own process ------------------------------------------------------
def tflite_worker(path):
    from tfgpt2.export.litert_runner import LiteRTRunner

    first, runner = timed(lambda: LiteRTRunner(path, num_threads=2))
    gen = lambda: runner.generate(PROMPT, max_new_tokens=FLAGS.new_tokens, do_sample=False,  # noqa: E731
                                  stop_token_ids=[])
    first_call, tokens = timed(gen)
    times = [timed(gen)[0] for _ in range(FLAGS.repeats)]
    text = fixed_text_ids()
    # last-position logits of growing prefixes
    logits = [runner.next_token_logits(text[:end]) for end in range(1, len(text) + 1, 32)]
    ttft = {n: statistics.median(timed(lambda: runner.generate(
        ttft_prompt(n), max_new_tokens=1, do_sample=False))[0] for _ in range(FLAGS.repeats))
        for n in map(int, FLAGS.ttft_lengths)}
    print(json.dumps({"load_s": first, "first_call_s": first_call + first,
                      "rate": FLAGS.new_tokens / statistics.median(times),
                      "tokens": tokens, "logits": np.asarray(logits).tolist(), "ttft": ttft,
                      "peak_rss_gb": peak_rss_gb()}))


def ttft_prompt(n):
    """n tokens of real text (the fixed text, repeated as needed)."""
    text = fixed_text_ids()
    return (text * (n // len(text) + 1))[:n]


# --- one .litertlm, in the stock LiteRT-LM engine, in its own process --------------------
def engine_worker(path):
    import litert_lm

    from tfgpt2.tokenizer.vocab import load_vocabulary

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    vocab = load_vocabulary()
    decode = lambda ids: b"".join(vocab.token_bytes[i] for i in ids).decode()  # noqa: E731
    # Its weight cache (packed weights shared by the signatures, as our
    # runner's), kept apart from the artifacts.
    cache_dir = os.path.join(FLAGS.work_dir, "litert-lm-cache")
    os.makedirs(cache_dir, exist_ok=True)
    load, engine = timed(lambda: litert_lm.Engine(
        path, backend=litert_lm.Backend.CPU(thread_count=2), cache_dir=cache_dir))
    greedy = litert_lm.SamplerConfig(top_k=1, top_p=1.0, temperature=1.0, seed=0)

    def run(prompt, new):
        session = engine.create_session(apply_prompt_template=False, sampler_config=greedy,
                                        max_output_tokens=new)
        session.run_prefill([prompt])
        text = session.run_decode().texts[0]
        session.close()
        return text

    prompt = decode(PROMPT)
    first_call, _ = timed(lambda: run(prompt, FLAGS.new_tokens))
    times = [timed(lambda: run(prompt, FLAGS.new_tokens))[0] for _ in range(FLAGS.repeats)]
    ttft = {n: statistics.median(timed(lambda: run(decode(ttft_prompt(n)), 1))[0]
                                 for _ in range(FLAGS.repeats))
            for n in map(int, FLAGS.ttft_lengths)}
    print(json.dumps({"load_s": load, "first_call_s": load + first_call,
                      "rate": FLAGS.new_tokens / statistics.median(times), "ttft": ttft,
                      "text": run(prompt, FLAGS.new_tokens), "peak_rss_gb": peak_rss_gb()}))


def ensure_bundle(quantization, tflite_path):
    """The .litertlm of an existing .tflite (packing takes seconds)."""
    from tfgpt2 import GPT2Config
    from tfgpt2.export.litertlm import pack
    from tfgpt2.tokenizer.vocab import load_vocabulary

    path = artifact_name(quantization, "litertlm")
    if not os.path.isfile(path) or os.path.getmtime(path) < os.path.getmtime(tflite_path):
        with open(tflite_path, "rb") as f:
            config = GPT2Config.from_pretrained(checkpoint_dir())
            pack(path, f.read(), load_vocabulary(), config,
                 FLAGS.cache_length or config.n_positions)
    return path


def measure_bound():
    """tok/s of bench/weight_stream.py's int8 mat-vec chain in LiteRT."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "weight_stream.py"),
                          "--systems=litert_int8", f"--repeats={FLAGS.repeats}"],
                         capture_output=True, text=True, check=True)
    rows = [line for line in out.stdout.splitlines() if "int8 dynamic-range" in line]
    return float(rows[0].split("|")[2])


def peak_rss_gb():
    """This process's peak resident memory: VmHWM belongs to the process's
    own address space, while getrusage's ru_maxrss can carry the parent's
    peak across fork + exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def in_worker(worker_flag, path):
    """This script's worker mode (`--worker` or `--engine_worker`) on `path`,
    in a process of its own, with this run's settings; its JSON result."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--{worker_flag}={path}",
                          f"--new_tokens={FLAGS.new_tokens}", f"--repeats={FLAGS.repeats}",
                          f"--ttft_lengths={','.join(FLAGS.ttft_lengths)}",
                          f"--cache_length={FLAGS.cache_length or 1024}"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- peers in this process ---------------------------------------------------------------
def reference(model):
    """fp32 TF: greedy tokens and the same prefix logits as the workers."""
    text = fixed_text_ids()
    logits = [model(np.asarray([text[:end]])).logits.numpy()[0, -1]
              for end in range(1, len(text) + 1, 32)]
    first_call, tokens = timed(lambda: model.generate(
        np.asarray([PROMPT]), max_new_tokens=FLAGS.new_tokens, eos_token_id=[]))
    return np.asarray(logits), tokens[0, len(PROMPT):].tolist(), first_call


def nll_per_token(logits_rows, text):
    """Mean NLL of the token after each measured prefix."""
    targets = [text[end] for end in range(1, len(text) + 1, 32) if end < len(text)]
    rows = logits_rows[: len(targets)].astype(np.float64)
    log_norm = rows.max(1) + np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1))
    return float(np.mean(log_norm - rows[np.arange(len(targets)), targets]))


def rate_of(fn, rounds):
    fn()  # warm-up (compilation)
    return [timed(fn)[0] for _ in range(rounds)]


def main(argv):
    del argv
    if FLAGS.worker:
        return tflite_worker(FLAGS.worker)
    if FLAGS.engine_worker:
        return engine_worker(FLAGS.engine_worker)
    from tfgpt2 import GPT2LMHeadModel

    os.makedirs(FLAGS.work_dir, exist_ok=True)
    directory = checkpoint_dir()
    paths = {q: ensure_tflite(q) for q in FLAGS.quantizations}

    model = GPT2LMHeadModel.from_pretrained(directory)
    ref_logits, ref_tokens, generate_first_call = reference(model)
    text = fixed_text_ids()
    ids = np.asarray([PROMPT])
    systems = {"tfgpt2 generate (XLA)": lambda: model.generate(
        ids, max_new_tokens=FLAGS.new_tokens, eos_token_id=[])}
    firsts = {"tfgpt2 generate (XLA)": generate_first_call}
    if FLAGS.torch:
        import torch
        from transformers import GPT2LMHeadModel as TorchGPT2

        torch.set_num_threads(os.cpu_count() or 1)
        torch_model = TorchGPT2.from_pretrained(directory).eval()

        def torch_generate():
            with torch.inference_mode():
                tensor = torch.as_tensor(ids)
                return torch_model.generate(tensor, attention_mask=torch.ones_like(tensor),
                                            max_new_tokens=FLAGS.new_tokens,
                                            min_new_tokens=FLAGS.new_tokens, do_sample=False,
                                            pad_token_id=50256)

        systems["transformers (PyTorch) generate"] = torch_generate
    for name, fn in systems.items():
        if name not in firsts:  # tfgpt2's first generate ran in reference()
            firsts[name], _ = timed(fn)
    times = {name: [] for name in systems}
    for _ in range(FLAGS.repeats):  # interleaved rounds
        for name, fn in systems.items():
            times[name].append(timed(fn)[0])
    rates = {name: FLAGS.new_tokens / statistics.median(t) for name, t in times.items()}

    log("Measuring the .tflite files, one process each ...")
    lite = {q: in_worker("worker", p) for q, p in paths.items()}
    engines = {}
    if FLAGS.litertlm:
        log("Measuring the .litertlm bundles in LiteRT-LM, one process each ...")
        engines = {q: in_worker("engine_worker", ensure_bundle(q, p)) for q, p in paths.items()}
    bound = measure_bound() if FLAGS.bound else None

    torch_rate = rates.get("transformers (PyTorch) generate")
    ours = rates["tfgpt2 generate (XLA)"]
    print(f"\nGPT-2 Medium, random weights, batch 1, prompt {len(PROMPT)}, {FLAGS.new_tokens} new "
          f"greedy tokens, median of {FLAGS.repeats}; {os.cpu_count()} CPU threads; "
          f"artifacts' cache {FLAGS.cache_length or 1024}; load {os.getloadavg()[0]:.2f}\n")
    print("| system | tok/s | vs PyTorch | vs tfgpt2 generate | first call (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, rate in rates.items():
        vs_torch = f"{rate / torch_rate:.2f}x" if torch_rate else "-"
        print(f"| {name} | {rate:.2f} | {vs_torch} | {rate / ours:.2f}x | {firsts[name]:.1f} |")
    for label, results in ((".tflite {} in LiteRT (our runner)", lite),
                           (".litertlm {} in LiteRT-LM", engines)):
        for q, r in results.items():
            vs_torch = f"{r['rate'] / torch_rate:.2f}x" if torch_rate else "-"
            print(f"| {label.format(q)} | {r['rate']:.2f} | {vs_torch} | {r['rate'] / ours:.2f}x "
                  f"| {r['first_call_s']:.1f} |")
    if bound:
        print(f"\nBound: the int8 mat-vec chain in LiteRT, {bound:.1f} tok/s.")
    lengths = list(map(int, FLAGS.ttft_lengths))
    print("\n| on device | decode tok/s | of the int8 bound | "
          + " | ".join(f"first token, {n}-token prompt (s)" for n in lengths)
          + " | peak RSS (GB) |")
    print("|---|---:|---:|" + "---:|" * len(lengths) + "---:|")
    for label, results in (("runner, .tflite {}", lite), ("LiteRT-LM, .litertlm {}", engines)):
        for q, r in results.items():
            fraction = f"{r['rate'] / bound:.2f}" if bound and q == "int8" else "-"
            print(f"| {label.format(q)} | {r['rate']:.2f} | {fraction} | "
                  + " | ".join(f"{r['ttft'][str(n)]:.2f}" for n in lengths)
                  + f" | {r['peak_rss_gb']:.2f} |")
    fp32_size = os.path.getsize(paths["none"]) if "none" in paths else None
    ref_nll = nll_per_token(ref_logits, text)
    print("\n| .tflite | size (MB) | vs fp32 file | peak RSS of the runner (GB) | max abs logit "
          "diff vs TF fp32 | NLL/token diff | greedy tokens equal to TF fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for q, r in lite.items():
        size = os.path.getsize(paths[q])
        ratio = f"{size / fp32_size:.2f}" if fp32_size else "-"
        logits = np.asarray(r["logits"])
        agree = sum(a == b for a, b in zip(r["tokens"], ref_tokens))
        print(f"| {q} | {size / 1e6:.0f} | {ratio} | {r['peak_rss_gb']:.2f} | "
              f"{np.abs(logits - ref_logits).max():.2e} | "
              f"{nll_per_token(logits, text) - ref_nll:+.2e} | {agree}/{len(ref_tokens)} |")


if __name__ == "__main__":
    app.run(main)
