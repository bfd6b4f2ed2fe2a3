"""Logits processors and token selection, as pure TF functions for the
compiled decode loop. The order follows transformers: repetition penalty,
then temperature, top-k, top-p, then greedy or a categorical draw.

Everything here is sort-free, because a sort is what XLA does slowly on CPU
(~7 ms for one row of 50,257 logits; `tf.math.top_k` with a small k is the
exception: XLA runs it as a native TopK call). Philox uniforms for a whole
row are slow too (~4 ms), so a draw needs only two uniforms per row. The
rules, exactly:

- top-k keeps every logit >= the k-th largest (counting repeats): the k
  largest, and every tie of the k-th, so more than k may be kept.
- top-p keeps token i iff the probability mass of the tokens with a strictly
  larger logit is < top_p, the mass taken on the softmax of the logits left
  after temperature and top-k. That is the smallest prefix of the sorted
  distribution whose mass reaches top_p, with every tie of its last value,
  and always the most likely token(s); top_p >= 1 keeps everything.
- a draw is from softmax(logits) renormalised over the kept tokens.

How: the k-th largest comes from XLA's TopK over the k blocks of 32 tokens
with the largest maxima (which hold the k largest logits), or from a
bisection on the float bits for large k. With top-k, the draw then runs over
those candidates alone; a row whose ties at the k-th value reach outside them
draws over the vocabulary instead. A draw is an inverse CDF in two levels (a
block of tokens, then a token in it), so no cumulative sum runs over the
vocabulary. With top-p a token is drawn from the top-k distribution and kept
if it lies in the nucleus, else drawn again (rejection: exact, ~1/top_p draws
on average); rows still rejected after NUCLEUS_DRAWS draws use the nucleus
found by bisection. The uniforms come from a counter-based hash of (seed,
row, stream) in int32 ops, so a seed gives a row the same tokens in XLA, in
a plain TF graph and in LiteRT, in any batch.

Every op here is a TFLite builtin (bitcast, xor, right shift, floordiv and
floormod, top_k, cumsum, gather, while, cond): no bitwise_and, no RNG op.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import tensorflow as tf

from tfgpt2.modeling.compiled import in_xla_program
from tfgpt2.modeling.masking import MASKED_VALUE

# Up to this k, top-k uses XLA's native TopK (over candidate blocks); above
# it a 32-step bisection, which costs the same for any k, is cheaper.
TOP_K_NATIVE_LIMIT = 256
# Draws from the top-k distribution before a row falls back to the nucleus
# found by bisection: each draw lands in the nucleus with probability
# >= top_p, so at top_p = 0.9 a row falls back once in 1e8.
NUCLEUS_DRAWS = 8
_CANDIDATE_BLOCK = 32  # tokens per block when looking for the top k
_UNIFORM_BITS = 24  # float32's mantissa: every k / 2**24 is exact


# --- the sampler as one value -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sampler:
    """How a decode program picks each token: the static part, hashable, a
    field of the program key (it decides what is compiled). The values come
    with each call as `SamplingSettings`.

    `run_time=True` compiles one graph for any settings, for exported
    graphs where each request brings its own: temperature 0 is greedy,
    top_k 0 and top_p 1 are off; the other fields are then unused.
    `per_row=True` (with `run_time`) takes every setting per batch row
    (`SamplingSettings.per_row`), for servers that batch requests together.
    """

    do_sample: bool = False
    top_k: int = 0
    use_temperature: bool = False
    use_top_p: bool = False
    use_repetition_penalty: bool = False
    run_time: bool = False
    per_row: bool = False

    @classmethod
    def for_settings(cls, config) -> Sampler:
        """The sampler a `GenerationConfig` asks for: what a setting leaves
        at its neutral value is not compiled."""
        sampling = bool(config.do_sample)
        return cls(do_sample=sampling, top_k=(config.top_k or 0) if sampling else 0,
                   use_temperature=sampling and config.temperature != 1.0,
                   use_top_p=sampling and config.top_p < 1.0,
                   use_repetition_penalty=config.repetition_penalty != 1.0)

    @classmethod
    def at_run_time(cls, use_repetition_penalty: bool = False) -> Sampler:
        return cls(do_sample=True, run_time=True, use_repetition_penalty=use_repetition_penalty)

    @classmethod
    def per_request(cls) -> Sampler:
        """Every row's own settings and seed: `choose_tokens_per_row`."""
        return cls(do_sample=True, run_time=True, per_row=True)

    def choose(self, logits, settings: SamplingSettings, step, seen=None):
        """[B] int32: the token each row of `logits` [B, V] picks at decode
        step `step` (the seed advances with it); `seen` [B, V] marks the
        tokens the repetition penalty applies to."""
        seed = settings.seed + tf.stack([0, step])  # [2], or [B, 2] per row
        penalty = settings.repetition_penalty if self.use_repetition_penalty else None
        if self.per_row:
            if self.use_repetition_penalty:
                raise ValueError("The per-row sampler has no repetition penalty.")
            return choose_tokens_per_row(logits, seed, temperature=settings.temperature,
                                         top_k=settings.top_k, top_p=settings.top_p)
        if self.run_time:
            return choose_tokens_at_run_time(
                logits, seed, temperature=settings.temperature, top_k=settings.top_k,
                top_p=settings.top_p, seen=seen, repetition_penalty=penalty)
        return choose_tokens(
            logits, seed, seen=seen, repetition_penalty=penalty, do_sample=self.do_sample,
            temperature=settings.temperature if self.use_temperature else None,
            top_k=self.top_k, top_p=settings.top_p if self.use_top_p else None)


