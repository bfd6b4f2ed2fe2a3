"""The Keras functional GPT-2 against keras-hub's GPT2Backbone, and its API."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_support import (MEDIUM, export_keras_hub, keras_hub_backbone, keras_hub_outputs,
                           small_config)
from tfgpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model, TFGPT2LMHeadModel, TFGPT2Model
from tfgpt2.modeling.kv_cache import KVCache


@pytest.fixture(scope="module")
def medium_pair(tmp_path_factory):
    """keras-hub Medium with random weights, and our model loaded from
    keras-hub's HF export of it."""
    config = GPT2Config(**MEDIUM, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    backbone = keras_hub_backbone(config, seed=1)
    directory = tmp_path_factory.mktemp("medium")
    export_keras_hub(backbone, directory)
    return backbone, GPT2LMHeadModel.from_pretrained(directory), directory


@pytest.mark.slow
def test_medium_logits_and_hidden_states_match_keras_hub(medium_pair):
    backbone, model, _ = medium_pair
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50257, size=(2, 17))
    ref_hidden, ref_logits = keras_hub_outputs(backbone, ids)
    out = model(ids)
    assert out.logits.dtype == tf.float32
    np.testing.assert_allclose(out.last_hidden_state.numpy(), ref_hidden, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.logits.numpy(), ref_logits, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_medium_left_padded_batch_matches_unpadded_keras_hub(medium_pair):
    """Each left-padded row gives keras-hub's outputs for that row alone:
    positions come from the mask and padding is masked out."""
    backbone, model, _ = medium_pair
    rng = np.random.default_rng(1)
    lengths = [11, 6, 1]
    width = max(lengths)
    ids = np.full((3, width), 50256)
    mask = np.zeros((3, width), np.int32)
    rows = [rng.integers(0, 50257, size=n) for n in lengths]
    for i, row in enumerate(rows):
        ids[i, width - len(row):], mask[i, width - len(row):] = row, 1
    out = model({"input_ids": ids, "attention_mask": mask})
    for i, row in enumerate(rows):
        ref_hidden, ref_logits = keras_hub_outputs(backbone, row[None])
        np.testing.assert_allclose(out.logits.numpy()[i, width - len(row):], ref_logits[0],
                                   atol=1e-4, rtol=0)
        np.testing.assert_allclose(out.last_hidden_state.numpy()[i, width - len(row):],
                                   ref_hidden[0], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_medium_features_model_matches_keras_hub(medium_pair):
    backbone, _, directory = medium_pair
    features = GPT2Model.from_pretrained(directory)
    ids = np.random.default_rng(2).integers(0, 50257, size=(1, 9))
    ref_hidden, _ = keras_hub_outputs(backbone, ids)
    out = features(input_ids=tf.constant(ids, tf.int32))
    assert set(out) == {"last_hidden_state"}
    np.testing.assert_allclose(out.last_hidden_state.numpy(), ref_hidden, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_medium_parameter_count():
    config = GPT2Config.from_pretrained("gpt2-medium")
    assert config.num_parameters() == 354_823_168
    model = GPT2LMHeadModel.from_config(config)
    assert model.count_params() == 354_823_168 == model.num_parameters()


@pytest.mark.parametrize("name,layers,width,heads", [
    ("gpt2", 12, 768, 12), ("gpt2-medium", 24, 1024, 16), ("gpt2-large", 36, 1280, 20),
    ("gpt2-xl", 48, 1600, 25), ("openai-community/gpt2-xl", 48, 1600, 25)])
def test_presets_are_known_offline(name, layers, width, heads):
    config = GPT2Config.from_pretrained(name)
    assert (config.n_layer, config.n_embd, config.n_head) == (layers, width, heads)
    assert (config.vocab_size, config.n_positions, config.layer_norm_epsilon) == (50257, 1024, 1e-5)


def test_hidden_states_follow_transformers_convention():
    """n_layer + 1 states: the embedding sum first (checked by hand from the
    weights), the final LayerNorm output last."""
    model = GPT2LMHeadModel.from_config(small_config(), seed=3)
    ids = np.array([[5, 9, 2, 7]])
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.n_layer + 1
    wte, wpe = model.embeddings.wte.numpy(), model.embeddings.wpe.numpy()
    np.testing.assert_allclose(out.hidden_states[0].numpy()[0], wte[ids[0]] + wpe[:4], atol=1e-6)
    np.testing.assert_array_equal(out.hidden_states[-1].numpy(), out.last_hidden_state.numpy())
    # The head is tied: logits are the last hidden state times wte^T.
    np.testing.assert_allclose(out.logits.numpy()[0], out.last_hidden_state.numpy()[0] @ wte.T,
                               atol=1e-5)


def test_model_card_calling_conventions():
    model = TFGPT2Model.from_config(small_config(), seed=0)
    ids = tf.constant([[1, 2, 3]], tf.int32)
    encoded = {"input_ids": ids, "attention_mask": tf.ones_like(ids)}
    by_dict, by_kwargs, by_tensor = model(encoded), model(**encoded), model(ids)
    for out in (by_kwargs, by_tensor):
        np.testing.assert_array_equal(out.last_hidden_state.numpy(),
                                      by_dict.last_hidden_state.numpy())
    np.testing.assert_array_equal(by_dict[0].numpy(), by_dict["last_hidden_state"].numpy())
    assert TFGPT2LMHeadModel is GPT2LMHeadModel
    with pytest.raises(AttributeError, match="no field 'logits'"):
        by_dict.logits


def test_from_config_seeded_is_reproducible_and_distinct():
    a = GPT2LMHeadModel.from_config(small_config(), seed=7)
    b = GPT2LMHeadModel.from_config(small_config(), seed=7)
    c = GPT2LMHeadModel.from_config(small_config(), seed=8)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert not np.array_equal(a.embeddings.wte.numpy(), c.embeddings.wte.numpy())
    # One generator for all initialisers: same-shaped weights still differ.
    assert not np.array_equal(a.blocks[0].attn.c_attn.kernel.numpy(),
                              a.blocks[1].attn.c_attn.kernel.numpy())
    # transformers' init: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer)).
    big = GPT2LMHeadModel.from_config(small_config(n_embd=256, n_head=4), seed=1)
    assert abs(big.blocks[0].mlp.c_fc.kernel.numpy().std() - 0.02) < 1e-3
    assert abs(big.blocks[0].mlp.c_proj.kernel.numpy().std() - 0.01) < 1e-3


def test_dropout_only_in_training():
    model = GPT2LMHeadModel.from_config(small_config(resid_pdrop=0.3, embd_pdrop=0.3,
                                                     attn_pdrop=0.3), seed=0)
    ids = np.array([[1, 2, 3, 4, 5]])
    eval_a, eval_b = model(ids).logits.numpy(), model(ids, training=False).logits.numpy()
    train = model(ids, training=True).logits.numpy()
    np.testing.assert_array_equal(eval_a, eval_b)
    assert np.abs(train - eval_a).max() > 1e-3


@pytest.mark.parametrize("policy,compute", [("mixed_bfloat16", "bfloat16"),
                                            ("mixed_float16", "float16")])
def test_mixed_precision_policy(policy, compute):
    policy_model = GPT2LMHeadModel.from_config(small_config(), seed=4, dtype=policy)
    fp32 = GPT2LMHeadModel.from_config(small_config(), seed=4)
    assert policy_model.blocks[0].attn.c_attn.kernel.dtype == "float32"
    assert policy_model.blocks[0].attn.compute_dtype == compute
    ids = np.array([[3, 1, 4, 1, 5, 9]])
    low, high = policy_model(ids), fp32(ids)
    assert low.logits.dtype == tf.float32 and low.last_hidden_state.dtype == compute
    np.testing.assert_allclose(low.logits.numpy(), high.logits.numpy(), atol=0.1)


def test_keras_save_and_load_round_trip(tmp_path):
    model = GPT2LMHeadModel.from_config(small_config(), seed=5)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    ids = np.array([[1, 2, 3]])
    assert isinstance(restored, GPT2LMHeadModel)
    np.testing.assert_array_equal(np.asarray(restored(ids).logits), np.asarray(model(ids).logits))


# --- bad input -------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    return GPT2LMHeadModel.from_config(small_config(), seed=0)


@pytest.mark.parametrize("ids,message", [
    (np.array([1, 2, 3]), r"must be \[batch, length\]"),
    (np.ones((1, 2, 3), int), r"must be \[batch, length\]"),
    (np.array([[1, 320]]), r"Token ids must be in \[0, 320\); found \[320\]"),
    (np.array([[-1, 2]]), r"found \[-1\]"),
    (np.ones((1, 129), int), "exceeds the model's context n_positions=128"),
    (np.zeros((1, 0), int), "empty"),
    (np.array([[1.5, 2.0]]), "must hold integers"),
])
def test_bad_ids_are_clear_errors(small_model, ids, message):
    with pytest.raises((ValueError, TypeError), match=message):
        small_model(ids)


def test_bad_masks_and_arguments_are_clear_errors(small_model):
    ids = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match="attention_mask shape"):
        small_model(ids, attention_mask=np.ones((1, 4), int))
    with pytest.raises(ValueError, match="only 0 and 1"):
        small_model(ids, attention_mask=np.array([[1, 2, 1]]))
    with pytest.raises(ValueError, match="Unexpected inputs"):
        small_model({"input_ids": ids, "token_type_ids": ids})
    with pytest.raises(ValueError, match="input_ids are required"):
        small_model({"attention_mask": ids})


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPT2Config(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="Unknown preset"):
        GPT2Config.from_preset("gpt3")
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        GPT2Config.from_dict({"model_type": "llama"})


@pytest.fixture(scope="module")
def long_context_pair(tmp_path_factory):
    """A small keras-hub GPT-2 with a 1024-token context, and ours from its export."""
    config = small_config(n_positions=1024)
    backbone = keras_hub_backbone(config, seed=3)
    directory = tmp_path_factory.mktemp("long_context")
    export_keras_hub(backbone, directory)
    return backbone, GPT2LMHeadModel.from_pretrained(directory)


def test_long_inputs_attend_in_query_blocks_and_match_keras_hub(long_context_pair):
    """At 1024 tokens attention runs in query blocks that skip the keys the
    causal mask hides (layers.QUERY_BLOCK); the result is keras-hub's, eager
    and in a compiled function, for a full row and a left-padded one."""
    from tfgpt2.modeling import layers

    backbone, model = long_context_pair
    assert 1024 >= 2 * layers.QUERY_BLOCK and 1000 % layers.QUERY_BLOCK != 0
    rng = np.random.default_rng(4)
    full = rng.integers(0, 320, size=1024)
    short = rng.integers(0, 320, size=1000)  # a partial last block
    ids = np.stack([full, np.concatenate([np.full(24, 319), short])])
    mask = np.stack([np.ones(1024, np.int32), (np.arange(1024) >= 24).astype(np.int32)])
    compiled = tf.function(lambda i, m: model({"input_ids": i, "attention_mask": m}).logits,
                           jit_compile=True)
    for logits in (model({"input_ids": ids, "attention_mask": mask}).logits.numpy(),
                   compiled(tf.constant(ids), tf.constant(mask)).numpy()):
        _, ref_full = keras_hub_outputs(backbone, full[None])
        _, ref_short = keras_hub_outputs(backbone, short[None])
        np.testing.assert_allclose(logits[0], ref_full[0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(logits[1, 24:], ref_short[0], atol=1e-4, rtol=0)


def test_query_blocks_leave_the_gradient_unchanged(long_context_pair, monkeypatch):
    """Training differentiates through the blocks: the same loss gradient as
    one block over the whole row."""
    from tfgpt2.modeling import layers

    _, model = long_context_pair
    ids = tf.constant(np.random.default_rng(5).integers(0, 320, size=(1, 1024)))

    def gradient():
        with tf.GradientTape() as tape:
            logits = model(ids).logits
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                ids[:, 1:], logits[:, :-1], from_logits=True))
        return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_weights)]

    blocked = gradient()
    monkeypatch.setattr(layers, "QUERY_BLOCK", 4096)  # one block: the plain path
    whole = gradient()
    for a, b in zip(blocked, whole):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_cached_forward_outside_xla_matches_the_full_forward():
    """The same forward with a KV cache, run by the plain TF runtime (eager):
    a 3-token prefill then one token at a time equals one full pass."""
    model = GPT2LMHeadModel.from_config(small_config(), seed=6)
    cfg = model.config
    ids = np.array([[11, 22, 33, 44, 55, 66]])
    full = model(ids).logits.numpy()[0]
    length = ids.shape[1] + 2
    cache = KVCache.empty(cfg, 1, length)
    key_mask = tf.ones([1, length], tf.int32)
    hidden, _, cache = model.forward(tf.constant(ids[:, :3], tf.int32), key_mask,
                                     tf.constant([[0, 1, 2]]), cache, cache_index=0)
    np.testing.assert_allclose(model.lm_logits(hidden).numpy()[0], full[:3], atol=1e-5)
    for t in range(3, ids.shape[1]):
        hidden, _, cache = model.forward(tf.constant(ids[:, t:t + 1], tf.int32), key_mask,
                                         tf.constant([[t]]), cache, cache_index=tf.constant(t))
        np.testing.assert_allclose(model.lm_logits(hidden).numpy()[0, 0], full[t], atol=1e-5)


