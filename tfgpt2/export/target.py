"""The deployable artifacts: a SavedModel for stock TF Serving and a
builtins-only `.tflite` for LiteRT, each with the tokenizer in the graph.
Not installed with the package: run from the repository (`main.py
--mode=export`, the tests, bench/)."""


def resolve_cache_length(cache_length, config) -> int:
    """The artifact's KV-cache length: `cache_length`, or the model's whole
    context when None; it must hold at least a prompt token and a new one."""
    length = int(cache_length or config.n_positions)
    if not 2 <= length <= config.n_positions:
        raise ValueError(f"cache_length must be in [2, {config.n_positions}] (the model's "
                         f"context), got {cache_length}.")
    return length