class SamplingSettings(NamedTuple):
    """The sampler's run-time values (scalars): `seed` is int32 [2]."""

    temperature: tf.Tensor
    top_k: tf.Tensor
    top_p: tf.Tensor
    repetition_penalty: tf.Tensor
    seed: tf.Tensor

    @classmethod
    def of(cls, *, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=(0, 0)
           ) -> SamplingSettings:
        """Settings as tensors of the right dtypes (values or tensors in)."""
        return cls(tf.cast(temperature, tf.float32), tf.cast(top_k, tf.int32),
                   tf.cast(top_p, tf.float32), tf.cast(repetition_penalty, tf.float32),
                   tf.cast(seed, tf.int32))

    @classmethod
    def for_settings(cls, config, seed) -> SamplingSettings:
        """The values of a `GenerationConfig`, with `seed` ([2] ints)."""
        return cls.of(temperature=config.temperature, top_k=config.top_k or 0,
                      top_p=config.top_p, repetition_penalty=config.repetition_penalty,
                      seed=seed)

    @classmethod
    def per_row(cls, *, temperature, top_k, top_p, seeds) -> SamplingSettings:
        """One value per batch row: [B] settings and [B, 2] seeds."""
        return cls(tf.cast(temperature, tf.float32), tf.cast(top_k, tf.int32),
                   tf.cast(top_p, tf.float32), tf.ones_like(temperature, tf.float32),
                   tf.cast(seeds, tf.int32))

    @classmethod
    def signature(cls, per_row: bool = False) -> SamplingSettings:
        """Scalars and a [2] seed, or (`per_row`) [B] values and [B, 2] seeds."""
        shape = [None] if per_row else []
        value = tf.TensorSpec(shape, tf.float32)
        return cls(value, tf.TensorSpec(shape, tf.int32), value, value,
                   tf.TensorSpec(shape + [2], tf.int32))


# --- processors ----------------------------------------------------------------


def apply_repetition_penalty(logits, seen, penalty):
    """CTRL's penalty (as transformers applies it): every token already in the
    sequence has its logit divided by `penalty` if positive, multiplied if
    negative. `seen` is a [B, V] bool mask."""
    penalised = tf.where(logits > 0, logits / penalty, logits * penalty)
    return tf.where(seen, penalised, logits)


