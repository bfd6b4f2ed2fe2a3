"""Logits processors and token selection, as pure TF functions for the
compiled decode loop. The order follows transformers: repetition penalty,
then temperature, top-k, top-p, then greedy or a categorical draw.
"""

from __future__ import annotations

import tensorflow as tf

NEG_INF = -1e9  # finite, so a row with everything filtered never yields NaN


def apply_repetition_penalty(logits, seen, penalty):
    """CTRL's penalty (as transformers applies it): every token already in the
    sequence has its logit divided by `penalty` if positive, multiplied if
    negative. `seen` is a [B, V] bool mask."""
    penalised = tf.where(logits > 0, logits / penalty, logits * penalty)
    return tf.where(seen, penalised, logits)


def top_k_filter(logits, k: int):
    """Keep the k largest logits of each row (ties at the k-th value kept)."""
    kth = tf.math.top_k(logits, k=k, sorted=False).values
    threshold = tf.reduce_min(kth, axis=-1, keepdims=True)
    return tf.where(logits < threshold, NEG_INF, logits)


def top_p_filter(logits, top_p):
    """Nucleus filter: keep the smallest set of most likely tokens whose
    probability reaches `top_p` (always at least one)."""
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
    probs = tf.nn.softmax(sorted_logits, axis=-1)
    mass_before = tf.cumsum(probs, axis=-1, exclusive=True)
    keep = mass_before < top_p
    keep = tf.concat([tf.ones_like(keep[:, :1]), keep[:, 1:]], axis=-1)
    threshold = tf.reduce_min(tf.where(keep, sorted_logits, tf.float32.max), axis=-1, keepdims=True)
    return tf.where(logits < threshold, NEG_INF, logits)


def process_logits(logits, *, seen=None, repetition_penalty=None, do_sample=False,
                   temperature=None, top_k: int = 0, top_p=None):
    """Apply the configured processors. Static switches (`top_k`, whether a
    tensor is given) decide what is compiled; values may be tensors."""
    logits = tf.cast(logits, tf.float32)
    if repetition_penalty is not None:
        logits = apply_repetition_penalty(logits, seen, repetition_penalty)
    if not do_sample:
        return logits
    if temperature is not None:
        logits = logits / temperature
    if top_k:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def select_tokens(logits, do_sample: bool, seed=None):
    """Greedy argmax, or one categorical draw per row with a stateless seed."""
    if not do_sample:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    draw = tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)
    return draw[:, 0]
