"""The weight-streaming bound of decoding: a bare chain of GPT-2 Medium's 97
mat-vecs (4 per block, then the LM head), nothing else, run as decode steps.
A decode step cannot beat its chain on the same machine, so the ratio
decode / chain says how much of a step is spent outside the weights'
matmuls, and chain / peer's decode says the largest speed-up possible.

    python bench/weight_stream.py             # memory read, TF+XLA ([out, in], [in, out]), PyTorch
    python bench/weight_stream.py --batch_size=8 --systems=tf_out_in,tf_in_out,torch
    python bench/weight_stream.py --systems=litert_int8,litert_fp32   # LiteRT (XNNPACK)
    python bench/weight_stream.py --systems=memory_read,tf_out_in,int8_chunked,int8_convert,int8_s8dot,int8_reduce,int8_onednn

Each chain keeps a data dependency from step to step (the next input comes
from the previous step's output), as decoding does. Weights are random
float32, 1.42 GB per copy; tok/s is steps per second (per sequence), median
of --repeats loops of --steps steps after a warm-up loop. `memory_read` is
no chain: one XLA reduction over the same bytes, the machine's read
bandwidth, so its steps/s is what any fp32 decode step could reach at best.
The LiteRT chains are the same mat-vecs converted to a .tflite (int8:
dynamic-range quantisation, as `--mode=export --quantization=int8`) and run
with 2 threads; conversion takes a minute and a few GB. The `int8_*`
chains are the ways TensorFlow itself can multiply by int8 weights with one
float scale per output row (`model.quantize("int8")`'s layout), each
described at its function; with `memory_read` in the run, the last row is
what the machine's read bandwidth allows 0.36 GB of int8 weights. Compare
with bench/decode.py and bench/export.py, run on the same machine.
"""

from __future__ import annotations

import functools
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
                  "Chains to run (also: tf_graph, litert_int8, litert_fp32, int8_convert, "
                  "int8_s8dot, int8_reduce, int8_onednn, int8_chunked).")
flags.DEFINE_integer("batch_size", 1, "Sequences per step (rows of each mat-vec's input).")
flags.DEFINE_integer("int8_block", None, "int8_chunked: weights per block (default: tfgpt2's).")

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

    return tf_loop(stored, matvec, jit_compile)


def tf_loop(stored, matvec, jit_compile: bool):
    """--steps chain steps in one TF while loop (one XLA program, or a
    plain graph)."""
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def loop(h):
        return tf.while_loop(lambda i, h: i < FLAGS.steps,
                             lambda i, h: (i + 1, chain_step(h, stored, matvec, tf.tanh)),
                             (tf.constant(0), h))[1]

    start = tf.ones([FLAGS.batch_size, WIDTH])
    return lambda: loop(start).numpy()


def int8_convert(h, w):
    """The int8 kernel converted to float32 inside the dot (what
    tfgpt2's `weight_matmul` does). XLA on CPU does not fuse the convert
    into the dot: it materializes a float32 copy, hoisted out of the loop."""
    import tensorflow as tf

    q, scale, _ = w
    return tf.matmul(h, tf.cast(q, tf.float32), transpose_b=True) * scale


def int8_s8dot(h, w):
    """The activation row quantized to int8 too: an s8 x s8 -> s32 dot.
    XLA on CPU has no int8 dot: it converts both operands to s32 first (the
    weights' convert hoisted out of the loop, as above)."""
    import tensorflow as tf

    q, scale, _ = w
    h_scale = tf.maximum(tf.reduce_max(tf.abs(h), axis=1, keepdims=True), 1e-30) / 127.0
    h8 = tf.cast(tf.round(h / h_scale), tf.int8)
    acc = tf.matmul(h8, q, transpose_b=True, output_type=tf.int32)
    return tf.cast(acc, tf.float32) * h_scale * scale


def int8_reduce(h, w):
    """The mat-vec as a row reduction of x * float(kernel): XLA fuses the
    convert, product and sum into one loop over the int8 bytes, but runs it
    as a reduction loop, far from the dot's arithmetic rate."""
    import tensorflow as tf

    q, scale, _ = w
    return tf.reduce_sum(h[:, None, :] * tf.cast(q, tf.float32), axis=2) * scale


def int8_onednn(h, w):
    """oneDNN's QuantizedMatMulWithBias (u8 x s8 -> s32), plain TF graph
    only: the activation quantized to uint8 from its minimum, the offset
    added back with the kernel's row sums. The kernel is stored [in, out]:
    oneDNN finds no inner-product primitive for transpose_b. TF's kernel
    reorders the weights into oneDNN's blocked layout on every call
    (ONEDNN_VERBOSE=1 shows it), which costs more than the product."""
    import tensorflow as tf

    q, scale, row_sum = w
    low = tf.minimum(tf.reduce_min(h), 0.0)
    h_scale = tf.maximum(tf.reduce_max(h) - low, 1e-30) / 255.0
    h8 = tf.cast(tf.round((h - low) / h_scale), tf.uint8)
    acc = tf.raw_ops.QuantizedMatMulWithBias(
        a=tf.bitcast(h8, tf.quint8), b=tf.bitcast(q, tf.qint8), bias=tf.zeros([q.shape[1]]),
        min_a=0.0, max_a=255.0, min_b=-127.0, max_b=127.0, Toutput=tf.qint32,
        input_quant_mode="SCALED")[0]
    acc = tf.cast(tf.bitcast(acc, tf.int32), tf.float32)
    return (acc * h_scale + low * row_sum) * scale


