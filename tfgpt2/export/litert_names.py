"""The names the `.tflite`'s graph (`tfgpt2.export.tflite`) and its runner
(`tfgpt2.export.litert_runner`) agree on, in plain Python: the runner
imports them without TensorFlow."""

from __future__ import annotations

# The order of the `metadata` signature's `sizes` vector.
METADATA_FIELDS = ("n_layer", "n_head", "head_dim", "vocab_size", "cache_length", "eos_token_id",
                   "tokenize_bytes", "detokenize_ids", "max_token_bytes")


def cache_names(n_layer: int) -> list[str]:
    """The cache's inputs and outputs, LiteRT-LM's names: every layer's keys,
    then every layer's values."""
    layers = range(n_layer)
    return [f"kv_cache_k_{i}" for i in layers] + [f"kv_cache_v_{i}" for i in layers]
