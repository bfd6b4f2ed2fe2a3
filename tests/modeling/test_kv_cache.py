"""The one KV-cache type against numpy: its layout, beam reordering, tiling
for shared contexts, stacking and the one-position write (eager, plain graph
and XLA)."""

import numpy as np
import pytest
import tensorflow as tf

from model_support import small_config
from tfgpt2.modeling.compiled import owned_buffer_writes, xla_program
from tfgpt2.modeling.kv_cache import KVCache, write_position

HEADS, DEPTH = 4, 16


def random_cache(batch, length, layers=2, seed=0):
    rng = np.random.default_rng(seed)
    shape = (layers, batch * HEADS, length, DEPTH)
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)


def as_cache(keys, values):
    return KVCache(tuple(map(tf.constant, keys)), tuple(map(tf.constant, values)))


def test_empty_has_the_layout_of_the_config():
    config = small_config()
    cache = KVCache.empty(config, 3, 10)
    assert cache.num_layers == config.n_layer
    for t in cache.keys + cache.values:
        assert t.shape == (3 * config.n_head, 10, config.head_dim)
        assert not np.any(t.numpy())


def test_heads_as_rows_keeps_each_row_s_heads_together():
    x = np.arange(2 * HEADS * 3 * DEPTH, dtype=np.float32).reshape(2, HEADS, 3, DEPTH)
    rows = KVCache.heads_as_rows(tf.constant(x)).numpy()
    np.testing.assert_array_equal(rows[HEADS + 1], x[1, 1])


@pytest.mark.parametrize("graph", ["eager", "function"])
def test_reorder_picks_batch_rows_with_repeats(graph):
    keys, values = random_cache(batch=3, length=5)
    rows = np.array([2, 0, 0, 1, 2], np.int32)

    def reorder(cache, rows):
        return cache.reorder(rows, HEADS)

    if graph == "function":
        reorder = tf.function(reorder, input_signature=[
            KVCache(*[(tf.TensorSpec([None, None, DEPTH]),) * 2] * 2), tf.TensorSpec([None], tf.int32)])
    got = reorder(as_cache(keys, values), tf.constant(rows))
    for layer in range(2):
        want = keys[layer].reshape(3, HEADS, 5, DEPTH)[rows].reshape(-1, 5, DEPTH)
        np.testing.assert_array_equal(got.keys[layer].numpy(), want)
        want = values[layer].reshape(3, HEADS, 5, DEPTH)[rows].reshape(-1, 5, DEPTH)
        np.testing.assert_array_equal(got.values[layer].numpy(), want)


def test_tile_repeats_the_whole_cache_along_the_batch():
    keys, values = random_cache(batch=1, length=4)
    got = as_cache(keys, values).tile(3)
    np.testing.assert_array_equal(got.keys[1].numpy(), np.concatenate([keys[1]] * 3))
    np.testing.assert_array_equal(got.values[0].numpy(), np.concatenate([values[0]] * 3))


def test_stacked_puts_the_layers_first():
    keys, values = random_cache(batch=2, length=3, layers=3)
    stacked_keys, stacked_values = as_cache(keys, values).stacked()
    np.testing.assert_array_equal(stacked_keys.numpy(), keys)
    np.testing.assert_array_equal(stacked_values.numpy(), values)


@pytest.mark.parametrize("xla", [False, True], ids=["graph", "xla"])
def test_write_position_writes_there_and_nowhere_else(xla):
    keys, values = random_cache(batch=2, length=6, layers=1)
    new_k = np.full((2 * HEADS, 2, DEPTH), 7.0, np.float32)
    new_v = np.full((2 * HEADS, 2, DEPTH), -7.0, np.float32)

    def write(k, v, nk, nv, index):
        if xla:
            with xla_program():
                return write_position((k, v), nk, nv, index)
        return write_position((k, v), nk, nv, index)

    fn = tf.function(write, jit_compile=xla, autograph=False)
    got_k, got_v = fn(keys[0], values[0], new_k, new_v, tf.constant(3))
    want_k, want_v = keys[0].copy(), values[0].copy()
    want_k[:, 3:5], want_v[:, 3:5] = new_k, new_v
    np.testing.assert_array_equal(got_k.numpy(), want_k)
    np.testing.assert_array_equal(got_v.numpy(), want_v)


def test_owned_copy_is_written_in_place_and_leaves_the_callers_cache_alone():
    """A plain-graph loop copies the cache it is given once, then writes the
    copy in place (`InplaceUpdate`): the writes land, the caller's tensors
    keep their values, and a second run starts from the original again."""
    keys, values = random_cache(batch=2, length=6)
    cache = as_cache(keys, values)
    new = np.full((2 * HEADS, 1, DEPTH), 5.0, np.float32)

    @tf.function(autograph=False)
    def loop_like(cache, index):
        with owned_buffer_writes():
            owned = cache.owned_copy()
            layers = [write_position(owned.layer(i), new, -new, index) for i in range(2)]
        return KVCache.from_layers(layers)

    graph = loop_like.get_concrete_function(cache, tf.constant(0)).graph.as_graph_def()
    assert any(node.op == "InplaceUpdate" for node in graph.node)
    for index in (4, 1):
        got = loop_like(cache, tf.constant(index))
        want_k, want_v = keys.copy(), values.copy()
        want_k[:, :, index:index + 1], want_v[:, :, index:index + 1] = new, -new
        np.testing.assert_array_equal(np.stack([t.numpy() for t in got.keys]), want_k)
        np.testing.assert_array_equal(np.stack([t.numpy() for t in got.values]), want_v)
        np.testing.assert_array_equal(np.stack([t.numpy() for t in cache.keys]), keys)
        np.testing.assert_array_equal(np.stack([t.numpy() for t in cache.values]), values)
