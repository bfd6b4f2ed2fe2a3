"""Shared helpers for the model, checkpoint and generation tests.

The oracle for the network is keras-hub's `GPT2Backbone` (an independent
implementation); its transformers exporter writes the Hugging Face layout
that our loader reads, so both models hold the very same weights.
"""

from __future__ import annotations

import numpy as np

from tfgpt2.config import GPT2Config

MEDIUM = dict(n_layer=24, n_embd=1024, n_head=16, n_positions=1024, vocab_size=50257)


def keras_hub_backbone(config: GPT2Config, seed: int = 0):
    """A randomly initialised keras-hub GPT2Backbone with `config`'s sizes.

    keras-hub initialises LayerNorm to (1, 0) and biases to 0; we randomise
    them too so that a swapped gamma/beta or a lost bias cannot pass."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config.vocab_size, num_layers=config.n_layer, num_heads=config.n_head,
        hidden_dim=config.n_embd, intermediate_dim=config.intermediate_size,
        max_sequence_length=config.n_positions, dropout=0.0)
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        name = variable.path
        if name.endswith(("gamma", "beta", "bias")):
            base = 1.0 if name.endswith("gamma") else 0.0
            variable.assign(base + 0.1 * rng.standard_normal(variable.shape).astype("float32"))
    return backbone


def export_keras_hub(backbone, directory) -> None:
    """keras-hub's own transformers exporter: the HF layout, written by an
    independent library."""
    from keras_hub.src.utils.transformers.export.hf_exporter import export_backbone

    export_backbone(backbone, str(directory))


def keras_hub_outputs(backbone, ids: np.ndarray):
    """Final hidden states and logits of keras-hub for unpadded rows."""
    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    logits = backbone.token_embedding(hidden, reverse=True)
    return np.asarray(hidden), np.asarray(logits)


def small_config(**overrides) -> GPT2Config:
    values = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=320, n_positions=128,
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                  bos_token_id=319, eos_token_id=319)
    values.update(overrides)
    return GPT2Config(**values)


def louder_small_model(**overrides):
    """A small random GPT2LMHeadModel whose next-token distribution is varied,
    peaked but not certain, so samplers and beam search face a real one.

    A fresh init mostly echoes the last token (its embedding dominates the
    residual stream) with near-flat logits otherwise; a larger embedding and
    louder blocks fix that."""
    from tfgpt2 import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_config(small_config(**overrides), seed=0)
    model.embeddings.wte.assign(model.embeddings.wte.numpy() * 12.0)
    for block in model.blocks:
        for layer in (block.attn.c_proj, block.mlp.c_proj):
            layer.kernel.assign(layer.kernel.numpy() * 60.0)
    return model


def louder_keras_hub_backbone(config: GPT2Config, seed: int):
    """`keras_hub_backbone` with a larger embedding and louder blocks
    (`louder_small_model`'s recipe), so greedy tokens depend on the context
    instead of repeating one."""
    backbone = keras_hub_backbone(config, seed=seed)
    louder = [v for v in backbone.weights
              if v.path.endswith(("feedforward_output_dense/kernel", "attention_output/kernel"))]
    assert len(louder) == 2 * config.n_layer
    for variable in louder:
        variable.assign(variable.numpy() * 60.0)
    backbone.token_embedding.embeddings.assign(backbone.token_embedding.embeddings.numpy() * 12.0)
    return backbone


def brute_force_greedy(backbone, ids, new: int) -> list[int]:
    """Greedy by calling keras-hub on the whole sequence for every token."""
    ids = list(ids)
    for _ in range(new):
        _, logits = keras_hub_outputs(backbone, np.array([ids], np.int32))
        ids.append(int(np.argmax(logits[0, -1])))
    return ids[-new:]


def numpy_int8(kernel):
    """int8 weight-only quantisation by brute force: per row of a [out, in]
    kernel, scale = max|row| / 127, values round(w / scale) (half to even,
    as NumPy), clipped to [-127, 127]. Returns (int8 values, float32 scales)."""
    kernel = np.asarray(kernel, np.float64)
    scales = np.abs(kernel).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    values = np.clip(np.round(kernel / scales[:, None]), -127, 127)
    return values.astype(np.int8), scales.astype(np.float32)


def quantized_kernels(model):
    """{layer path: (layer, attribute)} of every kernel `quantize("int8")`
    quantizes: each Linear's `kernel` and the token embedding `wte`."""
    from tfgpt2.modeling.layers import GPT2Embeddings, Linear

    found = {}
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (Linear, GPT2Embeddings)):
            found[layer.path] = (layer, "kernel" if isinstance(layer, Linear) else "wte")
    return found


def dequantize_in_place(model):
    """Replace a float model's kernels by `numpy_int8`'s values times
    scales: the reference a quantized model must compute."""
    for layer, name in quantized_kernels(model).values():
        values, scales = numpy_int8(getattr(layer, name).numpy())
        getattr(layer, name).assign(values.astype(np.float32) * scales[:, None])
