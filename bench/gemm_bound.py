"""The GEMM bound of a decode step or a prefill: a model's own weight
matmuls (each block's c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, then the
LM head), nothing else, in the weights' dtype and the runtime the model's
program uses: XLA for an fp32 decode loop, a plain TF graph (oneDNN's
kernels) for prefills and for bf16 decode loops on a CPU.

A step of M rows through GPT-2 cannot beat its chain of matmuls at M rows,
so `rows / chain seconds` is the most tok/s (total) a decode step of that
batch can reach, and the chain at M = prompt length (LM head at one row, as
a prefill computes it) is the shortest prefill. bench/decode.py measures it
in the same run as the decode rows, with the peer models' own weights.

Each matmul's input is its predecessor's output (sliced to width and
normalised), so the chain runs in order, as a step does.
"""

from __future__ import annotations

import statistics
import time

import tensorflow as tf

from tfgpt2.generation.programs import graph_function, xla_function
from tfgpt2.modeling.compiled import weight_matmul


def weight_chain(model):
    """The model's weight matrices [out, in] in a step's order."""
    kernels = []
    for block in model.blocks:
        kernels += [block.attn.c_attn.kernel, block.attn.c_proj.kernel,
                    block.mlp.c_fc.kernel, block.mlp.c_proj.kernel]
    return [k.value for k in kernels], model.embeddings.wte.value


def chain_function(kernels, head, head_rows: int, xla: bool):
    """The chain as the model's decode runs its matmuls: `weight_matmul` in
    an XLA program (`xla_function`) or a plain graph (`graph_function`)."""

    def run(x):
        for kernel in kernels:
            y = weight_matmul(x[:, :kernel.shape[1]], kernel)
            # Unit RMS, as after a LayerNorm: shrinking values would end in
            # float32 denormals, which run far slower.
            x = tf.math.l2_normalize(y, axis=-1) * tf.cast(kernel.shape[0] ** 0.5, y.dtype)
        return weight_matmul(x[-head_rows:, :head.shape[1]], head)

    return xla_function(run) if xla else graph_function(run)


def flops(kernels, head, rows: int, head_rows: int) -> int:
    body = sum(k.shape[0] * k.shape[1] for k in kernels)
    return 2 * (rows * body + head_rows * head.shape[0] * head.shape[1])


def measure(model, rows: int, head_rows: int | None = None, repeats: int = 3,
            xla: bool = False) -> dict:
    """The chain at `rows` rows (LM head at `head_rows`, default all), in
    XLA or a plain graph: dict(seconds=median, gflops=the GEMM rate, dtype)."""
    kernels, head = weight_chain(model)
    head_rows = rows if head_rows is None else head_rows
    width = max(k.shape[1] for k in kernels)
    x = tf.cast(tf.random.stateless_normal([rows, width], seed=[0, rows]), kernels[0].dtype)
    run = chain_function(kernels, head, head_rows, xla)
    run(x).numpy()  # trace, compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x).numpy()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return dict(seconds=seconds, gflops=flops(kernels, head, rows, head_rows) / seconds / 1e9,
                dtype=kernels[0].dtype.name, runtime="XLA" if xla else "plain graph")
