"""GPT-2's pre-tokenizer as local rules over code points (docs/tokenizer.md).

OpenAI's pattern
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
only ever looks one code point to each side, so where pieces start is a
vectorised function of each unit's kind and its neighbours':

1. a piece starts at each segment start and wherever the class changes;
2. in a whitespace run followed by a non-whitespace code point, also at the
   run's last code point (`\\s+(?!\\S)` leaves it to the next piece);
3. a plain space (U+0020) directly before an L, N or O code point joins it;
4. a contraction ('s 't 're 've 'm 'll 'd, case-sensitive) is a piece of its
   own where the apostrophe opens a match: at a segment start, or after an L,
   an N, or a whitespace other than the plain space (after a plain space or
   an O the regex has already taken the apostrophe into ` ?[^\\s\\p{L}\\p{N}]+`).

Rules 1-3 depend only on (previous, current, next) kinds, so they are one
lookup in a 7**3 table; rule 4 is applied on the (few) apostrophes only.

A segment is a row, or the text between special tokens: tiktoken splits on
special tokens first, so segment edges act as the start and end of text.
"""

from __future__ import annotations

import enum
import itertools

import numpy as np
import tensorflow as tf

from tfgpt2.tokenizer import unicode_table
from tfgpt2.tokenizer.ops.tensor_utils import (any_equal, flags_at, flat_where, shift_left,
                                               shift_right)
from tfgpt2.tokenizer.unicode_table import CharClass


class Kind(enum.IntEnum):
    """What the rules see of a unit: its `CharClass`, with the plain space
    and the apostrophe told apart, and NONE for "outside the segment"."""

    NONE = 0
    L = 1
    N = 2
    O = 3
    SPACE = 4  # U+0020 only
    S_OTHER = 5  # any other \\s
    APOSTROPHE = 6  # U+0027, class O


NUM_KINDS = len(Kind)
# The class each kind stands for (NONE stands for none).
CLASS_OF_KIND = {Kind.L: CharClass.L, Kind.N: CharClass.N, Kind.O: CharClass.O,
                 Kind.APOSTROPHE: CharClass.O, Kind.SPACE: CharClass.S,
                 Kind.S_OTHER: CharClass.S}
# The kind of a non-ASCII code point of each class (the plain space and the
# apostrophe are ASCII: see ascii_kinds).
KIND_OF_CLASS = np.zeros(len(CharClass), np.int32)
for _cls, _kind in {CharClass.O: Kind.O, CharClass.L: Kind.L, CharClass.N: Kind.N,
                    CharClass.S: Kind.S_OTHER}.items():
    KIND_OF_CLASS[_cls] = _kind

_ONE_LETTER = tuple(map(ord, "stmd"))
_TWO_LETTERS = tuple((ord(a), ord(b)) for a, b in ("re", "ve", "ll"))


def ascii_kinds() -> np.ndarray:
    """int32 [128]: the kind of each ASCII byte."""
    kinds = KIND_OF_CLASS[unicode_table.classes_of(np.arange(128))]
    kinds[ord(" ")], kinds[ord("'")] = Kind.SPACE, Kind.APOSTROPHE
    return kinds.astype(np.int32)


def _rule_table() -> np.ndarray:
    """int32 [7**3]: 1 if a unit of kind `cur` between `prev` and `next`
    (NONE outside the segment) starts a piece, by rules 1-3."""
    table = np.zeros(NUM_KINDS**3, np.int32)
    for prev, cur, nxt in itertools.product(Kind, repeat=3):
        if cur == Kind.NONE:
            continue
        c, p = CLASS_OF_KIND[cur], CLASS_OF_KIND.get(prev)
        start = p is None or c != p
        if c == CharClass.S and p == CharClass.S and nxt != Kind.NONE \
                and CLASS_OF_KIND[nxt] != CharClass.S:
            start = True
        if prev == Kind.SPACE and c != CharClass.S:
            start = False
        table[(prev * NUM_KINDS + cur) * NUM_KINDS + nxt] = start
    return table


RULE_TABLE = _rule_table()


def rule_starts(prev: tf.Tensor, kind: tf.Tensor, nxt: tf.Tensor) -> tf.Tensor:
    """Rules 1-3 for units of `kind` between `prev` and `nxt` (NONE outside
    the segment): one gather from RULE_TABLE."""
    code = (prev * NUM_KINDS + kind) * NUM_KINDS + nxt
    return tf.gather(tf.constant(RULE_TABLE), code) > 0