def test_per_head_cache_read_through_a_window_matches_the_full_forward():
    """The `.tflite`'s layout: each layer's cache [B, H, S, D], longer than
    the text and full of stale values, written at the position and read only
    through its first `key_limit` slots (a decode window): the same logits as
    the full forward, and the same keys as the merged-rows [B * H, S, D] layout."""
    model = GPT2LMHeadModel.from_config(small_config(), seed=4)
    cfg = model.config
    ids = np.array([[5, 17, 42, 8, 99, 3]], np.int32)
    full = model(ids).logits.numpy()[0]
    slots, prefix, window = 16, 5, 8
    stale = tf.ones([1, cfg.n_head, slots, cfg.head_dim])
    cache = KVCache((stale,) * cfg.n_layer, (stale,) * cfg.n_layer)
    key_mask = tf.ones([1, slots], tf.int32)
    hidden, _, cache = model.forward(ids[:, :prefix], key_mask, tf.range(prefix)[None], cache,
                                     cache_index=tf.constant(0))
    np.testing.assert_allclose(model.lm_logits(hidden).numpy()[0], full[:prefix], atol=1e-4)
    hidden, _, cache = model.forward(ids[:, prefix:], key_mask, tf.constant([[prefix]]), cache,
                                     cache_index=tf.constant(prefix), key_limit=window)
    np.testing.assert_allclose(model.lm_logits(hidden).numpy()[0, 0], full[prefix],
                               atol=1e-4, rtol=1e-4)
    assert cache.keys[0].shape == (1, cfg.n_head, slots, cfg.head_dim)
    _, _, rows = model.forward(ids, key_mask, tf.range(6)[None], KVCache.empty(cfg, 1, slots),
                               cache_index=tf.constant(0))
    for per_head, merged in zip(cache.keys + cache.values, rows.keys + rows.values, strict=True):
        np.testing.assert_allclose(per_head.numpy()[0, :, :6], merged.numpy()[:, :6], atol=1e-5)
