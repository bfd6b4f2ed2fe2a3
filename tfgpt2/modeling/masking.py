"""How padding and causality reach the network: the masked value, each
token's position, and the additive attention bias. One definition, used by
the model, cached decoding, beam search and the samplers."""

from __future__ import annotations

import tensorflow as tf

# What a masked logit or score is set to: large and finite, so a row where
# everything is masked (left padding, a fully filtered sampler row) gives a
# uniform softmax instead of NaN.
MASKED_VALUE = -1e9


def position_ids(attention_mask):
    """[B, T] int32: each token's position among the real (mask 1) tokens of
    its row, so a left-padded row gets the positions of the unpadded one
    (padding gets 0)."""
    return tf.maximum(tf.cumsum(tf.cast(attention_mask, tf.int32), axis=1) - 1, 0)


def next_positions(attention_mask):
    """[B] int32: the position of the token after each row's last one."""
    return tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=1)


def attention_bias(key_mask, query_length, query_offset=0):
    """[B, 1, T, S] float32: 0 where query i (at absolute position
    `query_offset + i`) may attend to key j (j <= that position and key j is
    real), MASKED_VALUE elsewhere."""
    key_length = key_mask.shape[1] if key_mask.shape[1] is not None else tf.shape(key_mask)[1]
    query_pos = tf.range(query_length) + tf.cast(query_offset, tf.int32)
    causal = tf.range(key_length)[None, :] <= query_pos[:, None]
    allowed = tf.logical_and(causal[None], tf.cast(key_mask, tf.bool)[:, None, :])
    return tf.where(allowed, 0.0, MASKED_VALUE)[:, None]
