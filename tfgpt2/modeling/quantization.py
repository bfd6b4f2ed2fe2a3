"""int8 weight-only quantisation, `model.quantize("int8")` (Keras 3's name).

The rule, per output channel: each row `w` of a `[out, in]` kernel (and
each row of the tied token embedding, which is both the input lookup and
the LM head's `[V, C]` kernel) is stored as int8 values
`q = clip(round(w / s), -127, 127)` with one float32 scale
`s = max|w| / 127` (1 for an all-zero row). Matmuls compute
`(x @ q^T) * s`, which is `x @ (q * s)^T`: the weights are dequantized,
the activations stay float. Keras' own int8 rule is the same, except that
it stores the inverse scale and quantizes activations too.

A quantized model generates and scores; training it, saving it as a
checkpoint and exporting it are refused (see docs/quantization.md).
"""

from __future__ import annotations

import numpy as np

MODES = ("int8",)


def check_mode(mode, current) -> None:
    """Raise unless a model quantized with `current` (None: float) can be
    quantized with `mode`."""
    if current is not None:
        raise ValueError(
            f"The model is already quantized ({current!r}); quantize() works once, on float "
            "weights. Load the checkpoint again to quantize it another way.")
    if mode not in MODES:
        raise ValueError(
            f"Unsupported quantization mode {mode!r}: tfgpt2 supports {list(MODES)} "
            "(int8 weight-only, one scale per output channel).")


def quantize_rows(kernel) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values [out, in], float32 scales [out]) of a float kernel
    [out, in], by the rule in this module's docstring."""
    weights = np.asarray(kernel, dtype=np.float32)
    peak = np.abs(weights).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    values = np.clip(np.round(weights / scale[:, None]), -127, 127).astype(np.int8)
    return values, scale


def replace_with_int8(layer, name: str):
    """Swap `layer.<name>` (a float [out, in] variable) for its int8 values
    and return `(values variable, scales variable)`; both are not trainable,
    and the float variable is no longer tracked (its memory is freed)."""
    float_kernel = getattr(layer, name)
    values, scale = quantize_rows(float_kernel.numpy())
    # Untracked, and freed once the caller rebinds the attribute (not
    # `del`, whose Keras hook runs a full gc.collect() per layer: 20 s for Medium).
    layer._untrack_variable(float_kernel)
    del float_kernel
    kernel = layer.add_weight(name=name, shape=values.shape, dtype="int8", initializer="zeros",
                              trainable=False)
    kernel.assign(values)
    scales = layer.add_weight(name=f"{name}_scale", shape=scale.shape, dtype="float32",
                              initializer="ones", trainable=False)
    scales.assign(scale)
    return kernel, scales


def refuse_if_quantized(model, what: str, instead: str = "") -> None:
    """Raise if `model` was quantized: to `what` (train it, save it, export
    it) needs its float weights. `instead`: a further hint."""
    mode = getattr(model, "weight_quantization", None)
    if mode is not None:
        raise ValueError(
            f"This model is quantized ({mode}) and quantize() replaced its float weights, "
            f"which are needed to {what}: load the float checkpoint again to {what}"
            f"{'; ' + instead if instead else ''}.")
