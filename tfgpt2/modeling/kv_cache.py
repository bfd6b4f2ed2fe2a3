"""The KV cache of cached decoding: one type, one layout, for generate's
programs, beam search, scoring and the exported artifacts.

Layer i's keys and values are each [B * H, S, D]: batch and heads merged,
S cache positions, D the head size. Rank 3 lets XLA feed the updated cache
straight into attention's batched matmul, so a write stays in place; with
[B, H, S, D] it duplicated the update and copied the whole cache every step.

The exported `.tflite` keeps each layer's cache as [B, H, S, D] instead
(its signature inputs): that is the layout LiteRT-LM binds, and there the
write must go straight from the cache input to its output, with no reshape
between. Attention reads either layout.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from tfgpt2.modeling.compiled import dims, new_buffer, write_at


class KVCache(NamedTuple):
    """Every layer's keys and values (tuples of n_layer tensors, each
    [B * H, S, D]). A NamedTuple, so it passes through `tf.function`,
    `tf.while_loop` and `tf.nest` as a structure of tensors."""

    keys: tuple
    values: tuple

    @classmethod
    def empty(cls, config, batch, length, dtype="float32") -> KVCache:
        """Zeros for `batch` rows of `length` positions. Slots not yet
        written are masked out but still multiplied by 0, so they must hold
        finite numbers."""
        shape = [batch * config.n_head, length, config.head_dim]
        dtype = tf.as_dtype(dtype)
        return cls(tuple(new_buffer(shape, dtype) for _ in range(config.n_layer)),
                   tuple(new_buffer(shape, dtype) for _ in range(config.n_layer)))

    @classmethod
    def from_layers(cls, layers) -> KVCache:
        """From per-layer `(keys, values)` pairs."""
        layers = list(layers)
        return cls(tuple(k for k, _ in layers), tuple(v for _, v in layers))

    @staticmethod
    def heads_as_rows(t):
        """[B, H, T, D] (attention's per-head layout) -> [B * H, T, D]."""
        _, _, length, depth = dims(t, 4)
        return tf.reshape(t, [-1, length, depth])

    def layer(self, i: int) -> tuple:
        return self.keys[i], self.values[i]

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    def reorder(self, rows, heads: int) -> KVCache:
        """The cache of batch rows `rows` (int32 [R], with repeats): beam
        search's reordering, and every beam starting from its prompt's
        prefill."""
        def pick(t):
            rows_and_heads, length, depth = dims(t, 3)
            per_row = tf.reshape(t, [rows_and_heads // heads, heads, length, depth])
            return tf.reshape(tf.gather(per_row, rows), [-1, length, depth])

        return KVCache(tuple(map(pick, self.keys)), tuple(map(pick, self.values)))

    def tile(self, count) -> KVCache:
        """The whole cache repeated `count` times along the batch: several
        continuations reading one shared context."""
        def repeat(t):
            return tf.tile(t, [count, 1, 1])

        return KVCache(tuple(map(repeat, self.keys)), tuple(map(repeat, self.values)))

    def owned_copy(self) -> KVCache:
        """The same cache in buffers this graph run owns (`new_buffer`), for
        a plain-graph loop to write in place: a cache passed into a graph
        is its caller's tensor, which an in-place write must not touch. One
        copy per call instead of a gather and select of every layer per
        token. Trace it under `owned_buffer_writes()`."""
        def copy(t):
            buffer = new_buffer(dims(t, t.shape.rank), t.dtype)
            return write_at(buffer, t, 0, axis=t.shape.rank - 2, owned=True)

        return KVCache(tuple(map(copy, self.keys)), tuple(map(copy, self.values)))

    def stacked(self) -> tuple:
        """(keys, values), each [L, B * H, S, D]: every layer in one tensor."""
        return tf.stack(self.keys), tf.stack(self.values)


def in_cache_layout(t, layer_cache):
    """Attention's [B, H, T, D] in the layout of `layer_cache` (see the
    module docstring)."""
    return KVCache.heads_as_rows(t) if layer_cache[0].shape.rank == 3 else t


def write_position(layer_cache, keys, values, index) -> tuple:
    """One layer's `(keys, values)` cache with `keys`/`values` (in the
    cache's layout, T positions) written at position `index` (in place
    inside an XLA program, and in a plain graph whose cache came from
    `KVCache.empty` under `owned_buffer_writes()`)."""
    axis = layer_cache[0].shape.rank - 2  # the positions
    return (write_at(layer_cache[0], keys, index, axis=axis, owned=True),
            write_at(layer_cache[1], values, index, axis=axis, owned=True))
