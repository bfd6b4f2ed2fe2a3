"""Decoding speed: tfgpt2 against keras-hub, transformers (PyTorch) and the
CPU inference engines (bench/engines.py: CTranslate2, llama.cpp, ONNX
Runtime, OpenVINO; opt-in) on the same GPT-2 Medium weights, in one run,
greedy and sampled.

    python bench/decode.py                      # all peers that are installed
    python bench/decode.py --peers=tfgpt2,keras_hub --batch_sizes=1
    python bench/decode.py --peers=tfgpt2,torch --prefill_length=0   # sampled rows
    python bench/decode.py --peers=tfgpt2,tfgpt2_int8 --batch_sizes=1 --settings=greedy,top_k=50
    python bench/decode.py --peers=tfgpt2_bf16,tfgpt2,openvino,openvino_f32 --settings=greedy
    python bench/decode.py --peers=tfgpt2,tfgpt2_int8,torch,ctranslate2,ctranslate2_int8,\
        llama_cpp,llama_cpp_q8_0,onnxruntime,onnxruntime_int8,\
        openvino,openvino_f32,openvino_int8 \
        --settings=greedy --llama_cpp_converter=PATH/convert_hf_to_gguf.py

Protocol (docs/benchmarks.md): fp32, seeded random weights, an 8-token
prompt, 64 new tokens, batch 1 then 8. Tokens/s is new tokens per second per
sequence, median of --repeats timed calls after a warm-up call; the first
call (compilation included) is reported separately, as is the time to the
first new token for a 512-token prompt. Peers and settings run interleaved,
round by round, so machine noise hits them alike; ratios are the first
peer's (tfgpt2's) speed-up over each, and each tfgpt2 setting against
tfgpt2's greedy rate of the same round.

With tfgpt2 (fp32) or tfgpt2_bf16 among the peers, the run also measures
their GEMM bound (bench/gemm_bound.py): the chain of the model's own weight
matmuls alone, at each batch size and at the prefill length, in the
weights' dtype and the runtime the model's program uses (XLA for the fp32
decode loop, a plain graph otherwise), right after that batch's rounds.
Its tok/s is the most a decode step could reach with TensorFlow's matmuls
on this machine. At batch 1 it also measures the memory-read bound: one
reduction over the same weight bytes, the least time any step that reads
every weight once can take.

Settings (--settings): greedy, and the samplers users run: top_k=50 (the
model card's default), top_p=0.9 with top_k=0, temperature 0.7 with
top_k=40. Every peer samples with the same settings and a fixed seed, and
generates exactly --new_tokens (transformers: min_new_tokens). Sampled
tokens cannot be compared across systems (different random streams); greedy
tokens are compared with --token_reference's (transformers' when it runs).
keras-hub runs greedy only; llama.cpp runs batch 1 only.

The engines are converted once from the checkpoint directory into
--work_dir and reused; each runs with --threads threads. Install them with
`pip install -e ".[bench-engines]"` (docs/benchmarks.md, which also says how
to get llama.cpp's converter).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import engines  # noqa: E402
import gemm_bound  # noqa: E402
from bench_support import DECODE_SETTINGS as SETTINGS  # noqa: E402
from bench_support import leading_agreement, random_medium_checkpoint  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("peers", ["tfgpt2", "keras_hub", "keras_hub_xla", "torch"],
                  "Systems to measure; the first is the baseline of the ratios (also: "
                  "tfgpt2_int8, tfgpt2 after model.quantize(\"int8\"); tfgpt2_bf16, "
                  "loaded with dtype=\"bfloat16\"; tfgpt2_bf16_xla, its decode loops in XLA).")
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
flags.DEFINE_list("settings", ["greedy", "top_k=50", "top_p=0.9", "temperature=0.7+top_k=40"],
                  "Decoding settings (names from SETTINGS).")
flags.DEFINE_integer("prompt_length", 8, "Prompt tokens.")
flags.DEFINE_integer("new_tokens", 64, "New tokens per sequence.")
flags.DEFINE_integer("prefill_length", 512, "Prompt length for the prefill latency "
                     "(0 skips it).")
flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median).")
flags.DEFINE_integer("threads", os.cpu_count() or 1, "CPU threads for PyTorch and each engine.")
flags.DEFINE_string("checkpoint_dir", None,
                    "Reuse a saved random Medium checkpoint here (written if missing).")
flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "tfgpt2-bench-engines"),
                    "Where the engines' converted models are written once and reused.")
flags.DEFINE_string("llama_cpp_converter", os.environ.get("LLAMA_CPP_CONVERTER"),
                    "llama.cpp's convert_hf_to_gguf.py (docs/benchmarks.md; default: "
                    "$LLAMA_CPP_CONVERTER).")
flags.DEFINE_bool("gemm_bound", True, "Measure the GEMM bound of tfgpt2 and tfgpt2_bf16 "
                  "(bench/gemm_bound.py) in the same run.")
flags.DEFINE_string("token_reference", "torch", "The peer whose greedy tokens the others' "
                    "are compared with (the first peer when it does not run).")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class TfGpt2:
    name = "tfgpt2"
    dtype = None  # the model's dtype policy (None: float32)

    def __init__(self, directory):
        from tfgpt2 import GPT2LMHeadModel

        self.model = GPT2LMHeadModel.from_pretrained(directory, dtype=self.dtype)

    def supports(self, setting):
        return True

    def generate(self, ids, new_tokens, setting="greedy"):
        out = self.model.generate(ids, max_new_tokens=new_tokens, eos_token_id=[], seed=0,
                                  **SETTINGS[setting])
        return np.asarray(out)[:, ids.shape[1]:]


class TfGpt2Int8(TfGpt2):
    """tfgpt2 after `model.quantize("int8")` (int8 weights, float activations)."""

    name = "tfgpt2_int8"

    def __init__(self, directory):
        super().__init__(directory)
        self.model.quantize("int8")


class TfGpt2Bf16(TfGpt2):
    """tfgpt2 with bf16 weights and matmuls (float32 logits and sampling)."""

    name = "tfgpt2_bf16"
    dtype = "bfloat16"


class TfGpt2Bf16Xla(TfGpt2Bf16):
    """tfgpt2_bf16 with its decode loops as XLA programs (the fp32 model's
    runtime) instead of plain graphs: the path comparison."""

    name = "tfgpt2_bf16_xla"

    def __init__(self, directory):
        from tfgpt2.generation.programs import xla_function

        super().__init__(directory)
        self.model.decode_programs.loop_function = xla_function


class KerasHub:
    """keras-hub as it runs by default: `compile()` leaves jit_compile on
    "auto", which Keras resolves to False on a CPU-only machine."""

    name = "keras_hub"
    jit_compile = "auto"

    def __init__(self, directory):
        import keras_hub

        backbone = keras_hub.models.GPT2Backbone.from_preset(directory)
        self.model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
        self.model.compile(sampler="greedy", jit_compile=self.jit_compile)

    def supports(self, setting):
        return setting == "greedy"

    def generate(self, ids, new_tokens, setting="greedy"):
        batch, length = ids.shape
        token_ids = np.zeros((batch, length + new_tokens), np.int32)
        token_ids[:, :length] = ids
        mask = np.zeros_like(token_ids, dtype=bool)
        mask[:, :length] = True
        out = self.model.generate({"token_ids": token_ids, "padding_mask": mask},
                                  stop_token_ids=None)
        return np.asarray(out["token_ids"])[:, length:]


class KerasHubXla(KerasHub):
    """keras-hub with its generate loop compiled by XLA (jit_compile=True)."""

    name = "keras_hub_xla"
    jit_compile = True


class Torch:
    name = "torch"

    def __init__(self, directory):
        import torch
        from transformers import GPT2LMHeadModel

        torch.set_num_threads(FLAGS.threads)
        self.model = GPT2LMHeadModel.from_pretrained(directory).eval()

    def supports(self, setting):
        return True

    def generate(self, ids, new_tokens, setting="greedy"):
        return engines.hf_generate(self.model, ids, new_tokens, setting)


PEERS = {"tfgpt2": TfGpt2, "tfgpt2_int8": TfGpt2Int8, "tfgpt2_bf16": TfGpt2Bf16,
         "tfgpt2_bf16_xla": TfGpt2Bf16Xla, "keras_hub": KerasHub, "keras_hub_xla": KerasHubXla,
         "torch": Torch}
ENGINES = {engine.name: engine for engine in (
    engines.CTranslate2, engines.CTranslate2Int8, engines.LlamaCpp, engines.LlamaCppQ8,
    engines.OnnxRuntime, engines.OnnxRuntimeInt8, engines.OpenVino, engines.OpenVinoF32,
    engines.OpenVinoInt8)}


def load_peer(name, directory):
    if name in PEERS:
        return PEERS[name](directory)
    options = dict(directory=directory, work_dir=FLAGS.work_dir, threads=FLAGS.threads)
    if issubclass(ENGINES[name], engines.LlamaCpp):
        options["converter"] = FLAGS.llama_cpp_converter
    return ENGINES[name](**options)


def load_peers(directory):
    unknown = set(FLAGS.peers) - set(PEERS) - set(ENGINES)
    if unknown:
        raise app.UsageError(f"unknown peers {sorted(unknown)}: choose from "
                             f"{sorted({**PEERS, **ENGINES})}")
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    peers = []
    for name in FLAGS.peers:
        try:
            peers.append(load_peer(name, directory))
        except ImportError as err:
            print(f"skipping {name}: {err}", file=sys.stderr)
        except Exception as err:  # an engine that fails to convert or load: say so, run the rest
            if name in PEERS:
                raise
            print(f"skipping {name}: {type(err).__name__}: {err}", file=sys.stderr)
    if not peers:
        raise app.UsageError("none of --peers could be loaded (see above)")
    return peers


def token_reference(peers):
    names = [p.name for p in peers]
    return FLAGS.token_reference if FLAGS.token_reference in names else names[0]


def measure(peers, batch, rng):
    """{(setting, peer name): dict(first, rate, agree)} for one batch size."""
    ids = rng.integers(0, 50257, size=(batch, FLAGS.prompt_length)).astype(np.int32)
    runs = [(setting, peer) for setting in FLAGS.settings for peer in peers
            if peer.supports(setting) and batch <= (getattr(peer, "max_batch", None) or batch)]
    first, outputs, times = {}, {}, {(s, p.name): [] for s, p in runs}
    for setting, peer in runs:
        first[setting, peer.name], outputs[setting, peer.name] = timed(
            lambda: peer.generate(ids, FLAGS.new_tokens, setting))
        assert outputs[setting, peer.name].shape == (batch, FLAGS.new_tokens)
    for round_ in range(FLAGS.repeats):
        for setting, peer in runs:
            seconds, _ = timed(lambda: peer.generate(ids, FLAGS.new_tokens, setting))
            times[setting, peer.name].append(seconds)
            print(f"batch {batch}, round {round_ + 1}: {setting}, {peer.name}: "
                  f"{FLAGS.new_tokens / seconds:.2f} tok/s", file=sys.stderr, flush=True)
    results = {}
    for (setting, name), t in times.items():
        if SETTINGS[setting]["do_sample"]:
            agree = None  # different random streams: nothing to compare
        else:
            agree = leading_agreement(outputs[setting, name],
                                      outputs[setting, token_reference(peers)])
        results[setting, name] = dict(first=first[setting, name], agree=agree,
                                      rate=FLAGS.new_tokens / statistics.median(t))
    return results


def measure_prefill(peers, rng):
    ids = rng.integers(0, 50257, size=(1, FLAGS.prefill_length)).astype(np.int32)
    result = {}
    for peer in peers:
        peer.generate(ids, 1)  # compile / warm up
    times = {p.name: [] for p in peers}
    for _ in range(FLAGS.repeats):
        for peer in peers:
            times[peer.name].append(timed(lambda: peer.generate(ids, 1))[0])
    for name, t in times.items():
        result[name] = statistics.median(t)
    return result


def main(argv):
    del argv
    directory = FLAGS.checkpoint_dir or os.path.join(tempfile.gettempdir(), "tfgpt2-bench-medium")
    os.makedirs(directory, exist_ok=True)
    random_medium_checkpoint(directory)
    peers = load_peers(directory)
    rng = np.random.default_rng(0)
    base_name = peers[0].name
    rows = []
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    from tfgpt2.modeling.precision import decodes_in_xla

    bounded = {p.name: p.model for p in peers if p.name in ("tfgpt2", "tfgpt2_bf16")
               and FLAGS.gemm_bound}
    bounds = []  # (batch, peer name, chain measurement, the peer's greedy tok/s total)
    reads = []  # (peer name, memory read of its weights, its greedy tok/s at batch 1)
    for batch in map(int, FLAGS.batch_sizes):
        results = measure(peers, batch, rng)
        for name, model in bounded.items():
            greedy_rate = results.get(("greedy", name), {}).get("rate")
            chain = gemm_bound.measure(model, batch, repeats=FLAGS.repeats,
                                       xla=decodes_in_xla(model))
            bounds.append((batch, name, chain, greedy_rate * batch if greedy_rate else None))
            if batch == 1 and model.embeddings.compute_dtype == "float32":
                reads.append((name, gemm_bound.memory_read(model, repeats=FLAGS.repeats),
                              greedy_rate))
        greedy = results.get(("greedy", base_name), {}).get("rate")
        for setting in FLAGS.settings:
            ours = results[setting, base_name]["rate"]
            for peer in peers:
                if (setting, peer.name) not in results:
                    continue
                r = results[setting, peer.name]
                rows.append((batch, setting, peer.name, r["rate"], r["rate"] * batch,
                             r["rate"] / greedy if greedy and peer.name == base_name else None,
                             ours / r["rate"], r["first"], r["agree"]))
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)

    print(f"\nGPT-2 Medium ({', '.join(p.name for p in peers)}), prompt {FLAGS.prompt_length}, {FLAGS.new_tokens} new tokens, "
          f"median of {FLAGS.repeats}; {os.cpu_count()} CPU threads\n")
    print(f"| batch | setting | system | tok/s per sequence | tok/s total | "
          f"vs {base_name} greedy | {base_name} speed-up | first call (s) | "
          f"greedy tokens equal to {token_reference(peers)}'s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, setting, name, rate, total, vs_greedy, ratio, first, agree in rows:
        vs_greedy = f"{vs_greedy:.3f}x" if vs_greedy is not None else ""
        agree = "sampled: n/a" if agree is None else f"{agree}/{FLAGS.new_tokens}"
        print(f"| {batch} | {setting} | {name} | {rate:.2f} | {total:.1f} | {vs_greedy} | "
              f"{ratio:.2f}x | {first:.1f} | {agree} |")
    sizes = [(p.name, engines.size_mb(p.path)) for p in peers if hasattr(p, "path")]
    if sizes:
        print("\n| system | converted model (MB) |\n|---|---|")
        for name, mb in sizes:
            print(f"| {name} | {mb:.0f} |")
    if bounds:
        print("\nGEMM bound: the weight matmuls alone (bench/gemm_bound.py), measured after "
              "each batch's rounds\n")
        print("| batch | model | weights, runtime | chain (ms) | GEMM GFLOP/s | "
              "tok/s total allowed | greedy tok/s total measured | share of the bound |")
        print("|---|---|---|---|---|---|---|---|")
        for batch, name, chain, measured in bounds:
            allowed = batch / chain["seconds"]
            share = f"{measured / allowed:.2f}" if measured else ""
            print(f"| {batch} | {name} | {chain['dtype']}, {chain['runtime']} | "
                  f"{chain['seconds'] * 1e3:.1f} | "
                  f"{chain['gflops']:.1f} | {allowed:.1f} | "
                  f"{f'{measured:.1f}' if measured else ''} | {share} |")
    if reads:
        print("\nMemory-read bound at batch 1: one XLA reduction over the same weight bytes "
              "(bench/gemm_bound.py), measured after the batch-1 rounds\n")
        print("| model | weights (GB) | read (ms) | GB/s | tok/s allowed | greedy tok/s measured "
              "| share of the bound |")
        print("|---|---|---|---|---|---|---|")
        for name, read, measured in reads:
            allowed = 1 / read["seconds"]
            print(f"| {name} | {read['gigabytes']:.2f} | {read['seconds'] * 1e3:.1f} | "
                  f"{read['gbps']:.1f} | {allowed:.1f} | "
                  f"{f'{measured:.2f}' if measured else ''} | "
                  f"{f'{measured / allowed:.2f}' if measured else ''} |")
    if FLAGS.prefill_length:
        prefill = measure_prefill(peers, rng)
        print(f"\n| system | prefill {FLAGS.prefill_length} tokens + 1 new (s) | "
              f"{base_name} speed-up |")
        print("|---|---|---|")
        base = prefill[base_name]
        for name, seconds in prefill.items():
            print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")
        if bounded:
            print(f"\n| model | weights | GEMM chain at {FLAGS.prefill_length} rows, LM head at 1 "
                  f"(s) | GEMM GFLOP/s | prefill measured (s) | share of the bound |")
            print("|---|---|---|---|---|---|")
            for name, model in bounded.items():
                chain = gemm_bound.measure(model, FLAGS.prefill_length, head_rows=1,
                                           repeats=FLAGS.repeats)
                print(f"| {name} | {chain['dtype']} | {chain['seconds']:.2f} | "
                      f"{chain['gflops']:.1f} | {prefill[name]:.2f} | "
                      f"{chain['seconds'] / prefill[name]:.2f} |")


if __name__ == "__main__":
    app.run(main)
