"""The compiled decode loop against brute force (full recomputation without a
cache) and against keras-hub's GPT2CausalLM; samplers, beams, stopping,
streaming, buckets and bad input."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf

from model_support import (MEDIUM, export_keras_hub, keras_hub_backbone, louder_small_model,
                           small_config)
from tfgpt2 import GPT2Config, GPT2LMHeadModel, set_seed

EOS = 319


def full_logits(model, sequence):
    """Next-token logits by running the whole sequence again (no cache)."""
    return model(np.asarray([sequence])).logits.numpy()[0, -1]


def brute_force_greedy(model, prompt, steps, penalty=None):
    sequence = list(prompt)
    for _ in range(steps):
        logits = full_logits(model, sequence)
        if penalty is not None:  # transformers' RepetitionPenaltyLogitsProcessor
            seen = sorted(set(sequence))
            logits[seen] = np.where(logits[seen] > 0, logits[seen] / penalty, logits[seen] * penalty)
        sequence.append(int(np.argmax(logits)))
    return sequence[len(prompt):]


def left_padded(rows, pad=EOS):
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad)
    mask = np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        ids[i, width - len(row):], mask[i, width - len(row):] = row, 1
    return ids, mask


@pytest.fixture(scope="module")
def model():
    return louder_small_model()


PROMPTS = [[5, 17, 42, 8, 99, 3, 250], [7, 7, 7], [120]]


@pytest.mark.slow
def test_medium_cached_greedy_equals_full_recomputation():
    """GPT-2 Medium sizes, random weights, a left-padded batch."""
    config = GPT2Config(**MEDIUM, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    medium = GPT2LMHeadModel.from_config(config, seed=1)
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 50257, 9).tolist(), rng.integers(0, 50257, 4).tolist()]
    ids, mask = left_padded(rows, pad=50256)
    out = medium.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=[])
    for i, row in enumerate(rows):
        assert out[i, ids.shape[1]:].tolist() == brute_force_greedy(medium, row, 10)


def test_cached_greedy_equals_full_recomputation_with_padding(model):
    ids, mask = left_padded(PROMPTS)
    out = model.generate(tf.constant(ids), attention_mask=tf.constant(mask), max_new_tokens=24,
                         eos_token_id=[])
    assert isinstance(out, tf.Tensor) and out.shape == (3, ids.shape[1] + 24)
    for i, row in enumerate(PROMPTS):
        assert out.numpy()[i, ids.shape[1]:].tolist() == brute_force_greedy(model, row, 24)
    # Right-padded input (a tokenizer's default) is re-packed, same result.
    right = np.full_like(ids, EOS)
    right_mask = np.zeros_like(mask)
    for i, row in enumerate(PROMPTS):
        right[i, :len(row)], right_mask[i, :len(row)] = row, 1
    again = model.generate(right, attention_mask=right_mask, max_new_tokens=24, eos_token_id=[])
    np.testing.assert_array_equal(again, out.numpy())


def test_greedy_equals_keras_hub_causal_lm():
    import keras_hub

    config = small_config(n_layer=3, n_embd=96, n_head=4, vocab_size=700, eos_token_id=699,
                          bos_token_id=699)
    backbone = keras_hub_backbone(config, seed=5)
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    with tempfile.TemporaryDirectory() as directory:
        export_keras_hub(backbone, directory)
        ours = GPT2LMHeadModel.from_pretrained(directory)
    rng = np.random.default_rng(3)
    prompt, new = 6, 20
    ids = rng.integers(0, 699, size=(2, prompt))
    token_ids = np.zeros((2, prompt + new), np.int32)
    token_ids[:, :prompt] = ids
    padding_mask = np.zeros((2, prompt + new), bool)
    padding_mask[:, :prompt] = True
    reference = causal_lm.generate({"token_ids": token_ids, "padding_mask": padding_mask},
                                   stop_token_ids=None)
    out = ours.generate(ids, max_new_tokens=new, eos_token_id=[], pad_token_id=0)
    np.testing.assert_array_equal(out, np.asarray(reference["token_ids"]))


def test_sampling_is_reproducible_and_top_k_1_is_greedy(model):
    ids, mask = left_padded(PROMPTS)
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=[])
    a = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, seed=9)
    b = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, seed=9)
    c = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, seed=10)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    top1 = model.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=[],
                          do_sample=True, top_k=1, seed=11)
    np.testing.assert_array_equal(top1, greedy)
    cold = model.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=[],
                          do_sample=True, temperature=1e-4, top_k=0, seed=12)
    np.testing.assert_array_equal(cold, greedy)


def test_set_seed_makes_unseeded_sampling_reproducible(model):
    ids = np.array([PROMPTS[0]])
    set_seed(42)
    a = model.generate(ids, max_new_tokens=10, do_sample=True)
    set_seed(42)
    b = model.generate(ids, max_new_tokens=10, do_sample=True)
    np.testing.assert_array_equal(a, b)
    set_seed(43)
    c = model.generate(ids, max_new_tokens=10, do_sample=True)
    assert (a != c).any()


def test_samples_follow_the_filtered_distribution(model):
    """One new token for 4096 copies of a prompt: the empirical frequencies
    match softmax(logits / T) restricted to the top k (brute force)."""
    prompt, k, temperature = [5, 17, 42], 5, 0.7
    out = model.generate(np.array([prompt]), max_new_tokens=1, do_sample=True, top_k=k,
                         temperature=temperature, num_return_sequences=4096, seed=1,
                         eos_token_id=[])
    drawn = out[:, -1]
    logits = full_logits(model, prompt) / temperature
    top = np.argsort(logits)[::-1][:k]
    assert set(drawn.tolist()) <= set(top.tolist())
    expected = np.exp(logits[top] - logits[top].max())
    expected /= expected.sum()
    observed = np.array([(drawn == t).mean() for t in top])
    assert np.abs(observed - expected).sum() / 2 < 0.05


def test_top_p_keeps_only_the_nucleus(model):
    prompt, top_p = [9, 8, 7], 0.6
    out = model.generate(np.array([prompt]), max_new_tokens=1, do_sample=True, top_k=0,
                         top_p=top_p, num_return_sequences=512, seed=2, eos_token_id=[])
    logits = full_logits(model, prompt)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(probs)[::-1]
    mass_before = np.cumsum(probs[order]) - probs[order]
    nucleus = set(order[mass_before < top_p].tolist())
    assert set(out[:, -1].tolist()) <= nucleus
    assert len(set(out[:, -1].tolist())) > 1 or len(nucleus) == 1


def test_repetition_penalty_matches_brute_force(model):
    ids, mask = left_padded(PROMPTS)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=15, eos_token_id=[],
                         repetition_penalty=1.8)
    for i, row in enumerate(PROMPTS):
        assert out[i, ids.shape[1]:].tolist() == brute_force_greedy(model, row, 15, penalty=1.8)


def brute_force_beam(model, prompt, beams, steps):
    """Plain beam search without stop tokens: keep the `beams` best
    cumulative log-probabilities among all extensions, by recomputation."""
    hyps = [(0.0, list(prompt))]
    for _ in range(steps):
        candidates = []
        for score, seq in hyps:
            logits = full_logits(model, seq).astype(np.float64)
            log_probs = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
            for token in np.argsort(log_probs)[::-1][:beams]:
                candidates.append((score + log_probs[token], seq + [int(token)]))
        hyps = sorted(candidates, key=lambda c: -c[0])[:beams]
    return hyps[0]


def sequence_log_prob(model, prompt, new):
    total, seq = 0.0, list(prompt)
    for token in new:
        logits = full_logits(model, seq).astype(np.float64)
        total += logits[token] - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        seq.append(int(token))
    return total


def test_beam_search_matches_brute_force_and_beats_greedy(model):
    ids, mask = left_padded(PROMPTS)
    width = ids.shape[1]
    one_beam = model.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=1,
                              eos_token_id=[])
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=8, eos_token_id=[])
    np.testing.assert_array_equal(one_beam, greedy)
    beams = model.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=3,
                           length_penalty=0.0, eos_token_id=[])
    for i, row in enumerate(PROMPTS):
        best_score, best = brute_force_beam(model, row, 3, 8)
        assert beams[i, width:].tolist() == best[len(row):]
        beam_score = sequence_log_prob(model, row, beams[i, width:])
        assert beam_score == pytest.approx(best_score, abs=1e-3)
        assert beam_score >= sequence_log_prob(model, row, greedy[i, width:]) - 1e-4


def log_softmax(logits):
    logits = logits.astype(np.float64)
    return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())


def brute_force_beam_with_stop(model, prompt, beams, steps, stop, length_penalty, early_stopping):
    """Beam search with a stop token by recomputation, transformers' rules:
    the best 2 * beams extensions of the live beams are taken in order; one
    ending in the stop token among the first `beams` enters the pool of
    finished hypotheses (score / length ** length_penalty); the first
    `beams` others live on. Done when the pool is full and (early_stopping
    or) its worst score is at least the best live score so normalised; at
    the end the live beams join the pool. Returns the pool, best first."""
    live, pool = [(0.0, [])], []
    for step in range(steps):
        length = step + 1
        candidates = []
        for score, new in live:
            lp = log_softmax(full_logits(model, list(prompt) + new))
            candidates += [(score + lp[t], new + [int(t)]) for t in np.argsort(-lp)[:2 * beams]]
        candidates = sorted(candidates, key=lambda c: -c[0])[:2 * beams]
        live = []
        for rank, (score, new) in enumerate(candidates):
            if new[-1] == stop:
                if rank < beams:
                    pool.append((score / length ** length_penalty, new))
            elif len(live) < beams:
                live.append((score, new))
        pool = sorted(pool, key=lambda h: -h[0])[:beams]
        if len(pool) == beams and (early_stopping
                                   or pool[-1][0] >= live[0][0] / length ** length_penalty):
            return pool
    pool += [(score / steps ** length_penalty, new) for score, new in live]
    return sorted(pool, key=lambda h: -h[0])[:beams]


@pytest.mark.parametrize("early_stopping,length_penalty", [(True, 1.0), (False, 0.5), (True, 0.0)])
def test_beam_search_with_stop_tokens_matches_brute_force(model, early_stopping, length_penalty):
    prompt, beams, steps = PROMPTS[2], 4, 10
    greedy = model.generate(np.array([prompt]), max_new_tokens=6, eos_token_id=[])[0, len(prompt):]
    # A stop token that ends some of the best hypotheses, so the stop rule is exercised.
    for stop in map(int, greedy):
        pool = brute_force_beam_with_stop(model, prompt, beams, steps, stop, length_penalty,
                                          early_stopping)
        if any(new[-1] == stop for _, new in pool):
            break
    else:
        pytest.fail("no greedy token ends a best hypothesis; pick another prompt")
    out = model.generate(np.array([prompt]), max_new_tokens=steps, num_beams=beams,
                         num_return_sequences=3, eos_token_id=stop, early_stopping=early_stopping,
                         length_penalty=length_penalty)
    assert out.shape[0] == 3 and len(pool) >= 3  # every returned row is checked
    for row, (_, new) in zip(out[:, len(prompt):], pool[:3], strict=True):
        assert row[:len(new)].tolist() == new
        assert set(row[len(new):].tolist()) <= {EOS}  # then padding


def test_per_row_stopping(model):
    ids, mask = left_padded(PROMPTS)
    free = model.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=[])
    width = ids.shape[1]
    stop = int(free[0, width + 2])  # row 0's third new token
    out = model.generate(ids, attention_mask=mask, max_new_tokens=10, stop_token_ids=[stop],
                         pad_token_id=0)
    for i in range(3):
        new, reference = out[i, width:].tolist(), free[i, width:].tolist()
        if stop in reference:
            cut = reference.index(stop) + 1
            assert new[:cut] == reference[:cut] and set(new[cut:]) <= {0}
        else:
            assert new == reference[: len(new)]


def test_streamer_receives_each_token(model):
    received = []
    out = model.generate(np.array([PROMPTS[0]]), max_new_tokens=9, eos_token_id=[],
                         streamer=lambda tokens: received.append(tokens.copy()))
    assert len(received) == 9
    assert np.concatenate(received).tolist() == out[0, len(PROMPTS[0]):].tolist()

    class Streamer:  # transformers' protocol: the prompt first, then each token, then end()
        def __init__(self):
            self.calls, self.ended = [], False

        def put(self, value):
            self.calls.append(np.asarray(value).reshape(-1).tolist())

        def end(self):
            self.ended = True

    streamer = Streamer()
    model.generate(np.array([PROMPTS[0]]), max_new_tokens=9, eos_token_id=[], streamer=streamer)
    assert streamer.calls[0] == PROMPTS[0] and streamer.ended
    assert sum(streamer.calls[1:], []) == out[0, len(PROMPTS[0]):].tolist()


def test_programs_are_reused_within_a_bucket(model):
    model.generate(np.array([[1, 2, 3]]), max_new_tokens=5)
    programs = model._decode_programs
    count = len(programs.tracing_counts())
    for prompt in ([4, 5, 6, 7, 8], [9], [10, 11, 12, 13, 14, 15, 16, 17]):
        model.generate(np.array([prompt]), max_new_tokens=7)
    assert len(programs.tracing_counts()) == count
    assert all(n == 1 for n in programs.tracing_counts().values())


def test_empty_prompt_starts_from_end_of_text(model):
    empty = model.generate(np.zeros((1, 0), np.int32), max_new_tokens=5, eos_token_id=[])
    from_eos = model.generate(np.array([[EOS]]), max_new_tokens=5, eos_token_id=[])
    np.testing.assert_array_equal(empty, from_eos)


def test_long_prompts_error_or_truncate_on_request(model):
    long_prompt = np.arange(120)[None] % 300
    with pytest.raises(ValueError, match="exceeds the context of 128.*truncate_prompt=True"):
        model.generate(long_prompt, max_new_tokens=20)
    out = model.generate(long_prompt, max_new_tokens=20, truncate_prompt=True, eos_token_id=[])
    kept = long_prompt[:, -108:]
    np.testing.assert_array_equal(out[:, :108], kept)
    reference = model.generate(kept, max_new_tokens=20, eos_token_id=[])
    np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_length=200), "exceeds the model's context n_positions=128"),
    (dict(max_length=3), "leaves no room for new tokens"),
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(do_sample=True, temperature=-1.0), "temperature must be > 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_k=-1), "top_k must be a positive int"),
    (dict(num_beams=0), "num_beams"),
    (dict(num_beams=2, num_return_sequences=3), "cannot exceed num_beams"),
    (dict(num_beams=2, do_sample=True), "Beam sampling"),
    (dict(num_return_sequences=2), "Greedy decoding returns one sequence"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(eos_token_id=1000), r"Stop token ids must be in \[0, 320\)"),
    (dict(max_new_tokens=0), "max_new_tokens must be a positive int"),
    (dict(pad_token_id=1000), r"padding token 1000 .* outside the vocabulary \[0, 320\)"),
])
def test_bad_settings_are_clear_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model.generate(np.array([[1, 2, 3, 4]]), **kwargs)


def test_padding_token_must_be_in_the_vocabulary():
    odd = GPT2LMHeadModel.from_config(small_config(eos_token_id=5000), seed=0)
    with pytest.raises(ValueError, match="padding token 5000 .* pass pad_token_id"):
        odd.generate(np.array([[1, 2]]), max_new_tokens=2, eos_token_id=[])
    assert odd.generate(np.array([[1, 2]]), max_new_tokens=2, eos_token_id=[],
                        pad_token_id=0).shape == (1, 4)


def test_bad_prompts_are_clear_errors(model):
    with pytest.raises(TypeError, match="mixing strings"):
        model.generate(["a prompt", [1, 2, 3]])
    with pytest.raises(ValueError, match=r"must be \[batch, length\]"):
        model.generate(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"Token ids must be in \[0, 320\)"):
        model.generate(np.array([[1, 400]]))
    with pytest.raises(TypeError, match="must hold integers"):
        model.generate(np.array([[1.0, 2.0]]))
    with pytest.raises(TypeError, match=r"not bytes: decode it first"):
        model.generate(b"a prompt")
    with pytest.raises(ValueError, match="needs a prompt"):
        model.generate()


def test_top_k_zero_samples_beyond_the_top_50(model):
    """top_k=0 turns top-k off: among 2048 one-token draws, tokens outside
    the 50 most likely (brute force) occur as often as their mass says
    (within 4.5 standard deviations); with top_k=50 (the default) none do."""
    prompt, draws = [9, 8, 7], 2048
    logits = full_logits(model, prompt).astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top_50 = np.argsort(probs)[::-1][:50]
    outside = 1.0 - probs[top_50].sum()
    assert outside * draws >= 100, "the prompt must give the tail enough mass to see"

    def tail_count(**kwargs):
        out = model.generate(np.array([prompt]), max_new_tokens=1, do_sample=True,
                             num_return_sequences=draws, seed=4, eos_token_id=[], **kwargs)
        return int((~np.isin(out[:, -1], top_50)).sum())

    spread = np.sqrt(draws * outside * (1 - outside))
    assert abs(tail_count(top_k=0) - draws * outside) < 4.5 * spread
    assert tail_count(top_k=None) > 0
    assert tail_count() == 0
