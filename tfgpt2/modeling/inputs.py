"""The one validator of token ids and attention masks, for the model's
`__call__` and for `generate`: a clear Python error before anything reaches
a graph."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def is_symbolic(x) -> bool:
    """True for Keras symbolic inputs and for tensors inside a tf.function."""
    return isinstance(x, keras.KerasTensor) or (tf.is_tensor(x) and not hasattr(x, "numpy"))


def to_int_tensor(x, name: str):
    """An int32 tensor from ids or a mask given as a tensor, array or list."""
    if isinstance(x, keras.KerasTensor):
        return x
    if isinstance(x, (bytes, str)):
        raise TypeError(f"{name} must hold token ids, got {type(x).__name__}; encode text with "
                        "the tokenizer first (or pass the text to generate()).")
    if not tf.is_tensor(x):
        array = np.asarray(x)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.integer)
                                         or np.issubdtype(array.dtype, np.bool_)):
            raise TypeError(f"{name} must hold integers, got an array of {array.dtype}.")
        x = array
    elif not (x.dtype.is_integer or x.dtype == tf.bool):
        raise TypeError(f"{name} must hold integers, got a {x.dtype.name} tensor.")
    return tf.cast(x, tf.int32)


def check_shapes(ids_shape, mask_shape, *, max_length: int | None = None,
                 allow_empty: bool = False) -> None:
    """[batch, length] ids, a mask of the same shape, at most `max_length`."""
    ids_shape, mask_shape = tuple(ids_shape), tuple(mask_shape)
    if len(ids_shape) != 2:
        raise ValueError(f"input_ids must be [batch, length], got shape {ids_shape}. "
                         "For one sequence, add a batch axis (e.g. ids[None]).")
    if len(mask_shape) != 2 or any(
            a is not None and b is not None and a != b for a, b in zip(ids_shape, mask_shape)):
        raise ValueError(f"attention_mask shape {mask_shape} must equal input_ids shape "
                         f"{ids_shape}.")
    length = ids_shape[1]
    if max_length is not None and length is not None and length > max_length:
        raise ValueError(f"Sequence length {length} exceeds the model's context "
                         f"n_positions={max_length}; truncate the input.")
    if length == 0 and not allow_empty:
        raise ValueError("input_ids is empty (length 0); pass at least one token.")


def check_values(ids: np.ndarray, mask: np.ndarray, vocab_size: int, *,
                 real_only: bool = False) -> None:
    """Ids in [0, vocab_size) (only where the mask is 1 if `real_only`), a
    mask of 0 and 1."""
    if mask.size and not np.isin(mask, (0, 1)).all():
        raise ValueError("attention_mask must hold only 0 and 1.")
    checked = ids[mask.astype(bool)] if real_only else ids
    bad = checked[(checked < 0) | (checked >= vocab_size)]
    if bad.size:
        raise ValueError(f"Token ids must be in [0, {vocab_size}); found {bad[:5].tolist()}.")


def validate(input_ids, attention_mask, vocab_size: int, *, max_length: int | None = None,
             allow_empty: bool = False, real_only: bool = False):
    """Ids and mask (None: all ones) as int32 tensors, checked. Values are
    checked only when concrete (not while tracing a graph or a Keras model).

    Returns:
      `(input_ids, attention_mask)`, int32 tensors of shape [batch, length].
    """
    input_ids = to_int_tensor(input_ids, "input_ids")
    if attention_mask is None:
        attention_mask = (keras.ops.ones_like(input_ids) if isinstance(input_ids, keras.KerasTensor)
                          else tf.ones_like(input_ids))
    attention_mask = to_int_tensor(attention_mask, "attention_mask")
    check_shapes(input_ids.shape, attention_mask.shape, max_length=max_length,
                 allow_empty=allow_empty)
    if not (is_symbolic(input_ids) or is_symbolic(attention_mask)):
        check_values(input_ids.numpy(), attention_mask.numpy(), vocab_size, real_only=real_only)
    return input_ids, attention_mask
