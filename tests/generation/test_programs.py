"""The decode programs' own contracts: one traced block graph only for
blocks that match, prompt packing as TF functions."""

import numpy as np
import pytest
import tensorflow as tf

from model_support import small_config
from tfgpt2 import GPT2LMHeadModel
from tfgpt2.generation import packing
from tfgpt2.generation.programs import SharedBlockGraph
from tfgpt2.modeling.layers import GPT2Block


def built_block(config, name, cls=GPT2Block, dtype=None):
    block = cls(config, dtype=dtype, name=name)
    block.build((None, None, config.n_embd))
    return block


class AdaptedBlock(GPT2Block):
    """A per-block change, as an adapter or a quantised block would be."""


@pytest.mark.parametrize("other,what", [
    (lambda c: built_block(c, "h_1", cls=AdaptedBlock), "class"),
    (lambda c: built_block(small_config(n_inner=96), "h_1"), "weights"),
    (lambda c: built_block(c, "h_1", dtype="mixed_bfloat16"), "dtype policy"),
])
def test_shared_block_graph_refuses_a_block_that_differs(other, what):
    config = small_config()
    first = built_block(config, "h_0")
    SharedBlockGraph([first, built_block(config, "h_1")])  # identical blocks: fine
    with pytest.raises(ValueError, match=f"'h_1' differs from 'h_0' in its {what}"):
        SharedBlockGraph([first, other(config)])


def test_decoding_traces_one_block_for_every_layer_and_matches_the_uncached_model():
    config = small_config()
    assert config.n_layer > 1
    model = GPT2LMHeadModel.from_config(config, seed=0)
    prompt = [5, 17, 42, 8]
    out = model.generate(np.array([prompt]), max_new_tokens=5, do_sample=False, eos_token_id=[])
    # Oracle: greedy by brute force, the whole sequence through the model
    # each step, no cache and no shared block graph.
    ids = list(prompt)
    for _ in range(5):
        logits = model(np.array([ids], np.int32))["logits"].numpy()
        ids.append(int(np.argmax(logits[0, -1])))
    assert out[0].tolist() == ids
    # The prefill and the loop each trace the block once, not once per layer.
    assert model.decode_programs.block_runner.tracing_count() <= 2


def brute_force_left_pad(rows, length, pad):
    ids = np.full((len(rows), length), pad, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        kept = row[-length:] if len(row) > length else row
        if len(kept):
            ids[i, length - len(kept):], mask[i, length - len(kept):] = kept, 1
    return ids, mask


@pytest.mark.parametrize("length", [1, 3, 8])
def test_left_pad_right_aligns_and_keeps_the_last_tokens(length):
    rows = [[5, 6, 7, 8, 9], [], [1], [2, 3, 4]]
    values = np.array(sum(rows, []), np.int32)
    splits = np.cumsum([0] + [len(r) for r in rows])
    ids, mask = packing.left_pad(values, splits, length, 99)
    want_ids, want_mask = brute_force_left_pad(rows, length, 99)
    np.testing.assert_array_equal(ids.numpy(), want_ids)
    np.testing.assert_array_equal(mask.numpy(), want_mask)


def test_left_pad_keeps_at_most_max_tokens():
    ids, mask = packing.left_pad([1, 2, 3, 4, 5, 6], [0, 5, 6], 8, 0, max_tokens=3)
    assert ids.numpy().tolist() == [[0, 0, 0, 0, 0, 3, 4, 5], [0, 0, 0, 0, 0, 0, 0, 6]]
    assert mask.numpy().sum(axis=1).tolist() == [3, 1]


def test_left_pad_of_no_tokens_and_in_a_graph():
    ids, mask = packing.left_pad(np.zeros([0], np.int32), [0, 0], 4, 7)
    assert ids.numpy().tolist() == [[7, 7, 7, 7]] and mask.numpy().sum() == 0
    graph = tf.function(packing.left_pad, autograph=False, input_signature=[
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)])
    ids, _ = graph(tf.constant([1, 2, 3]), tf.constant([0, 2, 3], tf.int64), 3, 0)
    assert ids.numpy().tolist() == [[0, 1, 2], [0, 0, 3]]


def test_tokens_before_stop():
    stop = np.zeros([10], bool)
    stop[[3, 7]] = True
    tokens = tf.constant([[1, 3, 7, 2], [1, 2, 4, 5], [7, 1, 1, 1]])
    assert packing.tokens_before_stop(tokens, stop).numpy().tolist() == [1, 4, 0]


def test_buckets():
    assert [packing.bucket_length(n) for n in (1, 8, 9, 64, 65, 128, 129)] == [
        8, 8, 16, 64, 128, 128, 192]
    assert [packing.bucket_batch(n) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]


@pytest.mark.parametrize("xla", [False, True])
def test_run_time_shapes_give_generate_s_tokens(xla):
    """The programs' bodies with sizes left to run time (what an exported
    graph needs), traced as a plain TF graph or as XLA, decode exactly what
    `generate` does with its fixed-shape buckets."""
    from tfgpt2.generation.generate import _params
    from tfgpt2.generation.config import GenerationConfig
    from tfgpt2.generation.programs import DecodeParams, ProgramKey, ProgramKind
    from tfgpt2.modeling.compiled import xla_program

    model = GPT2LMHeadModel.from_config(small_config(), seed=3)
    rows = [[5, 17, 42, 8], [7], [120, 3]]
    expected = [model.generate(np.array([row]), max_new_tokens=6, eos_token_id=[])[0, len(row):]
                for row in rows]
    programs = model.decode_programs
    key = ProgramKey(ProgramKind.LOOP, batch=None, prompt_length=None, new_tokens=None)
    params = _params(GenerationConfig(eos_token_id=[]), 6, model.config.vocab_size, 0)

    def run(ids, mask, params):
        state = programs.prefill_and_choose(key, ids, mask, params)
        return programs.token_loop(key, state, params)

    spec = tf.TensorSpec([None, None], tf.int32)
    if xla:
        def traced(*args):
            with xla_program():
                return run(*args)
        fn = tf.function(traced, jit_compile=True, autograph=False)
    else:
        fn = tf.function(run, autograph=False, input_signature=[
            spec, spec, DecodeParams.signature(model.config.vocab_size)])
    values = np.array(sum(rows, []), np.int32)
    ids, mask = packing.left_pad(values, np.cumsum([0] + [len(r) for r in rows]), 5, 0)
    out, steps = fn(ids, mask, params)
    assert int(steps) == 6
    assert out.shape[0] == len(rows) == len(expected)
    for row, want in zip(out.numpy(), expected):
        assert row[:6].tolist() == want.tolist()
        assert (row[6:] == 0).all()  # the loop's slots past the budget hold the padding id
