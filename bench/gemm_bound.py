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
    seconds = _seconds_per_call(lambda: run(x).numpy(), repeats)
    return dict(seconds=seconds, gflops=flops(kernels, head, rows, head_rows) / seconds / 1e9,
                dtype=kernels[0].dtype.name, runtime="XLA" if xla else "plain graph")


def memory_read(model, repeats: int = 3) -> dict:
    """The read bound of a one-row decode step: one XLA program that reads
    the same weight bytes as the chain (row sums of every matrix, then
    their total), with next to no arithmetic. No batch-1 step, which must
    read every weight once, can take less. float32 weights only: XLA's CPU
    reduction of bf16 runs far below the memory's rate (5.9 GB/s here), so
    it would bound nothing. dict(seconds=median, gbps, gigabytes)."""
    kernels, head = weight_chain(model)
    weights = kernels + [head]
    gigabytes = sum(w.shape.num_elements() * w.dtype.size for w in weights) / 1e9
    run = xla_function(lambda: tf.add_n(
        [tf.reduce_sum(tf.reduce_sum(w, axis=1)) for w in weights]))
    seconds = _seconds_per_call(lambda: run().numpy(), repeats)
    return dict(seconds=seconds, gbps=gigabytes / seconds, gigabytes=gigabytes)


def _seconds_per_call(call, repeats: int, fill_seconds: float = 0.5) -> float:
    """Median over `repeats` timings of back-to-back calls, as many per
    timing as fill about `fill_seconds` (a single 50 ms call is too short
    to time on a shared machine), after a warm-up call (tracing, XLA
    compilation, first touch of the weights)."""
    call()
    start = time.perf_counter()
    call()
    calls = max(1, round(fill_seconds / (time.perf_counter() - start)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)
