"""The weight-streaming bound of decoding: a bare chain of GPT-2 Medium's 97
mat-vecs (4 per block, then the LM head), nothing else, run as decode steps.
A decode step cannot beat its chain on the same machine, so the ratio
decode / chain says how much of a step is spent outside the weights'
matmuls, and chain / peer's decode says the largest speed-up possible.

    python bench/weight_stream.py             # memory read, TF+XLA ([out, in], [in, out]), PyTorch
    python bench/weight_stream.py --batch_size=8 --systems=tf_out_in,tf_in_out,torch
    python bench/weight_stream.py --systems=litert_int8,litert_fp32   # LiteRT (XNNPACK)

Each chain keeps a data dependency from step to step (the next input comes
from the previous step's output), as decoding does. Weights are random
float32, 1.42 GB per copy; tok/s is steps per second (per sequence), median
of --repeats loops of --steps steps after a warm-up loop. `memory_read` is
no chain: one XLA reduction over the same bytes, the machine's read
bandwidth, so its steps/s is what any fp32 decode step could reach at best.
The LiteRT chains are the same mat-vecs converted to a .tflite (int8:
dynamic-range quantisation, as `--mode=export --quantization=int8`) and run
with 2 threads; conversion takes a minute and a few GB. Compare with
bench/decode.py and bench/export.py, run on the same machine.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 64, "Decode steps per timed loop.")
flags.DEFINE_integer("repeats", 3, "Timed loops (median).")
flags.DEFINE_list("systems", ["memory_read", "tf_out_in", "tf_in_out", "torch"],
                  "Chains to run (also: tf_graph, litert_int8, litert_fp32).")
flags.DEFINE_integer("batch_size", 1, "Sequences per step (rows of each mat-vec's input).")

WIDTH, LAYERS, VOCAB = 1024, 24, 50257
# (out, in) of each block's weights: attention in/out, MLP in/out.
BLOCK = [(3 * WIDTH, WIDTH), (WIDTH, WIDTH), (4 * WIDTH, WIDTH), (WIDTH, 4 * WIDTH)]


def weights(rng):
    mats = [rng.standard_normal(shape, dtype=np.float32) * 0.02
            for _ in range(LAYERS) for shape in BLOCK]
    return mats + [rng.standard_normal((VOCAB, WIDTH), dtype=np.float32) * 0.02]


def chain_step(h, stored, matvec, tanh):
    """One step: each block's four mat-vecs (the MLP's through tanh), then
    the LM head, whose logits feed the next step's input."""
    for i in range(LAYERS):
        qkv, proj, fc, fc_proj = stored[4 * i: 4 * i + 4]
        h = h + matvec(matvec(h, qkv)[:, :WIDTH], proj)
        h = h + matvec(tanh(matvec(h, fc)), fc_proj)
    logits = matvec(h, stored[-1])
    return h * 0.5 + logits[:, :WIDTH] * 1e-3


def tf_chain(mats, out_in: bool, jit_compile: bool = True):
    import tensorflow as tf

    stored = [tf.Variable(m if out_in else m.T) for m in mats]

    def matvec(h, w):
        return tf.matmul(h, w, transpose_b=out_in)

    @tf.function(jit_compile=jit_compile)
    def loop(h):
        return tf.while_loop(lambda i, h: i < FLAGS.steps,
                             lambda i, h: (i + 1, chain_step(h, stored, matvec, tf.tanh)),
                             (tf.constant(0), h))[1]

    start = tf.ones([FLAGS.batch_size, WIDTH])
    return lambda: loop(start).numpy()


def memory_read(mats):
    """One pass over the weights' bytes as a row reduction (what a mat-vec
    must read), no arithmetic to speak of: the read bandwidth."""
    import tensorflow as tf

    stored = [tf.Variable(m.reshape(-1, WIDTH)) for m in mats]
    total = tf.function(lambda: tf.add_n([tf.reduce_sum(w, axis=1)[:WIDTH] for w in stored]),
                        jit_compile=True)

    def run():
        for _ in range(FLAGS.steps):
            total().numpy()

    return run


def litert_chain(mats, quantize: bool):
    import tempfile

    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    class Chain(tf.Module):
        def __init__(self):
            self.stored = [tf.Variable(m) for m in mats]  # [out, in], as the export does

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32)])
        def step(self, h):
            def matvec(x, w):
                return tf.matmul(x, w, transpose_b=True)

            return {"h": chain_step(h, self.stored, matvec, tf.tanh)}

    chain = Chain()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [chain.step.get_concrete_function()], chain)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with tempfile.TemporaryDirectory() as directory:
        # The interpreter maps the file, so the mapping outlives the file.
        path = os.path.join(directory, "chain.tflite")
        with open(path, "wb") as f:
            f.write(converter.convert())
        del chain, converter
        interpreter = Interpreter(model_path=path, num_threads=2)
    runner = interpreter.get_signature_runner()
    state = {"h": np.ones([FLAGS.batch_size, WIDTH], np.float32)}

    def run():
        for _ in range(FLAGS.steps):
            state["h"] = runner(h=state["h"])["h"]

    return run


def torch_chain(mats):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    stored = [torch.from_numpy(m) for m in mats]  # [out, in], as nn.Linear keeps them
    linear = torch.nn.functional.linear

    def run():
        with torch.inference_mode():
            h = torch.ones(FLAGS.batch_size, WIDTH)
            for _ in range(FLAGS.steps):
                h = chain_step(h, stored, linear, torch.tanh)
            return h.numpy()

    return run


def main(argv):
    del argv
    mats = weights(np.random.default_rng(0))
    gigabytes = sum(m.size for m in mats) * 4 / 1e9
    builders = {"memory_read": lambda: memory_read(mats),
                "tf_out_in": lambda: tf_chain(mats, True),
                "tf_in_out": lambda: tf_chain(mats, False),
                "tf_graph": lambda: tf_chain(mats, True, jit_compile=False),
                "torch": lambda: torch_chain(mats),
                "litert_int8": lambda: litert_chain(mats, quantize=True),
                "litert_fp32": lambda: litert_chain(mats, quantize=False)}
    names = {"memory_read": "memory read of the same bytes (XLA reduction): the ceiling",
             "tf_out_in": "TF + XLA, weights [out, in] (tfgpt2's layout)",
             "tf_in_out": "TF + XLA, weights [in, out] (Keras' usual layout)",
             "tf_graph": "TF plain graph (oneDNN), weights [out, in]",
             "torch": "PyTorch, nn.Linear's [out, in]",
             "litert_int8": "LiteRT (XNNPACK), int8 dynamic-range .tflite",
             "litert_fp32": "LiteRT (XNNPACK), fp32 .tflite"}
    runs = {name: builders[name]() for name in FLAGS.systems}
    for run in runs.values():
        run()  # warm-up: compilation, first touch of the weights
    times = {name: [] for name in runs}
    for _ in range(FLAGS.repeats):  # interleaved rounds
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"\nGPT-2 Medium's 97 mat-vecs, {gigabytes:.2f} GB fp32 per step, batch "
          f"{FLAGS.batch_size}, {FLAGS.steps} steps, median of {FLAGS.repeats}; "
          f"load {os.getloadavg()[0]:.2f}\n")
    print("| chain | steps/s (tok/s bound per sequence) | fp32-equivalent GB/s |")
    print("|---|---:|---:|")
    for name, measured in times.items():
        rate = FLAGS.steps / statistics.median(measured)
        print(f"| {names[name]} | {rate:.2f} | {rate * gigabytes:.1f} |")


if __name__ == "__main__":
    app.run(main)
