"""bf16 inference (`dtype="bfloat16"`) against the same weights in float32,
the oracle: logits within bf16 rounding, greedy tokens that are the float32
model's choice wherever its margin exceeds that rounding, the same
perplexity to a fraction of a percent, and refusals."""

import logging

import numpy as np
import pytest

from model_support import louder_small_model, small_config
from tfgpt2 import GPT2LMHeadModel, score_tokens
from tfgpt2.modeling import precision

NEW_TOKENS = 64
# bf16 keeps 8 significant bits: each product and stored weight is off by up
# to 2^-9 relatively; through two blocks the logits move by about 1% of
# their range (measured 1.0% here), so 3% bounds it with room.
MAX_RELATIVE_DRIFT = 0.03


@pytest.fixture(scope="module")
def models():
    """(float32 model, the same weights in bfloat16)."""
    float_model = louder_small_model()
    bf16 = GPT2LMHeadModel.from_config(small_config(), dtype="bfloat16")
    bf16.set_weights(float_model.get_weights())
    return float_model, bf16


@pytest.fixture(scope="module")
def prompts():
    return np.random.default_rng(0).integers(0, 319, size=(2, 9)).astype(np.int32)


def test_weights_are_bf16_and_logits_float32_within_bf16_rounding(models, prompts):
    float_model, bf16 = models
    assert {str(w.dtype) for w in bf16.weights} == {"bfloat16"}
    mask = np.ones_like(prompts)
    mask[1, :3] = 0  # a left-padded row
    inputs = {"input_ids": prompts, "attention_mask": mask}
    logits = bf16(inputs).logits
    assert logits.dtype == "float32"
    reference = float_model(inputs).logits.numpy()
    drift = np.abs(logits.numpy() - reference).max()
    assert 0 < drift <= MAX_RELATIVE_DRIFT * np.abs(reference).max(), drift


def test_greedy_tokens_are_the_float32_models_choice_over_64_tokens(models, prompts):
    """Each bf16 greedy token (the decode loop, and the streamed steps) is
    the float32 model's argmax, unless float32's own margin at that step is
    within the bf16 drift bound."""
    float_model, bf16 = models
    assert not precision.decodes_in_xla(bf16)  # the loops are oneDNN plain graphs on a CPU
    length = prompts.shape[1]
    streamed = []
    tokens = np.asarray(bf16.generate(prompts, max_new_tokens=NEW_TOKENS, do_sample=False,
                                      eos_token_id=[]))
    bf16.generate(prompts, max_new_tokens=8, do_sample=False, eos_token_id=[],
                  streamer=lambda step: streamed.append(np.asarray(step)))
    np.testing.assert_array_equal(np.stack(streamed, axis=1), tokens[:, length:length + 8])
    # One float32 pass over the bf16 sequence gives its logits at every step.
    reference = float_model(tokens[:, :-1]).logits.numpy()[:, length - 1:]
    tolerance = 2 * MAX_RELATIVE_DRIFT * np.abs(reference).max()
    chosen = np.take_along_axis(reference, tokens[:, length:, None], axis=-1)[..., 0]
    assert (chosen >= reference.max(axis=-1) - tolerance).all()
    top_two = np.sort(reference, axis=-1)[..., -2:]
    clear = top_two[..., 1] - top_two[..., 0] > tolerance
    np.testing.assert_array_equal(tokens[:, length:][clear], reference.argmax(-1)[clear])
    assert clear.mean() > 0.75  # the check above covers most tokens (84% here)


def test_perplexity_moves_by_less_than_half_a_percent(models):
    float_model, bf16 = models
    tokens = np.random.default_rng(1).integers(0, 319, size=150).tolist()
    expected = score_tokens(float_model, tokens, stride=64)
    result = score_tokens(bf16, tokens, stride=64)
    assert result.num_scored == expected.num_scored
    assert result.total_nll == pytest.approx(expected.total_nll, rel=5e-3)


def test_quantize_refuses_a_bf16_model(models):
    with pytest.raises(ValueError, match="computes in bfloat16"):
        models[1].quantize("int8")
    assert models[1].weight_quantization is None


def test_a_cpu_without_bf16_instructions_gets_a_warning(models, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    with caplog.at_level(logging.WARNING, logger="tfgpt2"):
        precision.warn_if_emulated(models[0])  # float32: nothing to say
        assert not caplog.records
        precision.warn_if_emulated(models[1])
    assert "no bf16 instructions" in caplog.text and 'dtype="float32"' in caplog.text
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    caplog.clear()
    precision.warn_if_emulated(models[1])
    assert not caplog.records


def test_save_pretrained_writes_bf16_weights_that_load_as_float32(models, prompts, tmp_path):
    _, bf16 = models
    bf16.save_pretrained(tmp_path)
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert {str(w.dtype) for w in loaded.weights} == {"float32"}
    for saved, original in zip(loaded.weights, bf16.weights):
        np.testing.assert_array_equal(saved.numpy(), original.numpy().astype(np.float32))