def piece_starts(kind: tf.Tensor, seg_start: tf.Tensor, first_byte_of) -> tf.Tensor:
    """Per unit [M]: its kind and whether it starts a segment;
    `first_byte_of(unit_indices)` gives the first byte of the given units
    (only called for the units after apostrophes).
    Returns bool [M]: the unit starts a piece.

    The caller may also pass bytes as units, every byte of a multi-byte
    unit carrying its kind (see BpeGraph._pieces): apostrophes and the
    letters of contractions are ASCII, so the contraction rule is unchanged.
    """
    m = tf.size(kind)
    prev = tf.where(seg_start, Kind.NONE, shift_right(kind, 1, Kind.NONE))
    next_is_new = shift_left(seg_start, 1, True)
    nxt = tf.where(next_is_new, Kind.NONE, shift_left(kind, 1, Kind.NONE))
    start = rule_starts(prev, kind, nxt)

    # Contractions, on the apostrophes only.
    apostrophe = flat_where(tf.equal(kind, Kind.APOSTROPHE))
    before = tf.gather(prev, apostrophe)
    opens = any_equal(before, (Kind.NONE, Kind.L, Kind.N, Kind.S_OTHER))
    padded_new = tf.concat([seg_start, [True, True]], 0)
    one_in_seg = tf.logical_not(tf.gather(padded_new, apostrophe + 1))
    two_in_seg = tf.logical_and(one_in_seg, tf.logical_not(tf.gather(padded_new, apostrophe + 2)))
    n1 = tf.where(one_in_seg, first_byte_of(tf.minimum(apostrophe + 1, m - 1)), -1)
    n2 = tf.where(two_in_seg, first_byte_of(tf.minimum(apostrophe + 2, m - 1)), -1)
    one = tf.logical_and(opens, any_equal(n1, _ONE_LETTER))
    two = tf.logical_and(opens, tf.logical_or(tf.logical_or(
        tf.logical_and(tf.equal(n1, _TWO_LETTERS[0][0]), tf.equal(n2, _TWO_LETTERS[0][1])),
        tf.logical_and(tf.equal(n1, _TWO_LETTERS[1][0]), tf.equal(n2, _TWO_LETTERS[1][1]))),
        tf.logical_and(tf.equal(n1, _TWO_LETTERS[2][0]), tf.equal(n2, _TWO_LETTERS[2][1]))))
    # A contraction starts at its apostrophe, has no start inside, and the
    # unit after it starts a piece (positions past the end are dropped).
    starts_at = tf.concat([tf.boolean_mask(apostrophe, tf.logical_or(one, two)),
                           tf.boolean_mask(apostrophe + 2, one),
                           tf.boolean_mask(apostrophe + 3, two)], 0)
    no_start_at = tf.concat([tf.boolean_mask(apostrophe + 1, tf.logical_or(one, two)),
                             tf.boolean_mask(apostrophe + 2, two)], 0)
    forced = flags_at(tf.minimum(starts_at, m), m)
    cleared = flags_at(tf.minimum(no_start_at, m), m)
    return tf.logical_or(tf.logical_and(start, tf.logical_not(cleared)), forced)


def find_special(byte_values: tf.Tensor, row_start: tf.Tensor, pattern: bytes) -> tf.Tensor:
    """int32 positions where `pattern` occurs within a row, in order.

    Only positions holding the pattern's first byte are checked, so this
    costs one comparison per byte plus work per candidate. Matches of
    `<|endoftext|>` cannot overlap: its first byte occurs in it only once.
    """
    if pattern[0] in pattern[1:]:
        raise ValueError(f"special token {pattern!r} could overlap itself; unsupported")
    width = len(pattern)
    candidates = flat_where(tf.equal(byte_values, pattern[0]))
    padded_bytes = tf.concat([byte_values, tf.fill([width], -1)], 0)
    padded_row_start = tf.concat([row_start, tf.fill([width], True)], 0)
    places = candidates[:, None] + tf.range(width)[None, :]
    same_bytes = tf.equal(tf.gather(padded_bytes, places), tf.constant(list(pattern))[None, :])
    mismatches = tf.reduce_sum(tf.cast(tf.logical_not(same_bytes), tf.int32), axis=1)
    row_breaks = tf.reduce_sum(tf.cast(tf.gather(padded_row_start, places[:, 1:]), tf.int32), axis=1)
    matched = tf.logical_and(tf.equal(mismatches, 0), tf.equal(row_breaks, 0))
    return tf.boolean_mask(candidates, matched)
