"""The causal language-modelling objective, in one place: `target_nll` is the
NLL of given targets (fine-tuning's training and evaluation losses call it
on packed blocks); `token_nll` shifts the inputs into targets and calls it
(Keras' `CausalLMLoss` and perplexity scoring).

Position t's logits predict token t + 1. A target counts only where both it
and the token before it are real (attention mask 1): padding is never a
target, and with left padding the first real token, which has no real
context, is not scored either. Without padding this is exactly transformers'
`labels=input_ids` loss.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def token_nll(logits, input_ids, attention_mask=None):
    """Negative log-likelihood of every next token.

    Args:
      logits: [B, T, V] from the LM head (any float dtype; computed in float32).
      input_ids: [B, T] int token ids.
      attention_mask: optional [B, T] of 0/1; None means all real.

    Returns:
      `(nll, weight)`, both float32 [B, T - 1]: the NLL of token t + 1 given
      tokens up to t, and 1.0 where that target counts, else 0.0 (nll is 0
      there too).
    """
    if attention_mask is None:
        weight = None
    else:
        mask = tf.cast(attention_mask, tf.float32)
        weight = mask[:, 1:] * mask[:, :-1]
    return target_nll(logits[:, :-1], input_ids[:, 1:], weight)


def target_nll(logits, targets, weight=None):
    """Negative log-likelihood of given next tokens: `logits[:, t]` scored
    against `targets[:, t]` (already shifted). Training on packed blocks
    uses it: the model sees `block[:, :-1]` and predicts `block[:, 1:]`, so
    a block of n_positions + 1 tokens gives n_positions targets.

    Args:
      logits: [B, T, V] (any float dtype; computed in float32).
      targets: [B, T] int token ids.
      weight: optional [B, T] of 0/1; None means every target counts.

    Returns:
      `(nll, weight)`, both float32 [B, T], nll 0 where weight is 0.
    """
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.int32)
    weight = (tf.ones(tf.shape(targets), tf.float32) if weight is None
              else tf.cast(weight, tf.float32))
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return nll * weight, weight


def causal_lm_loss(logits, input_ids, attention_mask=None):
    """Mean next-token NLL over the targets that count (a float32 scalar; 0
    when none does)."""
    nll, weight = token_nll(logits, input_ids, attention_mask)
    return tf.math.divide_no_nan(tf.reduce_sum(nll), tf.reduce_sum(weight))


@keras.saving.register_keras_serializable(package="tfgpt2")
class CausalLMLoss(keras.losses.Loss):
    """`causal_lm_loss` as a Keras loss, for `model.compile(loss=...)`.

    `y_true` is the token ids [B, T] the model was given (the loss shifts
    them), `y_pred` the logits [B, T, V]; a `sample_weight` [B, T] acts as
    the attention mask.
    """

    def __init__(self, name="causal_lm_loss", **kwargs):
        super().__init__(name=name, reduction=None, **kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        loss = causal_lm_loss(y_pred, y_true, sample_weight)
        # As Keras' own losses: under tf.distribute each replica returns its
        # share, and the summed gradients make the mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss

    def call(self, y_true, y_pred):  # unused: __call__ handles the weights itself
        nll, _ = token_nll(y_pred, y_true)
        return nll