def top_k_threshold(logits, k: int):
    """[B, 1]: the k-th largest logit of each row (counting repeats), so that
    `logits >= threshold` keeps the k largest and every tie of the k-th."""
    if k >= logits.shape[-1]:
        return tf.reduce_min(logits, axis=-1, keepdims=True)
    if k <= TOP_K_NATIVE_LIMIT:
        candidates = _top_k_candidates(logits, k)
        return _kth_largest(logits if candidates is None else candidates[0], k)
    keys = monotone_keys(logits)
    # The k-th largest key is the smallest t with fewer than k keys above t.
    threshold = smallest_key_with_weight_above_below(keys, tf.ones_like(logits), float(k))
    return tf.reduce_min(tf.where(keys >= threshold, logits, tf.float32.max), axis=-1,
                         keepdims=True)


def top_k_filter(logits, k: int):
    """Keep the k largest logits of each row (ties at the k-th value kept)."""
    if k >= logits.shape[-1]:
        return logits
    return tf.where(logits < top_k_threshold(logits, k), MASKED_VALUE, logits)


def top_p_keep(logits, top_p, keep=None):
    """[B, V] bool: the nucleus of the distribution softmax(logits) over
    `keep` (every token if None). Token i is in it iff the mass of the kept
    tokens with a strictly larger logit is < top_p; found by bisection on the
    float bits, as the smallest logit t with mass(logits > t) < top_p."""
    masses = Categorical(logits, keep)  # the masses the draws' nucleus test uses
    keys = monotone_keys(logits)
    threshold = smallest_key_with_weight_above_below(keys, masses.weights, top_p * masses.total)
    nucleus = (keys >= threshold) | _keeps_everything(top_p)
    return nucleus if keep is None else nucleus & keep


def top_p_filter(logits, top_p):
    """Nucleus filter: keep the smallest set of most likely tokens whose
    probability reaches `top_p` (always at least one; ties kept)."""
    return tf.where(top_p_keep(logits, top_p), logits, MASKED_VALUE)


def process_logits(logits, *, seen=None, repetition_penalty=None, do_sample=False,
                   temperature=None, top_k: int = 0, top_p=None):
    """Apply the configured processors. Static switches (`top_k`, whether a
    tensor is given) decide what is compiled; values may be tensors."""
    logits = tf.cast(logits, tf.float32)
    if repetition_penalty is not None:
        logits = apply_repetition_penalty(logits, seen, repetition_penalty)
    if not do_sample:
        return logits
    if temperature is not None:
        logits = logits / temperature
    if top_k:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


# --- selection ------------------------------------------------------------------------


def choose_tokens(logits, seed, *, seen=None, repetition_penalty=None, do_sample=False,
                  temperature=None, top_k: int = 0, top_p=None):
    """The decode loop's sampler: the same processors as `process_logits`,
    then greedy or one draw per row. `seed` is a [2] int32 tensor."""
    logits = process_logits(logits, seen=seen, repetition_penalty=repetition_penalty,
                            do_sample=do_sample, temperature=temperature)
    if not do_sample:
        return argmax(logits)
    if top_k and top_k < logits.shape[-1]:
        return sample_top_k(logits, top_k, seed, top_p)
    return sample(logits, seed, top_p)


