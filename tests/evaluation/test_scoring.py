"""Sliding-window and continuation scoring against brute force: every token
scored by its own forward pass over exactly the context it is allowed, with
numpy's log-softmax."""

import math

import numpy as np
import pytest

from model_support import small_config
from tfgpt2 import GPT2LMHeadModel
from tfgpt2.evaluation.scoring import (ContinuationScore, Window, score_continuations,
                                       score_tokens, sliding_windows)

WINDOW = 16


@pytest.fixture(scope="module")
def model():
    return GPT2LMHeadModel.from_config(small_config(), seed=3)


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def token_logprob(model, context, token):
    """log p(token | context): one forward pass over the context alone."""
    logits = model(np.asarray([context], np.int32)).logits.numpy()[0, -1].astype(np.float64)
    return log_softmax(logits)[token]


def allowed_context_starts(n, window, stride):
    """Where each token's context begins, from the protocol's statement: the
    first `window` tokens see everything before them; after that, tokens are
    taken `min(stride, window - 1)` at a time and each group sees the
    `window` tokens ending at its last token."""
    step = min(stride, window - 1)
    starts = {t: 0 for t in range(1, min(window, n))}
    t = min(window, n)
    while t < n:
        group = range(t, min(t + step, n))
        for u in group:
            starts[u] = max(0, group[-1] + 1 - window)
        t = group[-1] + 1
    return starts


def brute_force_nll(model, ids, window, stride):
    starts = allowed_context_starts(len(ids), window, stride)
    return -sum(token_logprob(model, ids[starts[t]:t], ids[t]) for t in range(1, len(ids)))


@pytest.mark.parametrize("stride", [5, 8])
@pytest.mark.parametrize("length", [10, WINDOW, WINDOW + 2 * 5 + 3],
                         ids=["shorter-than-window", "one-window", "windows-and-remainder"])
def test_sliding_window_total_equals_brute_force(model, length, stride):
    ids = np.random.default_rng(length + stride).integers(0, 320, length)
    result = score_tokens(model, ids, window=WINDOW, stride=stride, batch_size=2)
    assert result.num_scored == length - 1
    np.testing.assert_allclose(result.total_nll, brute_force_nll(model, ids, WINDOW, stride),
                               rtol=2e-5)


def test_batch_size_does_not_change_the_total(model):
    ids = np.random.default_rng(7).integers(0, 320, 40)
    totals = {b: score_tokens(model, ids, window=WINDOW, stride=4, batch_size=b).total_nll
              for b in (1, 3, 16)}
    np.testing.assert_allclose(list(totals.values()), totals[1], rtol=1e-5)


@pytest.mark.parametrize("n,stride", [(2, 1), (16, 16), (17, 1), (100, 7), (1000, 512),
                                      (1024 + 3 * 512, 512), (5000, 1024)])
def test_windows_score_every_token_exactly_once(n, stride):
    window = 16 if n <= 100 else 1024
    windows = sliding_windows(n, window, stride)
    scored = [t for w in windows for t in range(w.score_from, w.end)]
    assert scored == list(range(1, n))
    for w in windows:
        assert 0 <= w.start < w.score_from <= w.end <= n
        assert w.end - w.start == min(window, n)  # every window is full
        # at least window - stride tokens of context (one, when stride == window)
        assert w.score_from - w.start >= min(max(window - stride, 1), w.score_from)


def test_windows_match_the_transformers_recipe_when_the_remainder_fits():
    """transformers' guide: windows begin at multiples of the stride, end
    `window` later, and score what the previous window did not. With
    (n - window) a multiple of the stride both plans are the same windows."""
    n, window, stride = 1024 + 3 * 512, 1024, 512
    recipe, previous_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        recipe.append(Window(begin, end, max(previous_end, 1)))
        previous_end = end
        if end == n:
            break
    assert sliding_windows(n, window, stride) == recipe


