"""The layers of GPT-2. Each is used unchanged for training, scoring and cached
decoding: attention takes an optional KV cache and the position to write it at.

Shapes: B batch, T query length, S key length (T without a cache, the cache
size with one), C n_embd, H heads, D head_dim, V vocabulary.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from tfgpt2.modeling import masking, quantization
from tfgpt2.modeling.compiled import dims, weight_matmul
from tfgpt2.modeling.kv_cache import in_cache_layout, write_position


class Linear(keras.layers.Layer):
    """A dense layer whose kernel is stored [out, in], as torch.nn.Linear does.

    Decoding at batch 1 is a chain of mat-vecs bound by how fast the weights
    stream from memory; XLA on CPU streams `matmul(x, w, transpose_b=True)`
    with w [out, in] about 20% faster than the [in, out] layout
    (docs/benchmarks.md).
    """

    def __init__(self, units: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_scale = None  # per-row scales once quantized (kernel int8)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(self.units, input_shape[-1]),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def quantize(self, mode=None, type_check=True, config=None):
        """int8 weight-only (`tfgpt2.modeling.quantization`); called by the
        model's `quantize`, which checks the mode."""
        self.kernel, self.kernel_scale = quantization.replace_with_int8(self, "kernel")

    def call(self, x):
        rank = x.shape.rank
        flat = x if rank == 2 else tf.reshape(x, [-1, self.kernel.shape[1]])
        y = tf.nn.bias_add(weight_matmul(flat, self.kernel, self.kernel_scale), self.bias)
        # -1 for the batch: no shape ops when the other sizes are static.
        return y if rank == 2 else tf.reshape(y, [-1, *dims(x, rank - 1)[1:], self.units])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


class GPT2Embeddings(keras.layers.Layer):
    """Token + learned position embeddings; with `reverse=True`, the tied LM
    head (logits = h @ wte^T, computed in float32 output)."""

    def __init__(self, vocab_size: int, n_positions: int, n_embd: int, dropout: float = 0.0,
                 embeddings_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.n_positions, self.n_embd = vocab_size, n_positions, n_embd
        self._initializer = keras.initializers.get(embeddings_initializer)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="drop")
        self.wte_scale = None  # per-token scales once quantized (wte int8)

    def build(self, input_shape=None):
        init = self._initializer
        self.wte = self.add_weight(name="wte", shape=(self.vocab_size, self.n_embd), initializer=init)
        self.wpe = self.add_weight(name="wpe", shape=(self.n_positions, self.n_embd), initializer=init)

    def quantize(self, mode=None, type_check=True, config=None):
        """int8 token embedding, one scale per token: the LM head's kernel
        (the model's largest, [V, C]) and the input lookup both read it."""
        self.wte, self.wte_scale = quantization.replace_with_int8(self, "wte")

    def call(self, inputs, position_ids=None, reverse=False, training=None):
        if reverse:
            rank = inputs.shape.rank
            logits = weight_matmul(tf.reshape(inputs, [-1, self.n_embd]), self.wte, self.wte_scale)
            return tf.cast(tf.reshape(logits, dims(inputs, rank - 1) + [self.vocab_size]), "float32")
        tokens = tf.gather(self.wte, inputs)
        if self.wte_scale is not None:
            tokens = (tf.cast(tokens, self.compute_dtype)
                      * tf.cast(tf.gather(self.wte_scale, inputs), self.compute_dtype)[..., None])
        hidden = tokens + tf.gather(self.wpe, position_ids)
        return self.dropout(hidden, training=training)

    def compute_output_spec(self, inputs, position_ids=None, reverse=False, training=None):
        if reverse:
            return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.vocab_size,), "float32")
        return keras.KerasTensor(tuple(inputs.shape) + (self.n_embd,), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "n_positions": self.n_positions, "n_embd": self.n_embd,
                "dropout": self.dropout.rate,
                "embeddings_initializer": keras.initializers.serialize(self._initializer)}


class PositionIds(keras.layers.Layer):
    """Position of each token among the real (mask 1) tokens of its row, so a
    left-padded row gets the same positions as the unpadded sequence."""

    def call(self, attention_mask):
        return masking.position_ids(attention_mask)

    def compute_output_spec(self, attention_mask):
        return keras.KerasTensor(attention_mask.shape, "int32")