def choose_tokens_at_run_time(logits, seed, *, temperature, top_k, top_p, seen=None,
                              repetition_penalty=None):
    """`choose_tokens` with the settings as run-time tensors, for exported
    graphs where every request brings its own: `temperature` 0 is greedy,
    `top_k` 0 (or >= the vocabulary) keeps every token, `top_p` 1 keeps the
    whole distribution. The same rules and the same RNG as `choose_tokens`;
    top-k's threshold always comes from the bisection (the candidate blocks
    need k fixed when the graph is built), so a seed's tokens may differ from
    `choose_tokens`' with k fixed, while the distribution is the same."""
    logits = tf.cast(logits, tf.float32)
    if repetition_penalty is not None:
        logits = apply_repetition_penalty(logits, seen, repetition_penalty)
    greedy = temperature <= 0.0
    scaled = logits / tf.where(greedy, 1.0, tf.cast(temperature, tf.float32))
    vocab = logits.shape[-1]
    top_k = tf.cast(top_k, tf.int32)

    def top_k_keep():
        keys = monotone_keys(scaled)
        threshold = smallest_key_with_weight_above_below(
            keys, tf.ones_like(scaled), tf.cast(top_k, tf.float32))
        return keys >= threshold

    filtering = (top_k > 0) & (top_k < vocab)
    keep = tf.cond(filtering, top_k_keep, lambda: tf.ones_like(scaled, tf.bool))
    sampled = sample(scaled, seed, tf.cast(top_p, tf.float32), keep=keep)
    return tf.where(greedy, argmax(logits), sampled)


def choose_tokens_per_row(logits, seeds, *, temperature, top_k, top_p):
    """Each row with its own settings, for a server that batches requests:
    `temperature`, `top_k`, `top_p` are [B] and `seeds` [B, 2], and a row's
    token depends on its own logits, settings and seed alone (never on its
    place in the batch), so requests batched together get what each would
    get alone. The rules are `choose_tokens_at_run_time`'s: temperature 0 is
    greedy, top_k 0 (or >= the vocabulary) and top_p 1 are off.

    Cheap when run op by op (a graph outside XLA): greedy rows only take the
    argmax, and the sampling ones are gathered apart (outside XLA); the k-th
    largest logit of a row with top_k <= TOP_K_NATIVE_LIMIT comes from one
    TopK of that many candidates, the draw runs over them, and a vocabulary
    pass checks that no tie of the k-th lies outside them (else that row
    draws over the vocabulary). Larger k take one TopK as wide as the
    largest k outside XLA, the bisection inside it."""
    logits = tf.cast(logits, tf.float32)
    greedy_tokens = argmax(logits)
    sampling = temperature > 0.0
    settings = (logits, seeds, temperature, top_k, top_p)

    def sample_rows():
        if in_xla_program():  # static shapes: every row, greedy ones masked out
            finite = tf.where(sampling, temperature, 1.0)  # no 0 division for greedy rows
            tokens = _sample_rows(logits, seeds, finite, top_k, top_p)
            return tf.where(sampling, tokens, greedy_tokens)
        rows = tf.where(sampling)[:, 0]
        tokens = _sample_rows(*(tf.gather(t, rows) for t in settings))
        return tf.tensor_scatter_nd_update(greedy_tokens, rows[:, None], tokens)

    return tf.cond(tf.reduce_any(sampling), sample_rows, lambda: greedy_tokens)


def _sample_rows(logits, seeds, temperature, top_k, top_p):
    """`choose_tokens_per_row` for rows that all sample (temperature > 0)."""
    vocab = logits.shape[-1]
    scaled = logits / temperature[:, None]
    top_p = top_p[:, None]
    filtering = (top_k > 0) & (top_k < vocab)
    count = min(TOP_K_NATIVE_LIMIT, vocab)
    narrow = filtering & (top_k <= count)
    values, tokens = _largest(scaled, count)  # sorted, largest first
    kth = tf.gather(values, tf.clip_by_value(top_k - 1, 0, count - 1)[:, None], batch_dims=1)
    threshold = tf.where(narrow[:, None], kth, -float("inf"))
    wide = filtering & ~narrow

    def with_wide_rows():
        if in_xla_program():  # static shapes: the bisection, for any k
            keys = monotone_keys(scaled)
            bound = tf.cast(top_k, tf.float32)[:, None]
            key = smallest_key_with_weight_above_below(keys, tf.ones_like(scaled), bound)
            kth_wide = tf.reduce_min(tf.where(keys >= key, scaled, tf.float32.max), axis=-1,
                                     keepdims=True)
        else:  # one TopK as wide as the widest row's k
            widest = tf.reduce_max(tf.where(wide, top_k, 1))
            largest = tf.math.top_k(scaled, k=widest, sorted=True).values
            kth_wide = tf.gather(largest, tf.clip_by_value(top_k - 1, 0, widest - 1)[:, None],
                                 batch_dims=1)
        return tf.where(wide[:, None], kth_wide, threshold)

    threshold = tf.cond(tf.reduce_any(wide), with_wide_rows, lambda: threshold)
    return _draw_from_candidates(scaled, values, tokens, threshold, seeds, top_p, eligible=narrow)


