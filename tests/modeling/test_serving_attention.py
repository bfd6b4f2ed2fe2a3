"""A decode step's attention in the XLA-free serving graph (products and
sums, or matmuls, with the softmax spelled out) against numpy."""

import numpy as np
import pytest
import tensorflow as tf

from tfgpt2.modeling import layers
from tfgpt2.modeling.compiled import owned_buffer_writes

BATCH, HEADS, DEPTH, LENGTH, INDEX = 2, 4, 16, 7, 3


def numpy_attention(layer, x, bias, keys, values):
    """One new token per row, written at INDEX of the cache [B*H, S, D]."""
    qkv = x[:, 0] @ layer.c_attn.kernel.numpy().T + layer.c_attn.bias.numpy()
    q, k, v = (t.reshape(BATCH * HEADS, DEPTH) for t in np.split(qkv, 3, axis=-1))
    keys, values = keys.copy(), values.copy()
    keys[:, INDEX], values[:, INDEX] = k, v
    scores = np.einsum("rd,rsd->rs", q, keys) / np.sqrt(DEPTH)
    scores = scores + np.repeat(bias[:, 0, 0], HEADS, axis=0)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.einsum("rs,rsd->rd", probs, values).reshape(BATCH, 1, HEADS * DEPTH)
    return out @ layer.c_proj.kernel.numpy().T + layer.c_proj.bias.numpy(), keys, values


@pytest.mark.parametrize("products_max", [layers.ONE_QUERY_PRODUCTS_MAX, 0],
                         ids=["products", "matmuls"])
def test_one_token_step_equals_numpy(products_max, monkeypatch):
    monkeypatch.setattr(layers, "ONE_QUERY_PRODUCTS_MAX", products_max)
    rng = np.random.default_rng(0)
    layer = layers.GPT2Attention(HEADS * DEPTH, HEADS)
    layer.build((None, 1, HEADS * DEPTH))
    x = rng.normal(size=(BATCH, 1, HEADS * DEPTH)).astype(np.float32)
    keys, values = (rng.normal(size=(BATCH * HEADS, LENGTH, DEPTH)).astype(np.float32)
                    for _ in range(2))
    allowed = np.arange(LENGTH) <= INDEX
    allowed = np.stack([allowed, allowed & (np.arange(LENGTH) >= 1)])  # row 1: left padding
    bias = np.where(allowed, 0.0, -1e9).astype(np.float32)[:, None, None]

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, 1, HEADS * DEPTH]), tf.TensorSpec([None, 1, 1, None]),
        tf.TensorSpec([None, None, DEPTH]), tf.TensorSpec([None, None, DEPTH])])
    def step(x, bias, keys, values):
        with owned_buffer_writes():
            # The write is in place: give it buffers this run owns.
            return layer(x, bias, cache=(keys * 1.0, values * 1.0), cache_index=INDEX)

    out, (new_keys, new_values) = step(x, bias, keys, values)
    want, want_keys, want_values = numpy_attention(layer, x, bias, keys, values)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_keys.numpy(), want_keys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_values.numpy(), want_values, rtol=1e-5, atol=1e-6)
    ops = {op.type for f in [step.get_concrete_function()] for op in f.graph.get_operations()}
    assert "Softmax" not in ops  # traced the serving path, not the general one
