"""`model.quantize("int8")` against a NumPy brute-force of the same
per-channel rule: the quantized model must compute what the float model
computes on the NumPy-dequantized weights, in every decoding mode and in
scoring, and refuse what needs float weights."""

import numpy as np
import pytest

from model_support import dequantize_in_place, numpy_int8, quantized_kernels, small_config
from tfgpt2 import GPT2LMHeadModel, score_tokens


def louder_model():
    # Louder blocks than a fresh init, whose greedy tokens only echo the prompt.
    model = GPT2LMHeadModel.from_config(small_config(), seed=0)
    for block in model.blocks:
        block.mlp.c_proj.kernel.assign(block.mlp.c_proj.kernel.numpy() * 60.0)
    return model


@pytest.fixture(scope="module")
def models():
    """(float model, float model holding the NumPy-dequantized weights,
    quantized model), all from the same seeded weights."""
    float_model, dequantized, quantized = louder_model(), louder_model(), louder_model()
    dequantize_in_place(dequantized)
    quantized.quantize("int8")
    return float_model, dequantized, quantized


@pytest.fixture(scope="module")
def prompts():
    return np.random.default_rng(0).integers(0, 319, size=(2, 9)).astype(np.int32)


def test_every_weight_matmul_is_stored_int8_by_the_per_channel_rule(models):
    float_model, _, quantized = models
    float_kernels = quantized_kernels(float_model)
    stored = quantized_kernels(quantized)
    assert len(stored) == 4 * quantized.config.n_layer + 1  # the blocks' 4, and the LM head
    for path, (layer, name) in stored.items():
        expected_values, expected_scales = numpy_int8(
            getattr(float_kernels[path][0], name).numpy())
        assert getattr(layer, name).dtype == "int8"
        assert not getattr(layer, name).trainable
        np.testing.assert_array_equal(getattr(layer, name).numpy(), expected_values)
        np.testing.assert_allclose(getattr(layer, f"{name}_scale").numpy(), expected_scales,
                                   rtol=1e-6)
    assert not any(w.dtype == "int8" for w in quantized.trainable_weights)


def test_logits_equal_the_dequantized_float_model_and_drift_from_float(models, prompts):
    float_model, dequantized, quantized = models
    mask = np.ones_like(prompts)
    mask[1, :3] = 0  # a left-padded row
    inputs = {"input_ids": prompts, "attention_mask": mask}
    reference = dequantized(inputs).logits.numpy()
    logits = quantized(inputs).logits.numpy()
    scale = np.abs(reference).max()
    assert np.abs(logits - reference).max() <= 2e-5 * scale
    drift = np.abs(logits - float_model(inputs).logits.numpy()).max()
    # int8 rounding moves each weight by at most half a step (max|row| / 254).
    assert 0 < drift <= 0.05 * scale, drift


def reference_logits(model, ids, step, prompt_length):
    """The last position's logits for the prompt and the first `step` new tokens."""
    return model(ids[:, :prompt_length + step]).logits.numpy()[:, -1]


@pytest.mark.slow
def test_every_decoding_mode_follows_the_dequantized_float_model(models, prompts):
    """Streamed greedy tokens are the reference's argmax, sampled tokens lie
    in its top k, and beam search returns the reference's beams."""
    _, dequantized, quantized = models
    length, new = prompts.shape[1], 6
    streamed = []
    greedy = np.asarray(quantized.generate(
        prompts, max_new_tokens=new, do_sample=False,
        streamer=lambda tokens: streamed.append(np.asarray(tokens))))
    np.testing.assert_array_equal(np.stack(streamed, axis=1), greedy[:, length:])
    sampled = np.asarray(quantized.generate(prompts, max_new_tokens=new, do_sample=True,
                                            top_k=5, seed=3))
    for step in range(new):
        logits = reference_logits(dequantized, greedy, step, length)
        np.testing.assert_array_equal(greedy[:, length + step], logits.argmax(axis=-1))
        top_k = np.argsort(-reference_logits(dequantized, sampled, step, length), axis=-1)[:, :5]
        assert all(sampled[row, length + step] in top_k[row] for row in range(len(sampled)))
    beams = dict(num_beams=3, do_sample=False, max_new_tokens=new)
    np.testing.assert_array_equal(quantized.generate(prompts, **beams),
                                  dequantized.generate(prompts, **beams))


def test_scoring_equals_the_dequantized_float_model(models):
    _, dequantized, quantized = models
    tokens = np.random.default_rng(1).integers(0, 319, size=150).tolist()
    expected = score_tokens(dequantized, tokens, stride=64)
    result = score_tokens(quantized, tokens, stride=64)
    assert result.num_scored == expected.num_scored
    assert result.total_nll == pytest.approx(expected.total_nll, rel=1e-5)


def test_what_needs_float_weights_is_refused(models, prompts, tmp_path):
    from tfgpt2.training.step import Steps

    quantized = models[2]
    with pytest.raises(ValueError, match="already quantized"):
        quantized.quantize("int8")
    with pytest.raises(ValueError, match="train it"):
        quantized.fit(prompts, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="fine-tune it"):
        Steps(quantized, optimizer=None, strategy=None)
    with pytest.raises(ValueError, match="save it with save_pretrained"):
        quantized.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    with pytest.raises(ValueError, match="export it"):
        quantized.export(tmp_path / "model.tflite", format="litert")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["int4", "float8", None])
def test_unsupported_modes_name_the_supported_one(mode):
    model = GPT2LMHeadModel.from_config(small_config(n_layer=1), seed=0)
    with pytest.raises(ValueError, match=r"Unsupported quantization mode .*\['int8'\]"):
        model.quantize(mode)
    assert model.weight_quantization is None
    with pytest.raises(ValueError, match="takes only the mode"):
        model.quantize("int8", filters="c_fc")


def test_a_replica_copy_keeps_the_int8_weights(models, prompts):
    # What generate_file puts on each further accelerator replica.
    from tfgpt2.distribute.replicas import copy_of

    *_, quantized = models
    copy = copy_of(quantized)
    assert copy.weight_quantization == "int8"
    np.testing.assert_array_equal(copy(prompts)["logits"].numpy(),
                                  quantized(prompts)["logits"].numpy())