def _largest(logits, k: int):
    """(values, indices) [B, k]: each row's k largest logits, largest first,
    ties in index order. Outside XLA one TopK; inside XLA, which sorts a
    whole row slowly, a TopK over the candidate blocks (`_top_k_candidates`)."""
    candidates = _top_k_candidates(logits, k) if in_xla_program() else None
    if candidates is None:
        top = tf.math.top_k(logits, k=k, sorted=True)
        return top.values, top.indices
    values, tokens = candidates
    top = tf.math.top_k(values, k=k, sorted=True)
    return top.values, tf.gather(tokens, top.indices, batch_dims=1)


def argmax(logits):
    """First index of each row's maximum, like tf.argmax, in two plain
    reductions (XLA's variadic argmax reduce is several times slower on CPU)."""
    largest = tf.reduce_max(logits, axis=-1, keepdims=True)
    # The clamp only matters for a NaN row, which has no index equal to its max.
    return tf.minimum(_first_index(logits == largest), logits.shape[-1] - 1)


def sample(logits, seed, top_p=None, keep=None):
    """[B] tokens, one draw per row from softmax(logits) over `keep` ([B, V]
    bool; every token if None), restricted to the nucleus of `top_p`."""
    categorical = Categorical(logits, keep)
    if top_p is None:
        return categorical.draw(seed, stream=0)
    return _sample_in_nucleus(categorical, seed, top_p)


def sample_top_k(logits, k: int, seed, top_p=None):
    """Top-k (then top-p) sampling that reads the vocabulary only in cheap
    passes (block maxima, one count): the draw runs over the candidate blocks
    that hold the k largest logits. A row whose ties at the k-th value reach
    beyond them (which needs exact float ties) draws over the vocabulary; the
    choice is per row, so a row's token never depends on the other rows."""
    candidates = _top_k_candidates(logits, k)
    threshold = top_k_threshold(logits, k) if candidates is None else _kth_largest(
        candidates[0], k)
    if candidates is None:
        return sample(logits, seed, top_p, keep=logits >= threshold)
    values, tokens = candidates
    return _draw_from_candidates(logits, values, tokens, threshold, seed, top_p)


def _draw_from_candidates(logits, values, tokens, threshold, seed, top_p, eligible=None):
    """[B] tokens drawn from softmax(logits) over `logits >= threshold`,
    through the candidates (`values`, their `tokens`) wherever they hold
    every kept token; a row where they do not (ties of the threshold beyond
    them), or that is not `eligible`, draws over the vocabulary. The choice
    is per row, so a row's token never depends on the other rows."""
    # Counted in float32 (exact below 2**24): a GPU keeps int32 reductions
    # in host memory, which would copy the row there.
    kept = tf.reduce_sum(tf.cast(logits >= threshold, tf.float32), axis=-1)
    complete = tf.reduce_sum(tf.cast(values >= threshold, tf.float32), axis=-1) == kept
    if eligible is not None:
        complete &= eligible
    position = sample(values, seed, top_p, keep=values >= threshold)
    from_candidates = tf.gather(tokens, position[:, None], batch_dims=1)[:, 0]

    def rows_from_the_vocabulary():
        return tf.where(complete, from_candidates,
                        sample(logits, seed, top_p, keep=logits >= threshold))

    return tf.cond(tf.reduce_all(complete), lambda: from_candidates, rows_from_the_vocabulary)


