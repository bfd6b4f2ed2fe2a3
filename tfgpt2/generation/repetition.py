"""Which tokens each sequence already holds, as a [B, V] bool mask: what
the repetition penalty needs (the penalty itself is in `sampling.py`)."""

from __future__ import annotations

import tensorflow as tf


def tokens_in_prompt(ids, mask, vocab_size: int):
    """[B, V] bool: the tokens of each row's prompt (padding excluded)."""
    batch, length = ids.shape[0], ids.shape[1]
    rows = tf.repeat(tf.range(batch), length)
    indices = tf.stack([rows, tf.reshape(ids, [-1])], axis=1)
    counts = tf.scatter_nd(indices, tf.reshape(tf.cast(mask, tf.int32), [-1]), [batch, vocab_size])
    return counts > 0


def mark_seen(seen, tokens):
    """`seen` [B, V] with each row's new token [B] added."""
    return tf.logical_or(seen, tf.one_hot(tokens, seen.shape[1], on_value=True, off_value=False))
