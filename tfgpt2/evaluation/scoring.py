"""Scoring with a causal language model: the summed negative log-likelihood
(NLL) that perplexity, bits per byte and choice accuracy are made of.

Two entry points, both batched and free of any dataset or CLI concern:

- `score_tokens`: the log-likelihood of a whole token stream longer than the
  model's context, with a sliding window (the GPT-2 paper's protocol for its
  language-modelling tables). Fine-tuning's evaluation loss does not use
  it: it scores held-out packed blocks with `target_nll`, as its training
  loss does (`tfgpt2.training.step`).
- `score_continuations`: the log-likelihood of continuations given contexts
  (LAMBADA's last word, CBT's candidates, the bias probe's occupations), and
  whether greedy decoding would produce each continuation.

Both run one compiled program over the model's single `forward`; the NLL of
each token comes from `tfgpt2.modeling.losses.token_nll` (the shift, then
`target_nll`, which fine-tuning's loss calls directly).

Inside `tfgpt2.distribute.replicas.using(strategy)` the batches are shared
by the strategy's replicas and workers; a batch's rows are fixed by its
index alone and the results are combined on the host in batch order, so the
numbers are those of one device.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfgpt2.distribute.replicas import current as current_replicas
from tfgpt2.modeling.kv_cache import KVCache
from tfgpt2.modeling.losses import token_nll
from tfgpt2.modeling.masking import position_ids


@dataclasses.dataclass(frozen=True)
class Window:
    """One forward pass of the sliding window: tokens `[start, end)` go in,
    tokens `[score_from, end)` are scored (each given all tokens of the window
    before it)."""

    start: int
    end: int
    score_from: int


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """What `score_tokens` measured.

    Attributes:
      total_nll: natural-log NLL summed over the scored tokens.
      num_scored: tokens scored (all but the first of the stream).
      num_windows: forward passes made.
    """

    total_nll: float
    num_scored: int
    num_windows: int

    @property
    def mean_nll(self) -> float:
        return self.total_nll / self.num_scored


@dataclasses.dataclass(frozen=True)
class ContinuationScore:
    """What `score_continuations` measured for one (context, continuation).

    Attributes:
      nll: natural-log NLL summed over the continuation's tokens.
      num_tokens: tokens in the continuation.
      greedy: True when each continuation token is the model's most likely
        next token given the context and the continuation tokens before it,
        i.e. greedy decoding from the context produces the continuation.
    """

    nll: float
    num_tokens: int
    greedy: bool

    @property
    def logprob(self) -> float:
        return -self.nll


def check_window_and_stride(window: int, stride: int, context: int | None = None) -> None:
    """ValueError unless 2 <= window <= context and 1 <= stride <= window."""
    if not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}.")
    if context is not None and window > context:
        raise ValueError(f"window={window} exceeds the model's context of {context} tokens; "
                         f"use a window of at most {context}.")
    if not isinstance(stride, (int, np.integer)) or not 1 <= stride <= window:
        raise ValueError(f"stride={stride!r} must be between 1 and the window ({window}): it "
                         "is how many new tokens each window scores.")


def default_stride(window: int) -> int:
    """Half the window (512 for GPT-2's 1024): the stride of transformers'
    perplexity guide."""
    return max(1, window // 2)


def sliding_windows(num_tokens: int, window: int = 1024, stride: int = 512) -> list[Window]:
    """The windows that score every token of a stream exactly once.

    The first window covers tokens `[0, min(window, num_tokens))` and scores
    all of them but token 0 (which has no context). Each later window scores
    the next `stride` tokens (at most `window - 1`, so that its first scored
    token keeps at least one token of context) and covers the `window` tokens
    that end at its last scored token, so every token is scored with at least
    `window - stride` tokens of context, and the last window is full as well.
    Without the last-window alignment this is the stride recipe of
    transformers' "Perplexity of fixed-length models" guide.

    Args:
      num_tokens: length of the stream (>= 2).
      window: tokens per forward pass (the model's context, 1024 for GPT-2).
      stride: new tokens scored per window after the first, 1..window.

    Returns:
      A list of `Window`s in stream order.

    Example:
    >>> sliding_windows(10, window=6, stride=3)
    [Window(start=0, end=6, score_from=1), Window(start=3, end=9, score_from=6), \
Window(start=4, end=10, score_from=9)]
    """
    check_window_and_stride(window, stride)
    if num_tokens < 2:
        raise ValueError(f"A stream of {num_tokens} token(s) has nothing to score: the first "
                         "token is only context, so at least 2 tokens are needed.")
    step = min(stride, window - 1)
    end = min(window, num_tokens)
    windows = [Window(0, end, 1)]
    while end < num_tokens:
        new_end = min(end + step, num_tokens)
        windows.append(Window(max(0, new_end - window), new_end, end))
        end = new_end
    return windows


# ----------------------------------------------------------------------------
# The compiled program
# ----------------------------------------------------------------------------

_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forget_programs(model) -> None:
    """Drop `model`'s compiled scoring programs (its weights were replaced,
    e.g. by `quantize`): the next scoring call traces them again."""
    for programs in (_PROGRAMS, _CHOICE_PROGRAMS):
        programs.pop(model, None)


def _span_program(model, layout: tuple[int, int, int]):
    """The compiled program for one batch layout `(rows, row length, span
    length)`: NLL of a span of each row given the row before it.

    One tf.function per layout, each traced once: a scoring run uses one or
    two layouts (a few for continuations), and TensorFlow's retracing
    warning, meant for accidental retracing, stays quiet."""
    programs = _PROGRAMS.setdefault(model, {})
    if layout not in programs:
        programs[layout] = tf.function(_make_span_fn(model))
    return programs[layout]


def _make_span_fn(model):
    def run(ids, mask, positions, span_mask, first_token_bias):
        # ids, mask [B, T]; positions [B, L + 1]: the position before each
        # span token, then the last span token; span_mask [B, L + 1] is 1 on
        # the positions that belong to the row's span (and the one before).
        hidden, _, _ = model.forward(ids, mask, training=False)
        # The LM head (V = 50257 columns) runs only where a prediction is
        # scored, not over the context positions.
        logits = model.lm_logits(tf.gather(hidden, positions, batch_dims=1))
        targets = tf.gather(ids, positions, batch_dims=1)
        return _row_scores(logits, targets, span_mask, first_token_bias)

    return run


def _row_scores(logits, targets, mask, first_token_bias):
    """Per row: the summed NLL of `targets[:, 1:]` under `logits[:, :-1]`
    where `mask` allows, how many tokens that scored, and whether greedy
    decoding picks every scored target.

    first_token_bias [V] (0 or -inf) lets a caller rule tokens out of the
    greedy choice at the first scored position (LAMBADA's stop-word
    filter); it changes no probability."""
    nll, weight = token_nll(logits, targets, mask)
    predicted = logits[:, :-1]
    predicted = tf.concat([predicted[:, :1] + first_token_bias, predicted[:, 1:]], axis=1)
    best = tf.argmax(predicted, axis=-1, output_type=tf.int32)
    hit = tf.logical_or(tf.equal(best, targets[:, 1:]), weight == 0)
    return tf.reduce_sum(nll, axis=1), tf.reduce_sum(weight, axis=1), tf.reduce_all(hit, axis=1)


def _run_batch(model, rows: list[np.ndarray], spans: list[tuple[int, int]], row_length: int,
               span_length: int, first_token_bias: np.ndarray):
    """Score `spans[i] = (first, last + 1)` of `rows[i]` (within-row indices).

    Rows are right-padded to `row_length` so that equal layouts reuse one
    trace. The batch is never padded with dummy rows: on a CPU a dummy
    1024-token row costs as much as a real one."""
    batch_size = len(rows)
    ids = np.zeros((batch_size, row_length), np.int32)
    mask = np.zeros((batch_size, row_length), np.int32)
    positions = np.zeros((batch_size, span_length + 1), np.int32)
    span_mask = np.zeros((batch_size, span_length + 1), np.int32)
    for i, (row, (first, stop)) in enumerate(zip(rows, spans)):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
        count = stop - first
        positions[i, :count + 1] = np.arange(first - 1, stop)
        positions[i, count + 1:] = stop - 1  # clamped; masked out
        span_mask[i, :count + 1] = 1
    program = _span_program(model, (batch_size, row_length, span_length))
    nll, weight, greedy = program(
        tf.constant(ids), tf.constant(mask), tf.constant(positions), tf.constant(span_mask),
        tf.constant(first_token_bias))
    return nll.numpy().astype(np.float64), weight.numpy(), greedy.numpy()


def _as_token_array(ids, what: str) -> np.ndarray:
    if tf.is_tensor(ids):
        ids = ids.numpy()
    array = np.asarray(ids)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of token ids, got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{what} must hold integer token ids, got {array.dtype}.")
    return array.astype(np.int32)


def _check_vocab(ids: np.ndarray, vocab_size: int, what: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)][:5].tolist()
        raise ValueError(f"{what} holds ids outside the model's vocabulary [0, {vocab_size}): "
                         f"{bad}.")


def _progress(total: int, enabled: bool, unit: str):
    return keras.utils.Progbar(total, unit_name=unit) if enabled and total else None


# ----------------------------------------------------------------------------
# Token streams
# ----------------------------------------------------------------------------


def default_window_batch() -> int:
    """Windows per forward pass when none is given: 1 on a CPU, where one
    1024-token window already keeps every core busy (bench/score.py: batches
    of 1, 2 and 4 windows ran within noise of each other) and more only cost
    memory; 8 on a GPU, which needs the parallel work."""
    return 8 if tf.config.list_logical_devices("GPU") else 1


def score_tokens(model, ids, window: int | None = None, stride: int | None = None,
                 batch_size: int | None = None, progress: bool = False) -> ScoreResult:
    """Total NLL of a token stream under a causal LM, with a sliding window.

    Every token but the first is scored exactly once, given as much of the
    stream before it as the window allows (see `sliding_windows`); windows
    are scored `batch_size` at a time. To score the first token of a text
    too, start the stream with `<|endoftext|>` (id 50256), the separator
    GPT-2 saw before every document in training.

    Args:
      model: a `GPT2LMHeadModel` (anything with `forward`, `lm_logits` and
        a `config`).
      ids: 1-D token ids (list, numpy array or tensor), at least 2.
      window: tokens per forward pass; default the model's context
        (`config.n_positions`, 1024 for GPT-2).
      stride: new tokens each window after the first scores (1..window);
        every token gets at least `window - stride` tokens of context.
        Default half the window (512 for GPT-2): each token gets 512-1023
        tokens of context, for twice the cost of disjoint windows.
      batch_size: windows per forward pass; default `default_window_batch()`
        (1 on a CPU, 8 on a GPU).
      progress: show a Keras progress bar over the windows.

    Returns:
      A `ScoreResult`: `total_nll` (natural log, summed), `num_scored`
      (`len(ids) - 1`), `num_windows`.

    Example:
    >>> model = GPT2LMHeadModel.from_pretrained("gpt2-medium")
    >>> ids = [50256] + model.tokenizer.encode(text)
    >>> result = score_tokens(model, ids, stride=512)
    >>> perplexity = math.exp(result.mean_nll)
    """
    config = model.config
    window = config.n_positions if window is None else window
    stride = default_stride(window) if stride is None else stride
    check_window_and_stride(window, stride, config.n_positions)
    batch_size = default_window_batch() if batch_size is None else batch_size
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    ids = _as_token_array(ids, "ids")
    _check_vocab(ids, config.vocab_size, "ids")
    windows = sliding_windows(len(ids), window, stride)
    bar = _progress(len(windows), progress, "window")
    # The first window scores up to window - 1 tokens, the others `stride`:
    # it runs alone so the LM head runs on `stride` positions of the others.
    # Layouts: the first window, full groups, the last group; three traces.
    groups = [windows[:1]] + [windows[i:i + batch_size]
                              for i in range(1, len(windows), batch_size)]
    replicas = current_replicas()
    models = replicas.models(model)

    def work(k, slot):
        group = groups[k]
        rows = [ids[w.start:w.end] for w in group]
        spans = [(w.score_from - w.start, w.end - w.start) for w in group]
        row_length = max(len(r) for r in rows)
        span_length = max(stop - first for first, stop in spans)
        nll, weight, _ = _run_batch(models[slot], rows, spans, row_length, span_length,
                                    np.zeros([config.vocab_size], np.float32))
        return np.stack([nll, weight], axis=1)

    # Summed on the host in window order whichever replica scored a group,
    # so every layout gives the same total.
    total_nll, scored = 0.0, 0
    for _, result in replicas.map(len(groups), work):
        total_nll += float(result[:, 0].sum())
        scored += int(result[:, 1].sum())
        if bar is not None:
            bar.add(len(result))
    if scored != len(ids) - 1:  # the windows' own invariant; never expected to fire
        raise AssertionError(f"scored {scored} tokens of a {len(ids)}-token stream.")
    return ScoreResult(total_nll=total_nll, num_scored=scored, num_windows=len(windows))


# ----------------------------------------------------------------------------
# Continuations
# ----------------------------------------------------------------------------


def _round_up(value: int, multiple: int, cap: int) -> int:
    return min(cap, -(-value // multiple) * multiple)


def score_continuations(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                        window: int | None = None, batch_size: int = 8,
                        excluded_first_tokens: Sequence[int] | None = None,
                        progress: bool = False) -> list[ContinuationScore]:
    """NLL of each continuation given its context, and whether greedy
    decoding from the context would produce it.

    A context longer than the window leaves room for the continuation by
    dropping its oldest tokens. Requests are sorted by length and padded to
    a few shapes, so a run traces the scoring program only a few times.

    Args:
      model: a `GPT2LMHeadModel`.
      requests: `(context_ids, continuation_ids)` pairs; the context needs at
        least one token (use `[50256]`, `<|endoftext|>`, for none), the
        continuation at least one and fewer than the window.
      window: the most tokens per row; default the model's context.
      batch_size: rows per forward pass.
      excluded_first_tokens: token ids that greedy decoding may not pick as
        the continuation's first token (e.g. stop words); probabilities are
        unchanged.
      progress: show a Keras progress bar.

    Returns:
      One `ContinuationScore` per request, in order.

    Example:
    >>> tok = model.tokenizer
    >>> [a, b] = score_continuations(model, [
    ...     (tok.encode("The capital of France is"), tok.encode(" Paris")),
    ...     (tok.encode("The capital of France is"), tok.encode(" Rome"))])
    >>> a.logprob > b.logprob
    True
    """
    config = model.config
    window = config.n_positions if window is None else window
    check_window_and_stride(window, 1, config.n_positions)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    bias = np.zeros([config.vocab_size], np.float32)
    if excluded_first_tokens is not None and len(excluded_first_tokens):
        excluded = _as_token_array(list(excluded_first_tokens), "excluded_first_tokens")
        _check_vocab(excluded, config.vocab_size, "excluded_first_tokens")
        bias[excluded] = -np.inf

    rows, spans = [], []
    for i, (context, continuation) in enumerate(requests):
        context = _as_token_array(context, f"request {i}'s context")
        continuation = _as_token_array(continuation, f"request {i}'s continuation")
        if len(context) == 0:
            raise ValueError(f"request {i} has an empty context: give at least one token "
                             "(e.g. [50256], <|endoftext|>) for the first prediction.")
        if len(continuation) == 0:
            raise ValueError(f"request {i} has an empty continuation: nothing to score.")
        if len(continuation) >= window:
            raise ValueError(f"request {i}'s continuation has {len(continuation)} tokens; it "
                             f"must be shorter than the window ({window}).")
        context = context[-(window - len(continuation)):]
        row = np.concatenate([context, continuation])
        _check_vocab(row, config.vocab_size, f"request {i}")
        rows.append(row)
        spans.append((len(context), len(row)))

    results: list[ContinuationScore | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i]), spans[i][1] - spans[i][0]),
                   reverse=True)
    bar = _progress(len(rows), progress, "request")
    groups = [order[begin:begin + batch_size] for begin in range(0, len(order), batch_size)]
    replicas = current_replicas()
    models = replicas.models(model)

    def work(k, slot):
        group = groups[k]
        # Shapes rounded up to multiples of 64 and 8: few distinct layouts, so
        # few traces (each costs seconds on GPT-2 Medium).
        row_length = _round_up(max(len(rows[i]) for i in group), 64, window)
        span_length = _round_up(max(spans[i][1] - spans[i][0] for i in group), 8, window - 1)
        return np.stack(_run_batch(models[slot], [rows[i] for i in group],
                                   [spans[i] for i in group], row_length, span_length, bias),
                        axis=1)

    for k, result in replicas.map(len(groups), work):
        for (nll, weight, greedy), i in zip(result, groups[k]):
            results[i] = ContinuationScore(nll=float(nll), num_tokens=int(weight),
                                           greedy=bool(greedy))
        if bar is not None:
            bar.add(len(result))
    return results


# ----------------------------------------------------------------------------
# Choices: several continuations of one shared context
# ----------------------------------------------------------------------------

_CHOICE_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forget_programs(model) -> None:
    """Drop `model`'s compiled scoring programs (its weights were replaced,
    e.g. by `quantize`): the next scoring call traces them again."""
    for programs in (_PROGRAMS, _CHOICE_PROGRAMS):
        programs.pop(model, None)


def _choice_program(model, layout: tuple[int, int, int]):
    """The compiled program for `(context length, choices, choice length)`:
    the context runs once, filling a KV cache that every choice reads."""
    programs = _CHOICE_PROGRAMS.setdefault(model, {})
    if layout not in programs:
        programs[layout] = tf.function(_make_choice_fn(model))
    return programs[layout]


def _make_choice_fn(model):
    config = model.config

    def run(context, context_mask, choices, choice_mask, first_token_bias):
        # context, context_mask [1, C] (right-padded); choices, choice_mask [K, L].
        length, (count, choice_length) = context.shape[1], choices.shape
        cache = KVCache.empty(config, 1, length + choice_length, model.embeddings.compute_dtype)
        key_mask = tf.concat([context_mask, tf.zeros([1, choice_length], tf.int32)], axis=1)
        hidden, _, cache = model.forward(context, key_mask, position_ids(context_mask), cache,
                                         cache_index=0, training=False)
        real = tf.reduce_sum(context_mask)
        last = tf.gather(hidden, real - 1, axis=1)  # [1, C]: predicts each choice's first token
        cache = cache.tile(count)  # every choice reads the same context cache
        key_mask = tf.concat([tf.tile(context_mask, [count, 1]), choice_mask], axis=1)
        # Padding slots past a short choice are masked; clamp their positions
        # into the embedding table.
        choice_positions = tf.minimum(real + tf.range(choice_length), config.n_positions - 1)
        choice_positions = tf.tile(choice_positions[None], [count, 1])
        choice_hidden, _, _ = model.forward(choices, key_mask, choice_positions, cache,
                                            cache_index=length, training=False)
        # Position j's logits predict token j + 1: prepend the context's last
        # position so that token_nll's shift lines up with the choices.
        hidden = tf.concat([tf.tile(last[:, None], [count, 1, 1]), choice_hidden], axis=1)
        logits = model.lm_logits(hidden)
        targets = tf.concat([tf.zeros([count, 1], choices.dtype), choices], axis=1)
        mask = tf.concat([tf.ones([count, 1], choice_mask.dtype), choice_mask], axis=1)
        return _row_scores(logits, targets, mask, first_token_bias)

    return run


def score_choices(model, context: Sequence[int], choices: Sequence[Sequence[int]],
                  window: int | None = None) -> list[ContinuationScore]:
    """`score_continuations` for several continuations of ONE context, with
    the context run once: its keys and values are cached and shared by all
    the choices (CBT's 10 candidates after the same 20 sentences cost one
    context pass instead of ten).

    Args:
      model: a `GPT2LMHeadModel`.
      context: the shared context's token ids (at least one).
      choices: the continuations' token ids (each at least one token,
        shorter than the window).
      window: the most tokens a context plus a choice may take; default the
        model's context. A longer context keeps its most recent tokens.

    Returns:
      One `ContinuationScore` per choice, in order: the same numbers as
      `score_continuations([(context, c) for c in choices])`.

    Example:
    >>> tok = model.tokenizer
    >>> scores = score_choices(model, tok.encode("The cat sat on the"),
    ...                        [tok.encode(" mat"), tok.encode(" moon")])
    """
    config = model.config
    window = config.n_positions if window is None else window
    check_window_and_stride(window, 1, config.n_positions)
    context = _as_token_array(context, "context")
    choices = [_as_token_array(c, f"choice {i}") for i, c in enumerate(choices)]
    if len(context) == 0:
        raise ValueError("The context is empty: give at least one token (e.g. [50256], "
                         "<|endoftext|>) for the first prediction.")
    if not choices or any(len(c) == 0 for c in choices):
        raise ValueError("Give at least one choice, each of at least one token.")
    longest = max(len(c) for c in choices)
    if longest >= window:
        raise ValueError(f"A choice has {longest} tokens; choices must be shorter than the "
                         f"window ({window}).")
    context = context[-(window - longest):]
    _check_vocab(context, config.vocab_size, "context")
    for i, c in enumerate(choices):
        _check_vocab(c, config.vocab_size, f"choice {i}")
    context_length = _round_up(len(context), 64, window)
    choice_length = _round_up(longest, 8, window)
    padded_context = np.zeros((1, context_length), np.int32)
    context_mask = np.zeros((1, context_length), np.int32)
    padded_context[0, :len(context)] = context
    context_mask[0, :len(context)] = 1
    padded = np.zeros((len(choices), choice_length), np.int32)
    choice_mask = np.zeros((len(choices), choice_length), np.int32)
    for i, c in enumerate(choices):
        padded[i, :len(c)] = c
        choice_mask[i, :len(c)] = 1
    program = _choice_program(model, (context_length, len(choices), choice_length))
    nll, weight, greedy = program(
        tf.constant(padded_context), tf.constant(context_mask), tf.constant(padded),
        tf.constant(choice_mask), tf.zeros([config.vocab_size], tf.float32))
    return [ContinuationScore(nll=float(n), num_tokens=int(w), greedy=bool(g))
            for n, w, g in zip(nll.numpy().astype(np.float64), weight.numpy(), greedy.numpy())]
