"""What changes when the network is traced into one XLA program, and the
in-place tensor write that both kinds of graph need.

Decode programs trace `forward` under `xla_program()`. Two things differ there:
- each weight matmul stays a dot of its own (an optimisation barrier): XLA on
  CPU otherwise fuses the bias add into the dot and emits a single-threaded
  loop that streams the weights markedly slower than its standalone dot;
- tensors are written in place with a dynamic-update-slice, so the
  fixed-size KV cache is never copied inside the decode loop.
Both are XLA ops with no kernel in the plain TF runtime, hence the flag: the
same code traced outside it is a plain TF graph (TF Serving without XLA).
The in-place write alone also has a LiteRT builtin (DYNAMIC_UPDATE_SLICE),
so the `.tflite` export traces under `in_place_writes()`.

A plain TF graph has no in-place dynamic-update-slice, but it has
`InplaceUpdate`, which writes rows of its input's buffer with no copy. It
writes whatever buffer it is given, so it is only safe on a buffer that one
graph run owns: `new_buffer` makes one (an `Empty` op, which is never
constant-folded into a tensor shared by every run), and `write_at(...,
owned=True)` uses `InplaceUpdate` on it under `owned_buffer_writes()` (the
SavedModel's XLA-free decode loop, which TF Serving runs concurrently: each
request's run has its own cache).
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

_IN_XLA_PROGRAM = contextvars.ContextVar("in_xla_program", default=False)
_IN_PLACE_WRITES = contextvars.ContextVar("in_place_writes", default=False)
_OWNED_BUFFER_WRITES = contextvars.ContextVar("owned_buffer_writes", default=False)


@contextlib.contextmanager
def _setting(var):
    token = var.set(True)
    try:
        yield
    finally:
        var.reset(token)


@contextlib.contextmanager
def xla_program():
    """Mark the tracing of a `tf.function(jit_compile=True)` body."""
    with _setting(_IN_XLA_PROGRAM), _setting(_IN_PLACE_WRITES):
        yield


def in_place_writes():
    """Mark the tracing of a graph for a runtime with a dynamic-update-slice
    (LiteRT), so `write_at` emits one instead of a gather and select."""
    return _setting(_IN_PLACE_WRITES)


def owned_buffer_writes():
    """Mark the tracing of a plain TF graph whose caches come from
    `new_buffer`, so `write_at(..., owned=True)` writes them in place."""
    return _setting(_OWNED_BUFFER_WRITES)


def new_buffer(shape, dtype):
    """Zeros of `shape`: under `owned_buffer_writes()` (outside XLA) a fresh
    buffer per graph run, which `write_at(..., owned=True)` may write in place."""
    if _OWNED_BUFFER_WRITES.get() and not _IN_PLACE_WRITES.get():
        return tf.raw_ops.Empty(shape=tf.stack(shape), dtype=dtype, init=True)
    return tf.zeros(shape, dtype)


def tracing_mode() -> tuple:
    """What decides how this module's ops are traced: a graph cached across
    modes (a shared block graph) must key its traces by it."""
    return _IN_XLA_PROGRAM.get(), _IN_PLACE_WRITES.get(), _OWNED_BUFFER_WRITES.get()


def in_xla_program() -> bool:
    return _IN_XLA_PROGRAM.get()


def dims(x, count: int):
    """The first `count` dimensions of x: Python ints where the static shape
    knows them (always, inside the decode programs), tensors otherwise. Static
    sizes keep the traced graph small, which makes tracing and XLA faster."""
    dynamic = None
    dims = []
    for i in range(count):
        size = x.shape[i]
        if size is None:
            dynamic = tf.shape(x) if dynamic is None else dynamic
            size = dynamic[i]
        dims.append(size)
    return dims


def weight_matmul(x, kernel, scale=None):
    """x [N, in] @ kernel[out, in]^T, kept a dot of its own inside XLA.

    With `scale` [out] (an int8 kernel, `model.quantize("int8")`): the
    kernel converted to x's dtype, each output multiplied by its channel's
    scale. Inside XLA by `int8_matmul_by_blocks` (XLA on CPU has no int8
    dot: it widens an s8 x s8 dot to s32; a plain convert is hoisted out of
    the decode loop). Outside XLA (prefill, scoring: many rows per weight,
    compute-bound) one convert per matmul. bench/weight_stream.py measures
    the int8 formulations; docs/quantization.md gives the result."""
    if scale is None:
        y = tf.matmul(x, kernel, transpose_b=True)
    elif in_xla_program():
        y = int8_matmul_by_blocks(x, kernel, scale)
    else:
        y = tf.matmul(x, tf.cast(kernel, x.dtype), transpose_b=True) * tf.cast(scale, x.dtype)
    if in_xla_program():
        y = xla.optimization_barrier(y)[0]
    return y


# Weights per int8 block inside XLA: a whole block matmul of GPT-2 Medium
# (up to 4096 x 1024), the LM head in 13 blocks. Blocks of 2^18 and 2^30
# measured slower (bench/weight_stream.py --systems=int8_chunked --int8_block=N).
INT8_BLOCK = 1 << 22


def int8_matmul_by_blocks(x, kernel, scale, block: int = INT8_BLOCK):
    """x [N, in] @ (int8 kernel [out, in] * scale[:, None])^T inside XLA,
    `block // in` rows at a time. An optimisation barrier ties each block to
    `x`: without it XLA hoists the convert out of a decode loop and every
    step reads a float copy of the weights. With it, XLA fuses each block's
    slice, convert and dot into one loop that reads the int8 bytes."""
    out, width = kernel.shape
    rows = max(1, min(out, block // width))
    parts = []
    for start in range(0, out, rows):
        x_tied, part = xla.optimization_barrier(x, kernel[start:start + rows])
        parts.append(tf.matmul(x_tied, tf.cast(part, x.dtype), transpose_b=True))
    y = parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)
    return y * tf.cast(scale, x.dtype)


def write_at(tensor, update, index, axis: int, owned: bool = False):
    """`tensor` with `update` written at `index` along `axis` (all other
    dimensions of `update` equal `tensor`'s).

    In an XLA program (or under `in_place_writes()`): a dynamic-update-slice,
    done in place when `tensor` is a loop variable (or, in LiteRT, when the
    runtime binds one buffer as the tensor's input and output). Under
    `owned_buffer_writes()`, when the caller says `tensor` came from
    `new_buffer` (`owned`): `InplaceUpdate` on that buffer. Elsewhere: a
    select between `tensor` and `update` gathered into place, which any TF
    runtime runs (unlike a concat of slices it never makes an empty tensor,
    which LiteRT's XNNPACK delegate cannot reshape)."""
    update = tf.cast(update, tensor.dtype)
    if _IN_PLACE_WRITES.get() and not isinstance(index, int):
        starts = [tf.zeros([], tf.int32)] * tensor.shape.rank
        starts[axis] = tf.cast(index, tf.int32)
        return xla.dynamic_update_slice(tensor, update, tf.stack(starts))
    if owned and _OWNED_BUFFER_WRITES.get() and not _IN_PLACE_WRITES.get():
        return _write_rows_in_place(tensor, update, index, axis)
    length = tensor.shape[axis] if tensor.shape[axis] is not None else tf.shape(tensor)[axis]
    width = update.shape[axis] if update.shape[axis] is not None else tf.shape(update)[axis]
    offset = tf.range(length) - tf.cast(index, tf.int32)  # where each slot reads `update`
    inside = tf.logical_and(offset >= 0, offset < width)
    placed = tf.gather(update, tf.clip_by_value(offset, 0, width - 1), axis=axis)
    broadcast = [1] * axis + [-1] + [1] * (tensor.shape.rank - axis - 1)
    return tf.where(tf.reshape(inside, broadcast), placed, tensor)


def _write_rows_in_place(tensor, update, index, axis: int):
    """`InplaceUpdate` on `tensor` viewed as rows [outer * length, inner]:
    update's positions become the rows outer * length + index + t. The
    reshapes share the buffer, so nothing is copied. Sizes the static shape
    knows stay Python ints: in a decode step these ops run once per layer."""
    outer_dims = dims(tensor, axis + 1)
    length = outer_dims[axis]
    width = update.shape[axis] if update.shape[axis] is not None else tf.shape(update)[axis]
    inner = math.prod(tensor.shape[axis + 1:])  # the head size: always static
    rows = tf.reshape(tensor, [-1, inner])
    starts = tf.range(math.prod(outer_dims[:axis])) * length
    positions = tf.cast(index, tf.int32) + tf.range(width)
    written = tf.raw_ops.InplaceUpdate(x=rows, i=tf.reshape(starts[:, None] + positions, [-1]),
                                       v=tf.reshape(update, [-1, inner]))
    return tf.reshape(written, tf.shape(tensor))
