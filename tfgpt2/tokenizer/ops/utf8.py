"""UTF-8 as integer tensor ops: units, code points, and `errors="replace"`.

Input is a flat int32 tensor of byte values [N] with a bool `row_start` [N]
marking where each row of the batch begins; nothing crosses a row start.

A *unit* is what Python's `bytes.decode("utf-8", "replace")` turns into one
character: a complete, valid sequence (strict table: C2..DF, E0 A0..BF,
ED 80..9F, F0 90..BF, F4 80..8F, ...), or the maximal valid prefix of an
invalid one (a lone lead or continuation byte, C0, C1, F5..FF, a truncated
sequence), which becomes one U+FFFD. Every non-continuation byte starts a
unit; a continuation byte starts one unless the valid prefix of a lead one to
three bytes before covers it.

ASCII bytes are units by themselves, so only the non-ASCII bytes are examined
(gathered into a subset); the continuation bytes a lead covers are non-ASCII
too, hence its neighbours in the subset.
"""

from __future__ import annotations

import tensorflow as tf

from tfgpt2.tokenizer.ops.tensor_utils import between, flat_where, scatter, shift_left, shift_right

INVALID = -1  # code point of an invalid unit
REPLACEMENT_UTF8 = (0xEF, 0xBF, 0xBD)  # U+FFFD


class NonAsciiUnits:
    """The UTF-8 structure of the non-ASCII bytes of `byte_values`.

    Attributes, all over the subset [K] of bytes >= 0x80:
      index: int32 position of each such byte in the input.
      unit_start: bool, the byte starts a unit.
      valid_len: int32, length of the unit it starts (valid prefix, 1..4).
      complete: bool, that unit is a whole valid character.
      code_point: int32 of a complete unit, else INVALID.
    """

    def __init__(self, byte_values: tf.Tensor, row_start: tf.Tensor):
        index = flat_where(byte_values >= 0x80)
        b = tf.gather(byte_values, index)
        starts_row = tf.gather(row_start, index)
        self.index = index

        def following(k: int) -> tf.Tensor:
            # The byte k places on, if it is non-ASCII and in the same row
            # (then it is the subset's k-th next element), else -1.
            # (Row starts at nearer places are excluded by the caller's
            # chain: byte k is only read if bytes 1..k-1 were continuations.)
            in_place = tf.equal(shift_left(index, k, -1), index + k)
            no_row_start = tf.logical_not(shift_left(starts_row, k, True))
            return tf.where(tf.logical_and(in_place, no_row_start), shift_left(b, k, -1), -1)

        b1, b2, b3 = following(1), following(2), following(3)
        need = tf.where(between(b, 0xC2, 0xDF), 2,
                        tf.where(between(b, 0xE0, 0xEF), 3,
                                 tf.where(between(b, 0xF0, 0xF4), 4, 0)))
        lo1 = tf.where(tf.equal(b, 0xE0), 0xA0, tf.where(tf.equal(b, 0xF0), 0x90, 0x80))
        hi1 = tf.where(tf.equal(b, 0xED), 0x9F, tf.where(tf.equal(b, 0xF4), 0x8F, 0xBF))
        ok1 = tf.logical_and(need >= 2, between(b1, lo1, hi1))
        ok2 = tf.logical_and(tf.logical_and(ok1, need >= 3), between(b2, 0x80, 0xBF))
        ok3 = tf.logical_and(tf.logical_and(ok2, need >= 4), between(b3, 0x80, 0xBF))
        valid_len = 1 + tf.cast(ok1, tf.int32) + tf.cast(ok2, tf.int32) + tf.cast(ok3, tf.int32)
        self.valid_len = valid_len
        self.complete = tf.equal(valid_len, need)
        covered = tf.logical_or(
            tf.logical_or(shift_right(valid_len, 1, 0) >= 2, shift_right(valid_len, 2, 0) >= 3),
            shift_right(valid_len, 3, 0) >= 4)
        self.unit_start = tf.logical_not(covered)
        c1, c2, c3 = b1 - 0x80, b2 - 0x80, b3 - 0x80
        cp = tf.where(tf.equal(need, 2), (b - 0xC0) * 64 + c1,
                      tf.where(tf.equal(need, 3), (b - 0xE0) * 4096 + c1 * 64 + c2,
                               (b - 0xF0) * 262144 + c1 * 4096 + c2 * 64 + c3))
        self.code_point = tf.where(self.complete, cp, INVALID)

    def scatter(self, values: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
        """Subset values -> [n] tensor (zeros at the ASCII positions)."""
        return scatter(values, self.index, n)


def replace_invalid(byte_values: tf.Tensor, row_start: tf.Tensor) -> tf.Tensor:
    """Replace each invalid unit by EF BF BD, exactly as Python's
    `bytes.decode("utf-8", "replace").encode("utf-8")`.

    Returns (new byte values [M], new position of each input byte's output,
    as int32 [N + 1] exclusive prefix sums), so row splits can be mapped.
    """
    n = tf.size(byte_values)
    units = NonAsciiUnits(byte_values, row_start)
    in_complete = units.scatter(tf.cast(units.complete, tf.int32), n)  # at leads
    # A byte is kept if it lies in a complete unit: its lead is itself or
    # 1..3 places back (bytes of a complete unit are consecutive in the subset).
    lead_len = units.scatter(tf.where(units.complete, units.valid_len, 0), n)
    kept = byte_values < 0x80
    for back in range(4):
        kept = tf.logical_or(kept, shift_right(lead_len, back, 0) > back)
    starts_invalid = tf.logical_and(
        units.scatter(tf.cast(units.unit_start, tf.int32), n) > 0,
        tf.logical_not(in_complete > 0))
    emit = tf.where(kept, 1, tf.where(starts_invalid, 3, 0))
    offsets = tf.concat([[0], tf.cumsum(emit)], 0)
    total = offsets[-1]
    # For every output byte: the input byte that emits it and its rank there.
    emitter = flat_where(emit > 0)
    first_out = tf.gather(offsets, emitter)
    owner = tf.cumsum(tf.math.unsorted_segment_sum(tf.ones_like(first_out), first_out, total)) - 1
    source = tf.gather(emitter, owner)
    rank = tf.range(total) - tf.gather(first_out, owner)
    replacement = tf.gather(tf.constant(REPLACEMENT_UTF8, tf.int32), tf.minimum(rank, 2))
    out = tf.where(tf.gather(emit, source) == 1, tf.gather(byte_values, source), replacement)
    return out, offsets
