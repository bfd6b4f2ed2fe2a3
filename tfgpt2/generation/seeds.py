"""Where sampling seeds come from when a call gives none: a stream that
`set_seed` resets, as `transformers.set_seed` does."""

from __future__ import annotations

import numpy as np

_seed_source = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow/Keras and tfgpt2's sampling.

    Args:
      seed: an int; the same seed gives the same samples afterwards.

    Example:
        set_seed(42)
        generator("Hello, I'm a language model,", max_length=30)
    """
    import keras

    global _seed_source
    keras.utils.set_random_seed(seed)
    _seed_source = np.random.default_rng(seed)


def seed_pair(seed: int | None) -> np.ndarray:
    """The int32 [2] key of the stateless RNG: from `seed` if given, else the
    next draw of the stream."""
    if seed is not None:
        return np.asarray([seed, 0], np.int32)
    return _seed_source.integers(0, 2**31 - 1, size=2, dtype=np.int64).astype(np.int32)