@pytest.mark.parametrize("kwargs,message", [
    (dict(stride=0), "between 1 and the window"),
    (dict(stride=17), "between 1 and the window"),
    (dict(window=1), "window must be an integer >= 2"),
    (dict(window=129), "exceeds the model's context of 128"),
])
def test_bad_window_or_stride(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        score_tokens(model, [1, 2, 3], **{"window": WINDOW, **kwargs})


@pytest.mark.parametrize("ids", [[], [5]])
def test_fewer_than_two_tokens_is_an_error(model, ids):
    with pytest.raises(ValueError, match="at least 2 tokens"):
        score_tokens(model, ids, window=WINDOW, stride=8)


def test_out_of_vocabulary_ids_are_an_error(model):
    with pytest.raises(ValueError, match=r"outside the model's vocabulary \[0, 320\)"):
        score_tokens(model, [1, 2, 999], window=WINDOW)


def test_continuations_equal_brute_force_and_greedy(model):
    rng = np.random.default_rng(11)
    requests = [(rng.integers(0, 320, n_ctx).tolist(), rng.integers(0, 320, n_cont).tolist())
                for n_ctx, n_cont in [(5, 1), (12, 3), (3, 7), (30, 2)]]
    # A continuation made of the model's own greedy choices must be greedy.
    context = rng.integers(0, 320, 6).tolist()
    greedy_tokens = []
    for _ in range(3):
        logits = model(np.asarray([context + greedy_tokens])).logits.numpy()[0, -1]
        greedy_tokens.append(int(np.argmax(logits)))
    requests.append((context, greedy_tokens))
    window = 20  # the 30-token context is cut to its last 18 tokens
    results = score_continuations(model, requests, window=window, batch_size=2)
    for (ctx, cont), result in zip(requests, results):
        ctx = ctx[-(window - len(cont)):]
        row = ctx + cont
        logprobs = [token_logprob(model, row[:len(ctx) + j], cont[j]) for j in range(len(cont))]
        assert isinstance(result, ContinuationScore) and result.num_tokens == len(cont)
        np.testing.assert_allclose(result.nll, -sum(logprobs), rtol=2e-5)
        greedy = all(
            int(np.argmax(model(np.asarray([row[:len(ctx) + j]])).logits.numpy()[0, -1])) == cont[j]
            for j in range(len(cont)))
        assert result.greedy == greedy
    assert results[-1].greedy


def test_excluded_first_tokens_change_greedy_not_probability(model):
    context = [3, 1, 4, 1, 5]
    best = int(np.argmax(model(np.asarray([context])).logits.numpy()[0, -1]))
    plain, filtered = (score_continuations(model, [(context, [best])], excluded_first_tokens=ex)[0]
                       for ex in (None, [best]))
    assert plain.greedy and not filtered.greedy
    assert math.isclose(plain.nll, filtered.nll, rel_tol=1e-6)


def test_continuation_errors(model):
    with pytest.raises(ValueError, match="empty context"):
        score_continuations(model, [([], [1])])
    with pytest.raises(ValueError, match="empty continuation"):
        score_continuations(model, [([1], [])])
    with pytest.raises(ValueError, match="shorter than the window"):
        score_continuations(model, [([1], list(range(20)))], window=20)


@pytest.mark.parametrize("context_length,window", [(5, 128), (40, 24)],
                         ids=["fits", "context-cut-to-window"])
def test_choices_share_the_context_and_equal_brute_force(model, context_length, window):
    from tfgpt2.evaluation.scoring import score_choices

    rng = np.random.default_rng(context_length)
    context = rng.integers(0, 320, context_length).tolist()
    choices = [rng.integers(0, 320, n).tolist() for n in (1, 4, 2, 9)]
    best = int(np.argmax(model(np.asarray([context[-(window - 9):]])).logits.numpy()[0, -1]))
    choices.append([best])  # a greedy one
    results = score_choices(model, context, choices, window=window)
    kept = context[-(window - 9):]  # room for the longest choice
    for choice, result in zip(choices, results):
        logprobs = [token_logprob(model, kept + choice[:j], choice[j]) for j in range(len(choice))]
        np.testing.assert_allclose(result.nll, -sum(logprobs), rtol=2e-5)
        assert result.num_tokens == len(choice)
    assert results[-1].greedy
