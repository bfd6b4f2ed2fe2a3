"""Decoding speed: tfgpt2 against keras-hub and transformers (PyTorch) on the
same GPT-2 Medium weights, in one run, greedy and sampled.

    python bench/decode.py                      # all peers that are installed
    python bench/decode.py --peers=tfgpt2,keras_hub --batch_sizes=1
    python bench/decode.py --peers=tfgpt2,torch --prefill_length=0   # sampled rows
    python bench/decode.py --peers=tfgpt2,tfgpt2_int8 --batch_sizes=1 --settings=greedy,top_k=50

Protocol (docs/benchmarks.md): fp32, seeded random weights, an 8-token
prompt, 64 new tokens, batch 1 then 8. Tokens/s is new tokens per second per
sequence, median of --repeats timed calls after a warm-up call; the first
call (compilation included) is reported separately, as is the time to the
first new token for a 512-token prompt. Peers and settings run interleaved,
round by round, so machine noise hits them alike; ratios are the first
peer's (tfgpt2's) speed-up over each, and each tfgpt2 setting against
tfgpt2's greedy rate of the same round.

Settings (--settings): greedy, and the samplers users run: top_k=50 (the
model card's default), top_p=0.9 with top_k=0, temperature 0.7 with
top_k=40. Every peer samples with the same settings and a fixed seed, and
generates exactly --new_tokens (transformers: min_new_tokens). Sampled
tokens cannot be compared across systems (different random streams); greedy
tokens are compared with tfgpt2's. keras-hub runs greedy only.
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

from bench_support import leading_agreement, random_medium_checkpoint  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("peers", ["tfgpt2", "keras_hub", "keras_hub_xla", "torch"],
                  "Systems to measure; the first is the baseline of the ratios (also: "
                  "tfgpt2_int8, tfgpt2 after model.quantize(\"int8\")).")
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
flags.DEFINE_list("settings", ["greedy", "top_k=50", "top_p=0.9", "temperature=0.7+top_k=40"],
                  "Decoding settings (names from SETTINGS).")
flags.DEFINE_integer("prompt_length", 8, "Prompt tokens.")
flags.DEFINE_integer("new_tokens", 64, "New tokens per sequence.")
flags.DEFINE_integer("prefill_length", 512, "Prompt length for the prefill latency "
                     "(0 skips it).")
flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median).")
flags.DEFINE_integer("threads", os.cpu_count() or 1, "CPU threads for PyTorch.")
flags.DEFINE_string("checkpoint_dir", None,
                    "Reuse a saved random Medium checkpoint here (written if missing).")


# Each setting as generate() keyword arguments, the same for every peer.
SETTINGS = {
    "greedy": dict(do_sample=False),
    "top_k=50": dict(do_sample=True, top_k=50),
    "top_p=0.9": dict(do_sample=True, top_k=0, top_p=0.9),
    "temperature=0.7+top_k=40": dict(do_sample=True, temperature=0.7, top_k=40),
}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class TfGpt2:
    name = "tfgpt2"

    def __init__(self, directory):
        from tfgpt2 import GPT2LMHeadModel

        self.model = GPT2LMHeadModel.from_pretrained(directory)

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
        self.torch = torch
        self.model = GPT2LMHeadModel.from_pretrained(directory).eval()

    def supports(self, setting):
        return True

    def generate(self, ids, new_tokens, setting="greedy"):
        torch = self.torch
        # transformers' own default is top_k=50: pass every setting explicitly.
        settings = dict(dict(top_k=0, top_p=1.0, temperature=1.0), **SETTINGS[setting])
        if not settings["do_sample"]:
            settings = dict(do_sample=False)
        torch.manual_seed(0)
        with torch.inference_mode():
            input_ids = torch.as_tensor(ids, dtype=torch.long)
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                      max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                      pad_token_id=50256, **settings)
        return out[:, ids.shape[1]:].numpy()


PEERS = {"tfgpt2": TfGpt2, "tfgpt2_int8": TfGpt2Int8, "keras_hub": KerasHub,
         "keras_hub_xla": KerasHubXla, "torch": Torch}


def load_peers(directory):
    peers = []
    for name in FLAGS.peers:
        try:
            peers.append(PEERS[name](directory))
        except ImportError as err:
            print(f"skipping {name}: {err}", file=sys.stderr)
    return peers


def measure(peers, batch, rng):
    """{(setting, peer name): dict(first, rate, agree)} for one batch size."""
    ids = rng.integers(0, 50257, size=(batch, FLAGS.prompt_length)).astype(np.int32)
    runs = [(setting, peer) for setting in FLAGS.settings for peer in peers
            if peer.supports(setting)]
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
            agree = leading_agreement(outputs[setting, name], outputs[setting, peers[0].name])
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
    for batch in map(int, FLAGS.batch_sizes):
        results = measure(peers, batch, rng)
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
          f"greedy tokens equal to {base_name}'s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, setting, name, rate, total, vs_greedy, ratio, first, agree in rows:
        vs_greedy = f"{vs_greedy:.3f}x" if vs_greedy is not None else ""
        agree = "sampled: n/a" if agree is None else f"{agree}/{FLAGS.new_tokens}"
        print(f"| {batch} | {setting} | {name} | {rate:.2f} | {total:.1f} | {vs_greedy} | "
              f"{ratio:.2f}x | {first:.1f} | {agree} |")
    if FLAGS.prefill_length:
        prefill = measure_prefill(peers, rng)
        print(f"\n| system | prefill {FLAGS.prefill_length} tokens + 1 new (s) | "
              f"{base_name} speed-up |")
        print("|---|---|---|")
        base = prefill[base_name]
        for name, seconds in prefill.items():
            print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    app.run(main)
