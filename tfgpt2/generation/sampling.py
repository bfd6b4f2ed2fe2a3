"""Logits processors and token selection, as pure TF functions for the
compiled decode loop. The order follows transformers: repetition penalty,
then temperature, top-k, top-p, then greedy or a categorical draw.

Everything here is sort-free, because a sort is what XLA does slowly on CPU
(~7 ms for one row of 50,257 logits; `tf.math.top_k` with a small k is the
exception: XLA runs it as a native TopK call, ~0.1 ms). Philox uniforms for a
whole row are slow too (~4 ms), so the draw needs only two uniforms per row:

- top-k keeps every logit >= the k-th largest (ties at the k-th are kept, so
  more than k may be kept); the k-th largest comes from `tf.math.top_k` for
  small k, and from a bisection on the float bits for large k.
- top-p keeps token i iff the probability mass of the tokens strictly more
  likely than i is < top_p (mass taken on the softmax of the logits left
  after temperature and top-k). That is the smallest prefix of the sorted
  distribution whose mass reaches top_p, with ties at its last value kept,
  and always the most likely token(s). top_p >= 1 keeps everything.
- the draw is an inverse-CDF draw in two levels (a block of the vocabulary,
  then a token in it), so no cumulative sum runs over the whole vocabulary.
  With top-p, a token is drawn from the whole (top-k) distribution and kept
  if it lies in the nucleus, else drawn again (rejection: exact, and ~1/top_p
  draws on average); rows still rejected after `NUCLEUS_DRAWS` draws use the
  nucleus found by bisection.
- the uniforms come from a counter-based hash of (seed, row, stream) in int32
  ops that TFLite has as builtins, so a seed gives the same tokens in XLA, in
  a plain TF graph and in LiteRT, whatever the batch size around the row.

Every op here converts to TFLite builtins (bitcast, xor, right shift,
floordiv/floormod, top_k, cumsum, gather, while, cond); no bitwise_and.
"""

from __future__ import annotations

import math

import tensorflow as tf

NEG_INF = -1e9  # finite, so a row with everything filtered never yields NaN

# Up to this k, top-k's threshold comes from XLA's native TopK; above it a
# 32-step bisection (which costs the same for any k) is cheaper.
TOP_K_NATIVE_LIMIT = 256
# Draws from the top-k distribution before a row falls back to the nucleus
# found by bisection: a row leaves the fallback with probability >= top_p
# per draw, so at top_p=0.9 the fallback runs for ~1e-8 of the rows.
NUCLEUS_DRAWS = 8
_UNIFORM_BITS = 24  # float32's mantissa: every value k / 2**24 is exact


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
    vocab = logits.shape[-1]
    if k >= vocab:
        return tf.reduce_min(logits, axis=-1, keepdims=True)
    if k <= TOP_K_NATIVE_LIMIT:
        # reduce_min, not values[:, -1:]: XLA turns a slice of the last value
        # back into a full sort (~18 ms), but keeps this as its native TopK.
        return tf.reduce_min(tf.math.top_k(logits, k=k, sorted=False).values, axis=-1,
                             keepdims=True)
    keys = monotone_keys(logits)
    # The k-th largest key is the smallest t with fewer than k keys above t.
    threshold = smallest_key_with_weight_above_below(keys, tf.ones_like(logits), float(k))
    return tf.reduce_min(tf.where(keys >= threshold, logits, tf.float32.max), axis=-1,
                         keepdims=True)


def top_k_filter(logits, k: int):
    """Keep the k largest logits of each row (ties at the k-th value kept)."""
    if k >= logits.shape[-1]:
        return logits
    return tf.where(logits < top_k_threshold(logits, k), NEG_INF, logits)


def top_p_keep(logits, top_p):
    """[B, V] bool: the nucleus. Token i is kept iff the probability mass of
    the tokens with a strictly larger logit is < top_p (the most likely
    token(s) always; every token when top_p >= 1). Found by bisection on the
    float bits: the smallest logit t with mass(logits > t) < top_p."""
    masses = Categorical(logits)  # the same masses as the draw's acceptance test
    keys = monotone_keys(logits)
    threshold = smallest_key_with_weight_above_below(keys, masses.weights(), top_p * masses.total)
    return (keys >= threshold) | _keeps_everything(top_p)


def top_p_filter(logits, top_p):
    """Nucleus filter: keep the smallest set of most likely tokens whose
    probability reaches `top_p` (always at least one; ties kept)."""
    return tf.where(top_p_keep(logits, top_p), logits, NEG_INF)


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
    """The decode loop's sampler: the processors, then greedy or a draw.
    Top-p is applied inside the draw (by rejection), never as a filter."""
    processed = process_logits(logits, seen=seen, repetition_penalty=repetition_penalty,
                               do_sample=do_sample, temperature=temperature, top_k=top_k)
    return select_tokens(processed, do_sample, seed, top_p=top_p)


