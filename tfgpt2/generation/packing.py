"""Prompt packing as TF functions, for `generate` and the exported graphs
alike: shape buckets, left padding (with left truncation), and where each
generated row ends.

Prompts are left-padded so every row's last prompt token sits in the same
column and all rows decode in lockstep; the attention mask hides the padding
and positions are counted from the mask (`tfgpt2.modeling.masking`).
"""

from __future__ import annotations

import math

import tensorflow as tf


_SMALLEST, _STEP = 8, 64
_POWERS = tuple(1 << i for i in range(_SMALLEST.bit_length() - 1, _STEP.bit_length()))  # 8..64


def bucket_length(n):
    """A static length for `n` tokens: powers of two from 8 up to 64, then
    multiples of 64, so a new length rarely compiles a new program and a
    short prompt is padded little. `n` is an int, or a scalar int32 tensor
    (exported graphs, where it gives a loop few distinct lengths)."""
    if tf.is_tensor(n):
        powers = tf.constant(_POWERS)
        small = tf.reduce_min(tf.where(powers >= n, powers, _STEP))
        return tf.where(n <= _STEP, small, _STEP * ((n + _STEP - 1) // _STEP))
    if n <= _STEP:
        return max(_SMALLEST, 1 << (n - 1).bit_length())
    return _STEP * math.ceil(n / _STEP)


def bucket_batch(n: int) -> int:
    """A static batch size for `n` rows: the next power of two."""
    return 1 << (n - 1).bit_length()


def left_pad(values, row_splits, length, pad_id, max_tokens=None):
    """Right-align each row in `length` columns.

    Args:
      values: int32 [N], the rows' tokens one after another.
      row_splits: int [B + 1], where each row starts in `values` (then N).
      length: int or scalar tensor, the width.
      pad_id: the id written in front of shorter rows.
      max_tokens: keep at most this many tokens of a row (default: `length`).

    Returns:
      `(ids, mask)`, int32 [B, length]: a row longer than `length` (or
      `max_tokens`) keeps its last tokens (left truncation); mask is 1 on
      real tokens.
    """
    values = tf.cast(values, tf.int32)
    row_splits = tf.cast(row_splits, tf.int32)
    starts, ends = row_splits[:-1], row_splits[1:]
    kept = tf.minimum(ends - starts, length)  # [B]
    if max_tokens is not None:
        kept = tf.minimum(kept, max_tokens)
    offset = tf.range(length)[None, :] - (length - kept)[:, None]  # index into the kept tail
    mask = offset >= 0
    # One padding value appended, so the gather is valid even with no tokens.
    padded = tf.concat([values, tf.reshape(tf.cast(pad_id, tf.int32), [1])], 0)
    index = tf.where(mask, (ends - kept)[:, None] + offset, tf.size(values))
    return tf.gather(padded, index), tf.cast(mask, tf.int32)


def start_empty_prompts(ids, mask, bos_token_id):
    """`tfgpt2.limits.start_empty` on packed prompts: a row with no real
    token gets `bos_token_id` in its last column."""
    empty = tf.equal(tf.reduce_sum(mask, axis=1), 0)
    last = tf.one_hot(tf.shape(ids)[1] - 1, tf.shape(ids)[1], on_value=True, off_value=False)
    fill = tf.logical_and(empty[:, None], last[None, :])
    return tf.where(fill, bos_token_id, ids), tf.where(fill, 1, mask)


def tokens_before_stop(tokens, stop_mask):
    """int32 [B]: how many tokens of each row of `tokens` [B, N] come before
    its first stop token (N when it has none). `stop_mask` is bool [V]."""
    is_stop = tf.gather(stop_mask, tokens)
    first = tf.argmax(tf.cast(is_stop, tf.int32), axis=1, output_type=tf.int32)
    return tf.where(tf.reduce_any(is_stop, axis=1), first, tf.shape(tokens)[1])