def int8_chunked(h, w):
    """tfgpt2's XLA int8 mat-vec (`int8_matmul_by_blocks`): `int8_convert`
    with each block of rows tied to the activation by an optimisation
    barrier, so XLA cannot hoist the convert and fuses slice, convert and
    dot into one loop over the int8 bytes."""
    from tfgpt2.modeling.compiled import int8_matmul_by_blocks

    q, scale, _ = w
    return int8_matmul_by_blocks(h, q, scale, **({"block": FLAGS.int8_block}
                                                 if FLAGS.int8_block else {}))


INT8_MATVECS = {"convert": int8_convert, "s8dot": int8_s8dot, "reduce": int8_reduce,
                "onednn": int8_onednn, "chunked": int8_chunked}


def int8_weights(mats, in_out: bool = False):
    """Each kernel as (int8 [out, in] (or [in, out]), float32 scales [out],
    row sums [out])."""
    import tensorflow as tf

    from tfgpt2.modeling.quantization import quantize_rows

    stored = []
    for m in mats:
        q, scale = quantize_rows(m)
        stored.append((tf.Variable(q.T if in_out else q), tf.Variable(scale),
                       tf.Variable(q.astype(np.float32).sum(axis=1))))
    return stored


def tf_int8_chain(stored, formulation: str):
    """The chain with int8 kernels, each mat-vec one of INT8_MATVECS (XLA,
    except oneDNN's kernel, which only a plain TF graph runs)."""
    return tf_loop(stored, INT8_MATVECS[formulation], jit_compile=formulation != "onednn")


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
    shared_int8 = functools.cache(lambda: int8_weights(mats))  # one copy for every int8 chain
    gigabytes = sum(m.size for m in mats) * 4 / 1e9
    builders = {"memory_read": lambda: memory_read(mats),
                "tf_out_in": lambda: tf_chain(mats, True),
                "tf_in_out": lambda: tf_chain(mats, False),
                "tf_graph": lambda: tf_chain(mats, True, jit_compile=False),
                "torch": lambda: torch_chain(mats),
                **{f"int8_{how}": lambda how=how: tf_int8_chain(
                    int8_weights(mats, in_out=True) if how == "onednn" else shared_int8(), how)
                   for how in INT8_MATVECS},
                "litert_int8": lambda: litert_chain(mats, quantize=True),
                "litert_fp32": lambda: litert_chain(mats, quantize=False)}
    names = {"memory_read": "memory read of the same bytes (XLA reduction): the ceiling",
             "tf_out_in": "TF + XLA, weights [out, in] (tfgpt2's layout)",
             "tf_in_out": "TF + XLA, weights [in, out] (Keras' usual layout)",
             "tf_graph": "TF plain graph (oneDNN), weights [out, in]",
             "torch": "PyTorch, nn.Linear's [out, in]",
             "int8_convert": "TF + XLA, int8 [out, in] converted to f32 in the dot",
             "int8_s8dot": "TF + XLA, int8 x int8 -> int32 dot (activation quantized per row)",
             "int8_reduce": "TF + XLA, int8 [out, in] as a fused row reduction",
             "int8_onednn": "TF plain graph, oneDNN QuantizedMatMulWithBias (u8 x s8)",
             "int8_chunked": "TF + XLA, int8 blocks tied to the activation, convert fused into the dot (tfgpt2's)",
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
    print(f"\nGPT-2 Medium's 97 mat-vecs, {gigabytes:.2f} GB fp32 ({gigabytes / 4:.2f} GB int8) "
          f"per step, batch {FLAGS.batch_size}, {FLAGS.steps} steps, median of "
          f"{FLAGS.repeats}; load {os.getloadavg()[0]:.2f}\n")
    print("| chain | steps/s (tok/s bound per sequence) | GB of weights stored | "
          "GB/s of stored weights |")
    print("|---|---:|---:|---:|")
    for name, measured in times.items():
        rate = FLAGS.steps / statistics.median(measured)
        stored = gigabytes / 4 if name.startswith(("int8_", "litert_int8")) else gigabytes
        print(f"| {names[name]} | {rate:.2f} | {stored:.2f} | {rate * stored:.1f} |")
    if "memory_read" in times:  # what the same bandwidth allows int8 weights
        read = FLAGS.steps / statistics.median(times["memory_read"]) * gigabytes
        print(f"| int8 weight-read bound: {gigabytes / 4:.2f} GB at the memory read's "
              f"{read:.1f} GB/s | {read / (gigabytes / 4):.2f} | {gigabytes / 4:.2f} | {read:.1f} |")


if __name__ == "__main__":
    app.run(main)
