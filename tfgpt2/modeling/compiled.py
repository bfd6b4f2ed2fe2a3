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
"""

from __future__ import annotations

import contextlib
import contextvars

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

_IN_XLA_PROGRAM = contextvars.ContextVar("in_xla_program", default=False)
_IN_PLACE_WRITES = contextvars.ContextVar("in_place_writes", default=False)


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


def weight_matmul(x, kernel):
    """x [N, in] @ kernel[out, in]^T, kept a dot of its own inside XLA."""
    y = tf.matmul(x, kernel, transpose_b=True)
    if in_xla_program():
        y = xla.optimization_barrier(y)[0]
    return y


def write_at(tensor, update, index, axis: int):
    """`tensor` with `update` written at `index` along `axis` (all other
    dimensions of `update` equal `tensor`'s).

    In an XLA program (or under `in_place_writes()`): a dynamic-update-slice,
    done in place when `tensor` is a loop variable (or, in LiteRT, when the
    runtime binds one buffer as the tensor's input and output). Elsewhere: a select between `tensor` and `update`
    gathered into place, which any TF runtime runs (TF Serving, LiteRT:
    unlike a concat of slices it never makes an empty tensor, which LiteRT's
    XNNPACK delegate cannot reshape)."""
    update = tf.cast(update, tensor.dtype)
    if _IN_PLACE_WRITES.get() and not isinstance(index, int):
        starts = [tf.zeros([], tf.int32)] * tensor.shape.rank
        starts[axis] = tf.cast(index, tf.int32)
        return xla.dynamic_update_slice(tensor, update, tf.stack(starts))
    length = tensor.shape[axis] if tensor.shape[axis] is not None else tf.shape(tensor)[axis]
    width = update.shape[axis] if update.shape[axis] is not None else tf.shape(update)[axis]
    offset = tf.range(length) - tf.cast(index, tf.int32)  # where each slot reads `update`
    inside = tf.logical_and(offset >= 0, offset < width)
    placed = tf.gather(update, tf.clip_by_value(offset, 0, width - 1), axis=axis)
    broadcast = [1] * axis + [-1] + [1] * (tensor.shape.rank - axis - 1)
    return tf.where(tf.reshape(inside, broadcast), placed, tensor)