class AttentionBias(keras.layers.Layer):
    """Additive attention bias [B, 1, T, S] from the key mask [B, S] and the
    query ids [B, T] (used for their length).

    Query i sits at absolute position `query_offset + i`; it sees key j when
    j <= that position (causal) and the key mask is 1. Without a cache the
    offset is 0 and S == T; in cached decoding the key mask covers the cache.
    """

    def call(self, key_mask, query_ids, query_offset=0):
        return masking.attention_bias(key_mask, dims(query_ids, 2)[1], query_offset)

    def compute_output_spec(self, key_mask, query_ids, query_offset=0):
        return keras.KerasTensor((key_mask.shape[0], 1, query_ids.shape[1], key_mask.shape[1]),
                                 "float32")


# Without a cache, queries are taken this many at a time, each block against
# the keys up to its last query only: a causal mask hides every later key
# from the whole block, so its scores, softmax and weighted sum are skipped,
# not computed and masked (at 1024 tokens, 4 blocks do 5/8 of the work; the
# result is the same, masked keys weigh exactly 0 either way).
QUERY_BLOCK = 256


class GPT2Attention(keras.layers.Layer):
    """Causal multi-head self-attention with an optional fixed-size KV cache."""

    def __init__(self, n_embd: int, n_head: int, attn_pdrop: float = 0.0, resid_pdrop: float = 0.0,
                 kernel_initializer="glorot_uniform", projection_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        self.n_embd, self.n_head, self.head_dim = n_embd, n_head, n_embd // n_head
        policy = self.dtype_policy
        self.c_attn = Linear(3 * n_embd, kernel_initializer, dtype=policy, name="c_attn")
        self.c_proj = Linear(n_embd, projection_initializer, dtype=policy, name="c_proj")
        self.attn_dropout = keras.layers.Dropout(attn_pdrop, dtype=policy, name="attn_drop")
        self.resid_dropout = keras.layers.Dropout(resid_pdrop, dtype=policy, name="resid_drop")

    def build(self, input_shape):
        self.c_attn.build(input_shape)
        self.c_proj.build(tuple(input_shape[:-1]) + (self.n_embd,))

    def _split_heads(self, x, length):  # [B, T, C] -> [B, H, T, D]
        x = tf.reshape(x, [-1, length, self.n_head, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    def call(self, x, attention_bias, cache=None, cache_index=None, training=None,
             key_limit=None):
        """Without a cache, causal self-attention over `x`.

        With `cache` (one layer's keys and values in `KVCache`'s layout), the
        new keys and values are written into the cache at `cache_index` and
        attention runs over the cache; returns `(out, the updated cache)`.
        `key_limit`: attend to the cache's first `key_limit` positions only
        (the bias must cover just those), so a fixed-size cache is read no
        further than it is filled.
        """
        batch, length = dims(x, 2)
        q, k, v = tf.split(self.c_attn(x), 3, axis=-1)
        q, k, v = (self._split_heads(t, length) for t in (q, k, v))
        scale = 1.0 / math.sqrt(self.head_dim)
        bias = tf.cast(attention_bias, "float32")
        if cache is not None:
            q, k, v = (in_cache_layout(t, cache) for t in (q, k, v))
            k, v = new_cache = write_position(cache, k, v, cache_index)
            if key_limit is not None:
                k, v = k[..., :key_limit, :], v[..., :key_limit, :]
        if cache is None and isinstance(length, int) and length >= 2 * QUERY_BLOCK:
            out = tf.concat([
                self._attend(q[:, :, start:start + QUERY_BLOCK], k[:, :, :start + QUERY_BLOCK],
                             v[:, :, :start + QUERY_BLOCK],
                             bias[:, :, start:start + QUERY_BLOCK, :start + QUERY_BLOCK],
                             scale, training)
                for start in range(0, length, QUERY_BLOCK)], axis=2)
        elif cache is None:
            out = self._attend(q, k, v, bias, scale, training)
        else:
            scores = tf.matmul(q, k, transpose_b=True)
            scores = tf.reshape(scores * scale, [batch, self.n_head, length, -1])
            probs = self._probabilities(scores, bias, training)
            if q.shape.rank == 3:  # back to the cache's rows
                probs = tf.reshape(probs, [batch * self.n_head, length, -1])
            out = tf.matmul(probs, v)
        out = tf.reshape(out, [-1, self.n_head, length, self.head_dim])
        out = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [-1, length, self.n_embd])
        out = self.resid_dropout(self.c_proj(out), training=training)
        return out if cache is None else (out, new_cache)

    def _probabilities(self, scores, bias, training):
        # Softmax in float32 whatever the compute dtype (mixed precision).
        probs = tf.nn.softmax(tf.cast(scores, "float32") + bias, axis=-1)
        return self.attn_dropout(tf.cast(probs, self.compute_dtype), training=training)

    def _attend(self, q, k, v, bias, scale, training):
        """softmax(q k^T * scale + bias) v for [B, H, T, D] queries, keys, values."""
        scores = tf.matmul(q, k, transpose_b=True) * scale
        return tf.matmul(self._probabilities(scores, bias, training), v)

    def compute_output_spec(self, x, attention_bias, cache=None, cache_index=None, training=None,
                            key_limit=None):
        return keras.KerasTensor(x.shape, self.compute_dtype)


class GPT2MLP(keras.layers.Layer):
    def __init__(self, n_embd: int, n_inner: int, resid_pdrop: float = 0.0,
                 kernel_initializer="glorot_uniform", projection_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        self.c_fc = Linear(n_inner, kernel_initializer, dtype=policy, name="c_fc")
        self.c_proj = Linear(n_embd, projection_initializer, dtype=policy, name="c_proj")
        self.dropout = keras.layers.Dropout(resid_pdrop, dtype=policy, name="drop")

    def build(self, input_shape):
        self.c_fc.build(input_shape)
        self.c_proj.build(tuple(input_shape[:-1]) + (self.c_fc.units,))

    def call(self, x, training=None):
        h = tf.nn.gelu(self.c_fc(x), approximate=True)  # GPT-2's tanh GELU
        return self.dropout(self.c_proj(h), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape


class GPT2Block(keras.layers.Layer):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config, kernel_initializer="glorot_uniform",
                 projection_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        eps = config.layer_norm_epsilon
        self.ln_1 = keras.layers.LayerNormalization(epsilon=eps, dtype=policy, name="ln_1")
        self.attn = GPT2Attention(
            config.n_embd, config.n_head, config.attn_pdrop, config.resid_pdrop,
            kernel_initializer, projection_initializer, dtype=policy, name="attn")
        self.ln_2 = keras.layers.LayerNormalization(epsilon=eps, dtype=policy, name="ln_2")
        self.mlp = GPT2MLP(config.n_embd, config.intermediate_size, config.resid_pdrop,
                           kernel_initializer, projection_initializer, dtype=policy, name="mlp")

    def build(self, input_shape):
        for layer in (self.ln_1, self.attn, self.ln_2, self.mlp):
            layer.build(input_shape)

    def call(self, x, attention_bias, cache=None, cache_index=None, training=None,
             key_limit=None):
        attn = self.attn(self.ln_1(x), attention_bias, cache=cache, cache_index=cache_index,
                         training=training, key_limit=key_limit)
        if cache is not None:
            attn, cache = attn
        x = x + attn
        x = x + self.mlp(self.ln_2(x), training=training)
        return x if cache is None else (x, cache)

    def compute_output_spec(self, x, attention_bias, cache=None, cache_index=None, training=None,
                            key_limit=None):
        return keras.KerasTensor(x.shape, self.compute_dtype)


def call_block(block, hidden, bias, cache=None, cache_index=None, training=None,
               key_limit=None):
    """Run one block: `(hidden, new cache or None)`. The default block
    runner of `forward`; decode programs pass their own (`SharedBlockGraph`)."""
    if cache is None:
        return block(hidden, bias, training=training), None
    return block(hidden, bias, cache=cache, cache_index=cache_index, training=training,
                 key_limit=key_limit)


def initializers(config, seed=None, initialize: bool = True) -> dict:
    """GPT-2's initialisation: normal(0, initializer_range), output
    projections scaled by 1/sqrt(2 * n_layer) (the residual stream grows with
    depth). One seed generator for all, so seeded models are reproducible and
    no two weights of the same shape come out equal. `initialize=False`:
    zeros, for a model a checkpoint overwrites at once (drawing 355M normals
    takes seconds)."""
    if not initialize:
        zeros = keras.initializers.Zeros()
        return dict(kernel=zeros, projection=zeros)
    seed_gen = keras.random.SeedGenerator(seed) if seed is not None else None
    std = config.initializer_range
    return dict(
        kernel=keras.initializers.RandomNormal(0.0, std, seed=seed_gen),
        projection=keras.initializers.RandomNormal(
            0.0, std / math.sqrt(2 * config.n_layer), seed=seed_gen))