def _sample_in_nucleus(categorical, seed, top_p):
    """Draw from the whole (kept) distribution until the token lies in the
    nucleus: exact, and the nucleus holds mass >= top_p, so ~1/top_p draws.
    Rows still outside after NUCLEUS_DRAWS draws use the bisection nucleus.
    `top_p` is a scalar, or [B, 1] per row."""
    logits, weights = categorical.logits, categorical.weights
    bound = top_p * categorical.total

    everything = tf.reshape(_keeps_everything(top_p), [-1])  # [1], or [B] per row

    def in_nucleus(tokens):
        chosen = tf.gather(logits, tokens[:, None], batch_dims=1)
        mass_above = tf.reduce_sum(tf.where(logits > chosen, weights, 0.0), axis=-1)
        return (mass_above < bound[:, 0]) | everything

    def draw(attempt, tokens, accepted):
        fresh = categorical.draw(seed, stream=attempt)
        tokens = tf.where(accepted, tokens, fresh)
        return attempt + 1, tokens, accepted | in_nucleus(fresh)

    def another_draw_needed(attempt, tokens, accepted):
        return (attempt < NUCLEUS_DRAWS) & ~tf.reduce_all(accepted)

    rows = tf.shape(logits)[0]
    _, tokens, accepted = tf.while_loop(
        another_draw_needed, draw,
        (tf.constant(0), tf.zeros([rows], tf.int32), tf.zeros([rows], tf.bool)))

    def from_nucleus():
        nucleus = top_p_keep(logits, top_p, categorical.keep)
        fallback = Categorical(logits, nucleus).draw(seed, stream=NUCLEUS_DRAWS)
        return tf.where(accepted, tokens, fallback)

    return tf.cond(tf.reduce_all(accepted), lambda: tokens, from_nucleus)


class Categorical:
    """Inverse-CDF draws from softmax(logits) over the `keep` mask, per row,
    in two levels: the tokens are cut into blocks of `width`; a draw picks a
    block by the blocks' masses, then a token by the masses inside it. Only
    block masses and one block's tokens are ever summed cumulatively."""

    def __init__(self, logits, keep=None):
        self.logits, self.keep = logits, keep
        self.vocab = logits.shape[-1]
        self.width = 1 << math.ceil(math.log2(math.sqrt(self.vocab)))
        # Dropped tokens become -inf here, whatever their logit: weight 0.
        self.kept_logits = logits if keep is None else tf.where(keep, logits, -float("inf"))
        self.largest = tf.reduce_max(self.kept_logits, axis=-1, keepdims=True)
        # Computed once: with one consumer XLA fuses it into the block sums;
        # with more (the nucleus test) it is stored once, not recomputed.
        self.weights = tf.exp(self.kept_logits - self.largest)
        self.block_mass = _block_sums(self.weights, self.width)
        self.total = tf.reduce_sum(self.block_mass, axis=-1, keepdims=True)

    def draw(self, seed, stream):
        """[B] int32 indices; `stream` picks independent uniforms (a draw
        uses streams 2 * stream and 2 * stream + 1)."""
        rows = tf.shape(self.logits)[0]
        block = _inverse_cdf(self.block_mass, uniforms(seed, rows, 2 * stream))
        tokens = block[:, None] * self.width + tf.range(self.width)[None]
        inside = tf.gather(self.kept_logits, tf.minimum(tokens, self.vocab - 1), batch_dims=1)
        weights = tf.where(tokens < self.vocab, tf.exp(inside - self.largest), 0.0)
        return block * self.width + _inverse_cdf(weights, uniforms(seed, rows, 2 * stream + 1))