def select_tokens(logits, do_sample: bool, seed=None, top_p=None):
    """Greedy argmax, or one draw per row from softmax(logits), restricted to
    the nucleus when `top_p` is given. `seed` is a [2] int32 tensor."""
    if not do_sample:
        return argmax(logits)
    if top_p is None:
        return Categorical(logits).draw(seed, stream=0)
    return sample_in_nucleus(logits, seed, top_p)


def argmax(logits):
    """First index of each row's maximum, like tf.argmax, in two plain
    reductions (XLA's variadic argmax reduce is ~10x slower on CPU)."""
    largest = tf.reduce_max(logits, axis=-1, keepdims=True)
    # The clamp only matters for a NaN row, which has no index equal to its max.
    return tf.minimum(_first_index(logits == largest), logits.shape[-1] - 1)


def sample_in_nucleus(logits, seed, top_p):
    """One token per row from softmax(logits) restricted to the nucleus of
    `top_p`: draw from the whole distribution until the token is in the
    nucleus (exact; the nucleus holds mass >= top_p, so ~1/top_p draws),
    at most NUCLEUS_DRAWS times, then fall back to the bisection nucleus."""
    categorical = Categorical(logits)
    bound = top_p * categorical.total

    def in_nucleus(tokens):
        chosen = tf.gather(logits, tokens[:, None], batch_dims=1)
        mass_above = tf.reduce_sum(tf.where(logits > chosen, categorical.weights(), 0.0),
                                   axis=-1)
        return (mass_above < bound[:, 0]) | _keeps_everything(top_p)

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
        nucleus = tf.where(top_p_keep(logits, top_p), logits, NEG_INF)
        return tf.where(accepted, tokens, Categorical(nucleus).draw(seed, stream=NUCLEUS_DRAWS))

    return tf.cond(tf.reduce_all(accepted), lambda: tokens, from_nucleus)


class Categorical:
    """Inverse-CDF draws from softmax(logits) per row, in two levels: the
    vocabulary is cut into blocks of `width` tokens; a draw picks a block by
    the blocks' masses, then a token by the masses inside that block. Only
    block masses and one block's tokens are ever summed cumulatively, and
    exp(logits) is never stored: XLA fuses it into the block sums."""

    def __init__(self, logits):
        self.logits = logits
        self.vocab = logits.shape[-1]
        self.width = 1 << math.ceil(math.log2(math.sqrt(self.vocab)))
        self.largest, self.block_mass = _block_masses(logits, self.width)
        self.total = tf.reduce_sum(self.block_mass, axis=-1, keepdims=True)

    def weights(self):
        """[B, V] exp(logits - max): the unnormalised probabilities."""
        return tf.exp(self.logits - self.largest)

    def draw(self, seed, stream):
        """[B] int32 tokens; `stream` picks independent uniforms (a draw
        uses streams 2 * stream and 2 * stream + 1)."""
        rows = tf.shape(self.logits)[0]
        block = _inverse_cdf(self.block_mass, uniforms(seed, rows, 2 * stream))
        tokens = block[:, None] * self.width + tf.range(self.width)[None]
        inside = tf.gather(self.logits, tf.minimum(tokens, self.vocab - 1), batch_dims=1)
        weights = tf.where(tokens < self.vocab, tf.exp(inside - self.largest), 0.0)
        return block * self.width + _inverse_cdf(weights, uniforms(seed, rows, 2 * stream + 1))


def _block_masses(logits, width):
    """The row max [B, 1] and the masses exp(logits - max) of consecutive
    blocks of `width` tokens [B, blocks], the last one shorter if need be.
    The short block is summed apart: padding the row to whole blocks costs
    XLA a copy and makes the sum ~5x slower."""
    vocab = logits.shape[-1]
    whole = vocab // width
    largest = tf.reduce_max(logits, axis=-1, keepdims=True)
    weights = tf.exp(logits - largest)
    masses = tf.reduce_sum(tf.reshape(weights[:, :whole * width], [-1, whole, width]), axis=-1)
    if whole * width < vocab:
        rest = tf.reduce_sum(weights[:, whole * width:], axis=-1, keepdims=True)
        masses = tf.concat([masses, rest], axis=-1)
    return largest, masses


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
    """[B] index of each row's first True (the row length if none)."""
    length = mask.shape[-1]
    positions = tf.range(length, dtype=tf.int32)
    return tf.reduce_min(tf.where(mask, positions, length), axis=-1)


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
    many rows there are, so a sequence samples the same in any batch."""
    seed = tf.cast(seed, tf.int32)
    state = _mix(seed[0])
    state = _mix(tf.bitwise.bitwise_xor(state, seed[1]))
    state = _mix(tf.bitwise.bitwise_xor(state, tf.cast(stream, tf.int32)))
    state = _mix(tf.bitwise.bitwise_xor(state, tf.range(rows, dtype=tf.int32)))
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
