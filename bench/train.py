"""Training speed: tfgpt2's train step against keras-hub's
`GPT2CausalLM.fit` and transformers' PyTorch training step, in one run; and
GPT-2 Medium's memory and step time at seq 1024.

    python bench/train.py                       # GPT-2 small config, all peers
    python bench/train.py --mixed_precision=bf16
    python bench/train.py --peers=tfgpt2_noxla,keras_hub --steps=4
    python bench/train.py --medium              # Medium, seq 1024, batch 1 (a subprocess)

Protocol: the GPT-2 small config (12 layers, 768 wide, 12 heads, vocab 50257,
dropout 0.1), random init, AdamW (lr 1e-4, weight decay 0.01), fp32 (or
every peer in bf16 mixed precision with --mixed_precision=bf16), the same
random token ids for every peer (batch 4 x seq 256 inputs; each peer scores
its usual targets). Each peer runs --warmup steps (compilation included,
reported as "first steps"), then --steps timed steps; s/step is their median,
tok/s = batch * seq / (s/step). All peers live in this process; after
their warm-up the timed steps run round by round (one step of each peer per
round), so changes in the machine's load hit every peer alike. "cores used"
is process CPU time / wall time over a peer's timed steps.

--medium runs GPT-2 Medium (24 x 1024) at seq 1024, batch 1, in a fresh
subprocess and reports the first step (compilation included), the median
s/step of the next steps and the process's peak resident memory.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("peers", ["tfgpt2_noxla", "tfgpt2", "keras_hub", "keras_hub_noxla", "torch"],
                  "Systems; the first is the baseline.")
flags.DEFINE_integer("batch_size", 4, "Sequences per step.")
flags.DEFINE_integer("seq_len", 256, "Tokens per sequence.")
flags.DEFINE_integer("warmup", 2, "Untimed first steps (compilation).")
flags.DEFINE_integer("steps", 3, "Timed steps (median).")
flags.DEFINE_bool("medium", False, "Run the GPT-2 Medium memory/time measurement instead.")
flags.DEFINE_bool("medium_child", False, "(internal) the Medium measurement itself.")
flags.DEFINE_integer("threads", os.cpu_count() or 1, "CPU threads for PyTorch.")
flags.DEFINE_enum("mixed_precision", "none", ["none", "bf16"],
                  "Compute dtype of every peer: float32, or bfloat16 with float32 master weights "
                  "(Keras' mixed_bfloat16; PyTorch autocast).")

SMALL = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
LR, WEIGHT_DECAY, DROPOUT = 1e-4, 0.01, 0.1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(step) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    step()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def measure(step, warmup: int, steps: int) -> dict:
    first = sum(timed(step)[0] for _ in range(warmup))
    runs = [timed(step) for _ in range(steps)]
    return {"first": first, "step": statistics.median(w for w, _ in runs),
            "cores": sum(c for _, c in runs) / sum(w for w, _ in runs)}


class TfGpt2:
    name = "tfgpt2, `jit_compile=True` (one XLA program; the default on GPUs/TPUs)"
    jit_compile = True

    def __init__(self, tokens):
        import tensorflow as tf

        from tfgpt2 import GPT2Config, GPT2LMHeadModel
        from tfgpt2.training.optimization import make_optimizer
        from tfgpt2.training.settings import FinetuneConfig
        from tfgpt2.training.step import Steps

        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
        config = GPT2Config(**SMALL, resid_pdrop=DROPOUT, embd_pdrop=DROPOUT, attn_pdrop=DROPOUT)
        settings = FinetuneConfig(train_files="-", output_dir="-", learning_rate=LR,
                                  warmup_steps=0, lr_schedule="constant", weight_decay=WEIGHT_DECAY,
                                  clip_norm=1.0, train_steps=10**6)
        with strategy.scope():
            model = GPT2LMHeadModel.from_config(config, seed=0, dtype=keras_policy())
            optimizer, _ = make_optimizer(settings, model)
        self.steps = Steps(model, optimizer, strategy, clip_norm=1.0, jit_compile=self.jit_compile)
        batch = {"tokens": tf.constant(tokens), "mask": tf.ones_like(tokens),
                 "denominator": tf.fill([len(tokens)], float(tokens[:, 1:].size))}
        self.batch = next(iter(strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors(batch))))
        self.step_index = 0

    def step(self):
        import tensorflow as tf

        loss, _ = self.steps.train_step(self.batch, tf.constant(self.step_index, tf.int64))
        self.step_index += 1
        return float(loss)


class TfGpt2NoXla(TfGpt2):
    name = "tfgpt2, CPU default (plain-graph gradient, XLA update)"
    jit_compile = False


class KerasHub:
    name = "keras-hub `GPT2CausalLM.fit`, jit_compile=True"
    jit_compile = True

    def __init__(self, tokens):
        import keras
        import keras_hub

        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=SMALL["vocab_size"], num_layers=SMALL["n_layer"],
            num_heads=SMALL["n_head"], hidden_dim=SMALL["n_embd"],
            intermediate_dim=4 * SMALL["n_embd"], max_sequence_length=SMALL["n_positions"],
            dropout=DROPOUT, dtype=keras_policy())
        self.model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
        self.model.compile(optimizer=keras.optimizers.AdamW(LR, weight_decay=WEIGHT_DECAY,
                                                            global_clipnorm=1.0),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           jit_compile=self.jit_compile)
        inputs = tokens[:, :-1]
        self.x = {"token_ids": inputs, "padding_mask": np.ones_like(inputs, bool)}
        self.y = tokens[:, 1:]

    def step(self):
        # fit() on one batch per call: Keras reuses its compiled train function.
        self.model.fit(self.x, self.y, batch_size=len(self.y), epochs=1, verbose=0, shuffle=False)


class KerasHubNoXla(KerasHub):
    name = "keras-hub `GPT2CausalLM.fit`, jit_compile=False"
    jit_compile = False


class Torch:
    name = "transformers (PyTorch) train step"

    def __init__(self, tokens):
        import torch
        import transformers

        torch.manual_seed(0)
        torch.set_num_threads(FLAGS.threads)
        config = transformers.GPT2Config(
            vocab_size=SMALL["vocab_size"], n_positions=SMALL["n_positions"],
            n_embd=SMALL["n_embd"], n_layer=SMALL["n_layer"], n_head=SMALL["n_head"],
            resid_pdrop=DROPOUT, embd_pdrop=DROPOUT, attn_pdrop=DROPOUT)
        self.model = transformers.GPT2LMHeadModel(config).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        self.ids = torch.tensor(tokens[:, :-1], dtype=torch.long)
        self.torch = torch

    def step(self):
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16,
                                 enabled=FLAGS.mixed_precision == "bf16"):
            loss = self.model(self.ids, labels=self.ids).loss
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


# tfgpt2_noxla is what `finetune` runs on a CPU; tfgpt2 forces one XLA program.
PEERS = {"tfgpt2": TfGpt2, "tfgpt2_noxla": TfGpt2NoXla, "keras_hub": KerasHub,
         "keras_hub_noxla": KerasHubNoXla, "torch": Torch}


def keras_policy() -> str:
    return {"none": "float32", "bf16": "mixed_bfloat16"}[FLAGS.mixed_precision]


def small_table() -> None:
    tokens = np.random.default_rng(0).integers(
        0, SMALL["vocab_size"], size=(FLAGS.batch_size, FLAGS.seq_len + 1)).astype(np.int32)
    per_step = FLAGS.batch_size * FLAGS.seq_len
    peers, first = [], {}
    for key in FLAGS.peers:  # build and warm up (compile) each peer
        peer = PEERS[key](tokens)
        first[key] = sum(timed(peer.step)[0] for _ in range(FLAGS.warmup))
        peers.append((key, peer))
    runs = {key: [] for key, _ in peers}
    for _ in range(FLAGS.steps):  # then round by round, so load changes hit all alike
        for key, peer in peers:
            runs[key].append(timed(peer.step))
    rows = []
    for key, peer in peers:
        walls = [w for w, _ in runs[key]]
        result = {"first": first[key], "step": statistics.median(walls),
                  "cores": sum(c for _, c in runs[key]) / sum(walls)}
        print(f"# {key}: {result} steps {walls}", file=sys.stderr, flush=True)
        rows.append((peer.name, result))
    base = per_step / rows[0][1]["step"]
    print(f"GPT-2 small config (12 x 768), batch {FLAGS.batch_size} x seq {FLAGS.seq_len}, "
          f"{'bf16 mixed precision' if FLAGS.mixed_precision == 'bf16' else 'fp32'}, AdamW; load before: {os.getloadavg()[0]:.2f}")
    print("| system | s/step | tok/s | tfgpt2 speed-up | first " f"{FLAGS.warmup} steps (s) | cores used |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        speed = per_step / r["step"]
        print(f"| {name} | {r['step']:.2f} | {speed:.1f} | {base / speed:.2f}x | "
              f"{r['first']:.1f} | {r['cores']:.2f} |")


def medium_child() -> None:
    import tensorflow as tf

    from tfgpt2 import GPT2Config, GPT2LMHeadModel
    from tfgpt2.training.optimization import make_optimizer
    from tfgpt2.training.settings import FinetuneConfig
    from tfgpt2.training.step import Steps
    from tfgpt2.distribute.strategy import replicas_on_cpu

    from bench_support import training_flops_per_token

    seq = 1024
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    settings = FinetuneConfig(train_files="-", output_dir="-", train_steps=10**6)
    with strategy.scope():
        model = GPT2LMHeadModel.from_config(GPT2Config.from_preset("gpt2-medium"), seed=0)
        optimizer, _ = make_optimizer(settings, model)
    jit_compile = settings.resolved_jit_compile(on_cpu=replicas_on_cpu(strategy))  # as finetune
    steps = Steps(model, optimizer, strategy, clip_norm=1.0, jit_compile=jit_compile)
    tokens = np.random.default_rng(0).integers(0, 50257, size=(1, seq + 1)).astype(np.int32)
    batch = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(
        {"tokens": tokens, "mask": np.ones_like(tokens), "denominator": np.array([seq], np.float32)}))))
    index = iter(range(10**6))
    result = measure(lambda: float(steps.train_step(batch, tf.constant(next(index), tf.int64))[0]),
                     1, FLAGS.steps)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    flops = training_flops_per_token(model.count_params(), 24, 1024, seq)
    print("GPT-2 Medium (24 x 1024), seq 1024, batch 1, fp32, AdamW, one device, "
          + ("one XLA program" if jit_compile else "plain-graph gradient, XLA update"))
    print("| first step, compilation included (s) | s/step | tok/s | peak RSS (GB) | cores used | "
          "achieved GFLOP/s (model FLOPs) |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {result['first']:.1f} | {result['step']:.1f} | {seq / result['step']:.1f} | "
          f"{peak_gb:.1f} | {result['cores']:.2f} | {flops * seq / result['step'] / 1e9:.0f} |")


def main(argv):
    del argv
    if FLAGS.medium_child:
        medium_child()
    elif FLAGS.medium:
        print(f"load before: {os.getloadavg()[0]:.2f}")
        subprocess.run([sys.executable, __file__, "--medium_child", f"--steps={FLAGS.steps}"],
                       check=True)
    else:
        small_table()


if __name__ == "__main__":
    app.run(main)