def _block_sums(weights, width):
    """[B, blocks]: sums of consecutive blocks of `width`, the last one
    shorter if need be. It is summed apart: padding the row to whole blocks
    costs XLA a copy and makes the sums ~5x slower."""
    vocab = weights.shape[-1]
    whole = vocab // width
    sums = tf.reduce_sum(tf.reshape(weights[:, :whole * width], [-1, whole, width]), axis=-1)
    if whole * width < vocab:
        sums = tf.concat([sums, tf.reduce_sum(weights[:, whole * width:], axis=-1, keepdims=True)],
                         axis=-1)
    return sums


def _keeps_everything(top_p):
    """top_p >= 1 keeps every token, whatever rounding does to the masses."""
    return tf.convert_to_tensor(top_p, tf.float32) >= 1.0


def _inverse_cdf(weights, u):
    """[B] index j with weights[j] > 0 and cum[j-1] <= u * total < cum[j]
    (u in [0, 1)). Zero weights are never chosen, even where rounding in the
    cumulative sum would give them a sliver."""
    cumulative = tf.cumsum(weights, axis=-1)
    target = u[:, None] * cumulative[:, -1:]
    passed = (cumulative > target) & (weights > 0.0)
    last_positive = weights.shape[-1] - 1 - _first_index(tf.reverse(weights, [-1]) > 0.0)
    return tf.minimum(_first_index(passed), last_positive)


def _first_index(mask):
    """[B] index of each row's first True (the row length if none).
    Outside XLA the positions are float32 (exact below 2**24): a GPU keeps
    int32 reductions in host memory, which would copy the mask's row there."""
    length = mask.shape[-1]
    dtype = tf.int32 if in_xla_program() else tf.float32
    positions = tf.range(length, dtype=dtype)
    first = tf.reduce_min(tf.where(mask, positions, tf.cast(length, dtype)), axis=-1)
    return tf.cast(first, tf.int32)


# --- the k largest without a sort --------------------------------------------------------


def _kth_largest(values, k):
    # reduce_min, not values[:, -1:]: XLA turns a slice of the last value
    # back into a full sort (~18 ms), but keeps this as its native TopK.
    return tf.reduce_min(tf.math.top_k(values, k=k, sorted=False).values, axis=-1, keepdims=True)


def _top_k_candidates(logits, k):
    """(values [B, n], tokens [B, n]): the k blocks of _CANDIDATE_BLOCK
    tokens with the largest maxima, whose k largest values (with repeats) are
    the row's: a block whose max exceeds the k-th largest holds one of the
    fewer than k larger values, so every such block is among them; each other
    one holds a tie of the k-th, or they are all the blocks that reach it.
    TopK then sorts through k * 32 values instead of the vocabulary. None
    when that would not be much smaller."""
    vocab, width = logits.shape[-1], _CANDIDATE_BLOCK
    if k > TOP_K_NATIVE_LIMIT or 4 * k * width > vocab:
        return None
    whole = vocab // width
    block_max = tf.reduce_max(tf.reshape(logits[:, :whole * width], [-1, whole, width]), axis=-1)
    if whole * width < vocab:
        rest = tf.reduce_max(logits[:, whole * width:], axis=-1, keepdims=True)
        block_max = tf.concat([block_max, rest], axis=-1)
    blocks = tf.math.top_k(block_max, k=k, sorted=False).indices
    # In ascending order: TopK's own order differs between XLA, TF and
    # LiteRT, and the order decides which token a uniform lands on.
    blocks = _ascending(blocks)
    tokens = tf.reshape(blocks[:, :, None] * width + tf.range(width), [-1, k * width])
    # Past the vocabulary the clamped gather repeats the last logit: copies
    # that could lift the k-th largest. Copies of -inf never can.
    inside = tokens < vocab
    tokens = tf.minimum(tokens, vocab - 1)
    values = tf.where(inside, tf.gather(logits, tokens, batch_dims=1), -float("inf"))
    return values, tokens


