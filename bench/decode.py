"""Greedy decoding speed: tfgpt2 against keras-hub and transformers (PyTorch)
on the same GPT-2 Medium weights, in one run.

    python bench/decode.py                      # all peers that are installed
    python bench/decode.py --peers=tfgpt2,keras_hub --batch_sizes=1

Protocol (docs/benchmarks.md): fp32, seeded random weights, an 8-token
prompt, 64 new tokens, greedy, batch 1 then 8. Tokens/s is new tokens per
second per sequence, median of --repeats timed calls after a warm-up call;
the first call (compilation included) is reported separately, as is the time
to the first new token for a 512-token prompt. Peers run interleaved, round
by round, so machine noise hits them alike; ratios are the first peer's
(tfgpt2's) speed-up over each.
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

FLAGS = flags.FLAGS
flags.DEFINE_list("peers", ["tfgpt2", "keras_hub", "keras_hub_xla", "torch"],
                  "Systems to measure; the first is the baseline of the ratios.")
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
flags.DEFINE_integer("prompt_length", 8, "Prompt tokens.")
flags.DEFINE_integer("new_tokens", 64, "New tokens per sequence.")
flags.DEFINE_integer("prefill_length", 512, "Prompt length for the prefill latency.")
flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median).")
flags.DEFINE_integer("threads", os.cpu_count() or 1, "CPU threads for PyTorch.")
flags.DEFINE_string("checkpoint_dir", None,
                    "Reuse a saved random Medium checkpoint here (written if missing).")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class TfGpt2:
    name = "tfgpt2"

    def __init__(self, directory):
        from tfgpt2 import GPT2LMHeadModel

        self.model = GPT2LMHeadModel.from_pretrained(directory)

    def generate(self, ids, new_tokens):
        out = self.model.generate(ids, max_new_tokens=new_tokens, eos_token_id=[])
        return np.asarray(out)[:, ids.shape[1]:]


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

    def generate(self, ids, new_tokens):
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

    def generate(self, ids, new_tokens):
        torch = self.torch
        with torch.inference_mode():
            input_ids = torch.as_tensor(ids, dtype=torch.long)
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                      max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                      do_sample=False, pad_token_id=50256)
        return out[:, ids.shape[1]:].numpy()


PEERS = {"tfgpt2": TfGpt2, "keras_hub": KerasHub, "keras_hub_xla": KerasHubXla, "torch": Torch}


def random_medium_checkpoint(directory):
    if os.path.isfile(os.path.join(directory, "model.safetensors")):
        return directory
    from tfgpt2 import GPT2Config, GPT2LMHeadModel

    print(f"Writing a seeded random GPT-2 Medium to {directory} ...", file=sys.stderr)
    model = GPT2LMHeadModel.from_config(GPT2Config.from_preset("gpt2-medium"), seed=0)
    model.save_pretrained(directory)
    return directory


def load_peers(directory):
    peers = []
    for name in FLAGS.peers:
        try:
            peers.append(PEERS[name](directory))
        except ImportError as err:
            print(f"skipping {name}: {err}", file=sys.stderr)
    return peers


def measure(peers, batch, rng):
    ids = rng.integers(0, 50257, size=(batch, FLAGS.prompt_length)).astype(np.int32)
    first, outputs, times = {}, {}, {p.name: [] for p in peers}
    for peer in peers:
        first[peer.name], outputs[peer.name] = timed(lambda: peer.generate(ids, FLAGS.new_tokens))
    for _ in range(FLAGS.repeats):
        for peer in peers:
            seconds, _ = timed(lambda: peer.generate(ids, FLAGS.new_tokens))
            times[peer.name].append(seconds)
    reference = outputs[peers[0].name]
    agree = {name: bool(np.array_equal(out, reference)) for name, out in outputs.items()}
    return {name: dict(first=first[name], rate=FLAGS.new_tokens / statistics.median(t),
                       agree=agree[name]) for name, t in times.items()}


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
    rows = []
    for batch in map(int, FLAGS.batch_sizes):
        results = measure(peers, batch, rng)
        base = results[peers[0].name]["rate"]
        for peer in peers:
            r = results[peer.name]
            rows.append((batch, peer.name, r["rate"], r["rate"] * batch, base / r["rate"],
                         r["first"], r["agree"]))
    prefill = measure_prefill(peers, rng)

    print(f"\nGPT-2 Medium fp32, greedy, prompt {FLAGS.prompt_length}, {FLAGS.new_tokens} new "
          f"tokens, median of {FLAGS.repeats}; {os.cpu_count()} CPU threads\n")
    print("| batch | system | tok/s per sequence | tok/s total | tfgpt2 speed-up | "
          "first call (s) | same tokens as tfgpt2 |")
    print("|---|---|---|---|---|---|---|")
    for batch, name, rate, total, ratio, first, agree in rows:
        print(f"| {batch} | {name} | {rate:.2f} | {total:.1f} | {ratio:.2f}x | {first:.1f} | "
              f"{'yes' if agree else 'NO'} |")
    print(f"\n| system | prefill {FLAGS.prefill_length} tokens + 1 new (s) | tfgpt2 speed-up |")
    print("|---|---|---|")
    base = prefill[peers[0].name]
    for name, seconds in prefill.items():
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    app.run(main)
