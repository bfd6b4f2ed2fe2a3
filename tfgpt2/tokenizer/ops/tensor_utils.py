"""Small int32/bool tensor helpers shared by the tokenizer's graph ops.

All of them are built from ops LiteRT runs as builtins (slices, concat,
cumsum, gather, where, unsorted_segment_*): no int64, no bitwise ops.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2

I32 = tf.int32


def shift_left(x: tf.Tensor, k: int, fill) -> tf.Tensor:
    """y[i] = x[i + k], `fill` past the end."""
    pad = tf.fill([tf.minimum(tf.size(x), k)], tf.cast(fill, x.dtype))
    return tf.concat([x[k:], pad], 0)


def shift_right(x: tf.Tensor, k: int, fill) -> tf.Tensor:
    """y[i] = x[i - k], `fill` before the start."""
    pad = tf.fill([tf.minimum(tf.size(x), k)], tf.cast(fill, x.dtype))
    return tf.concat([pad, x[: tf.maximum(tf.size(x) - k, 0)]], 0)


def flat_where(mask: tf.Tensor) -> tf.Tensor:
    """int32 indices of the True entries of a 1-D mask."""
    return tf.cast(tf.reshape(tf.where(mask), [-1]), I32)


def scatter(values: tf.Tensor, positions: tf.Tensor, n) -> tf.Tensor:
    """[n] tensor with values[i] at positions[i] (distinct), 0 elsewhere.
    (A segment sum: several times faster than scatter_nd on CPU.)"""
    return tf.math.unsorted_segment_sum(values, positions, n)


def flags_at(positions: tf.Tensor, n) -> tf.Tensor:
    """bool [n], True at `positions` (each in [0, n]; n is dropped; repeats
    allowed)."""
    marks = tf.math.unsorted_segment_max(tf.ones_like(positions), positions, n + 1)
    return marks[:n] > 0


def exclusive_cumsum(x: tf.Tensor) -> tf.Tensor:
    """[len(x) + 1]: 0, x0, x0 + x1, ..."""
    return tf.concat([[0], tf.cumsum(x)], 0)


def ragged_range(starts: tf.Tensor, lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Concatenated ranges [starts[i], starts[i] + lengths[i]) (lengths >= 1).
    Returns (positions [sum], offsets [len + 1] of the ranges in the result,
    first: bool [sum] marking each range's start)."""
    offsets = exclusive_cumsum(lengths)
    total = offsets[-1]
    # Steps of 1, except a jump at each range start: one cumsum, no gather.
    prev_end = tf.concat([[0], starts[:-1] + lengths[:-1]], 0)
    jumps = scatter(starts - prev_end + 1, offsets[:-1], total)
    first = scatter(tf.ones_like(starts), offsets[:-1], total) > 0
    positions = tf.cumsum(tf.where(first, jumps, 1)) - 1
    return positions, offsets, first


def between(x: tf.Tensor, lo, hi) -> tf.Tensor:
    """lo <= x <= hi."""
    return tf.logical_and(x >= lo, x <= hi)


def any_equal(x: tf.Tensor, values) -> tf.Tensor:
    """x equals one of the (Python) `values`."""
    out = tf.equal(x, values[0])
    for v in values[1:]:
        out = tf.logical_or(out, tf.equal(x, v))
    return out


def lazy_cond(pred: tf.Tensor, true_fn, false_fn):
    """tf.cond whose branches stay functions, run only when taken.

    In a graph, TF lowers a cond to Switch/Merge ops, and every op of the
    branch not taken still passes a dead tensor on: a large branch that is
    rarely taken (long BPE pieces) made every call ~20% slower. The If op
    is marked not to be lowered (TF's own attribute for this, set through
    a private method: there is no public switch), so it stays a function
    call; LiteRT converts it to its IF builtin.
    """
    out = tf.cond(pred, true_fn, false_fn)
    if tf.executing_eagerly():
        return out
    op = tf.nest.flatten(out)[0].op
    while op.type == "Identity":
        op = op.inputs[0].op
    if op.type not in ("If", "StatelessIf"):
        raise AssertionError(f"expected the cond's If op, found {op.type}")
    op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))  # noqa: SLF001
    return out