def _ascending(values):
    """[B, n] distinct int32 values per row, in ascending order, without a
    sort: each value's rank is how many are smaller (n * n compares)."""
    rank = tf.reduce_sum(tf.cast(values[:, None, :] < values[:, :, None], tf.int32), axis=-1)
    at_rank = rank[:, :, None] == tf.range(values.shape[-1])
    return tf.reduce_sum(tf.where(at_rank, values[:, :, None], 0), axis=1)


# --- bisection on the float bits ----------------------------------------------------


def monotone_keys(values):
    """int32 keys ordered like the float32 values, with -0.0 and 0.0 equal:
    positive floats keep their bits; negative ones flip their magnitude bits
    (an xor: TFLite has no bitwise_and)."""
    values = tf.where(values == 0.0, tf.zeros_like(values), values)
    bits = tf.bitcast(values, tf.int32)
    return tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, 0x7FFFFFFF), bits)


def smallest_key_with_weight_above_below(keys, weights, bound):
    """[B, 1] int32: per row, the smallest t with sum(weights[keys > t]) <
    bound, for non-negative weights and bound > 0. The sum falls as t rises
    and only steps at a key, so t is one of the row's keys (or below all of
    them when the total weight is < bound). 32 halvings of the int32 range."""
    low = tf.reduce_min(keys, axis=-1, keepdims=True) - 1  # sum(weights) >= bound here
    high = tf.reduce_max(keys, axis=-1, keepdims=True)  # nothing above: 0 < bound

    def halve(step, low, high):
        # floor((low + high) / 2) without int32 overflow.
        middle = (tf.math.floordiv(low, 2) + tf.math.floordiv(high, 2)
                  + tf.math.floordiv(tf.math.floormod(low, 2) + tf.math.floormod(high, 2), 2))
        above = tf.reduce_sum(tf.where(keys > middle, weights, 0.0), axis=-1, keepdims=True)
        below_bound = above < bound
        return step + 1, tf.where(below_bound, low, middle), tf.where(below_bound, middle, high)

    _, _, high = tf.while_loop(lambda step, low, high: step < 32, halve,
                               (tf.constant(0), low, high))
    return high


# --- counter-based uniforms --------------------------------------------------------------


def uniforms(seed, rows, stream):
    """[rows] float32 uniforms in [0, 1) with 24 random bits, a pure function
    of (seed[0], seed[1], row, stream). Row r's value does not depend on how
    many rows there are, so a sequence samples the same in any batch.
    With a seed per row (`seed` [rows, 2]) the row's index does not count:
    its value depends on its own seed and the stream alone."""
    seed = tf.cast(seed, tf.int32)
    per_row = seed.shape.rank == 2
    state = _mix(seed[..., 0])
    state = _mix(tf.bitwise.bitwise_xor(state, seed[..., 1]))
    state = _mix(tf.bitwise.bitwise_xor(state, tf.cast(stream, tf.int32)))
    row = tf.zeros([rows], tf.int32) if per_row else tf.range(rows, dtype=tf.int32)
    state = _mix(tf.bitwise.bitwise_xor(state, row))
    bits = _shift_right_logical(state, 32 - _UNIFORM_BITS)
    return tf.cast(bits, tf.float32) * (1.0 / (1 << _UNIFORM_BITS))


def _mix(x):
    """A bijective 32-bit integer hash (Chris Wellons' "lowbias32"): every
    output bit depends on every input bit. int32 multiplication wraps."""
    x = tf.bitwise.bitwise_xor(x, _shift_right_logical(x, 16))
    x = x * 0x7FEB352D
    x = tf.bitwise.bitwise_xor(x, _shift_right_logical(x, 15))
    x = x * -0x7B935975  # 0x846CA68B as int32
    return tf.bitwise.bitwise_xor(x, _shift_right_logical(x, 16))


def _shift_right_logical(x, bits: int):
    """x >>> bits on int32 (tf.bitwise.right_shift is arithmetic for signed
    types; the floormod drops the copies of the sign bit)."""
    return tf.math.floormod(tf.bitwise.right_shift(x, bits), 1 << (32 - bits))
