"""BPE merge rounds over many segments of bytes at once.

A round merges, in every segment, all non-overlapping occurrences (left to
right) of the segment's lowest-rank pair. Because every merge ranks after
the merges that made its parts (tables.check_training_order), this gives
what merging one pair at a time would. Segments leave the active set as
soon as they have no mergeable pair, so later rounds touch only those still
merging. The number of rounds is the largest number of distinct merges a
segment needs, at most its length - 1: `windows.py` keeps segments short.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from tfgpt2.tokenizer import tables as bpe_tables
from tfgpt2.tokenizer.ops import perfect_hash
from tfgpt2.tokenizer.ops.tensor_utils import I32, flat_where, shift_left, shift_right

NO_RANK = bpe_tables.NO_RANK


def _every_other_of_runs(candidate: tf.Tensor) -> tf.Tensor:
    """Keep the 1st, 3rd, ... candidate of each run of consecutive candidates
    (any run length)."""
    index = tf.range(tf.size(candidate))
    run_start = tf.logical_and(candidate, tf.logical_not(shift_right(candidate, 1, False)))
    run = tf.maximum(tf.cumsum(tf.cast(run_start, I32)) - 1, 0)
    offset = index - tf.gather(flat_where(run_start), run)
    return tf.logical_and(candidate, tf.equal(tf.math.floormod(offset, 2), 0))


def _non_overlapping(candidate: tf.Tensor) -> tf.Tensor:
    """The left-to-right non-overlapping choice among candidate pairs: in a
    run of consecutive candidates (only pairs (x, x) make runs) keep the
    1st, 3rd, ...; most rounds have no run at all."""
    adjacent = tf.reduce_any(tf.logical_and(candidate[:-1], candidate[1:]))
    return tf.cond(adjacent, lambda: _every_other_of_runs(candidate), lambda: candidate)


class RoundResult(NamedTuple):
    """What one merge round leaves: the tokens still active (id, segment,
    first-byte index) and the tokens whose segment is finished."""

    tok: tf.Tensor
    seg: tf.Tensor
    index: tf.Tensor
    finished_index: tf.Tensor
    finished_ids: tf.Tensor


def merge_round(tok, seg, num_seg, index, rank, merged) -> RoundResult:
    """One BPE round over the active tokens [A] (segment `seg`, first-byte
    `index`); `rank`/`merged` per adjacent pair [A - 1] (NO_RANK: none):
    each segment's lowest-rank pair merges wherever it occurs."""
    left_seg = seg[:-1]
    rank = tf.where(tf.equal(left_seg, seg[1:]), rank, NO_RANK)
    best = tf.math.unsorted_segment_min(rank, left_seg, num_seg)
    candidate = tf.logical_and(tf.equal(rank, tf.gather(best, left_seg)), rank < NO_RANK)
    chosen = _non_overlapping(candidate)
    tok = tf.concat([tf.where(chosen, merged, tok[:-1]), tok[-1:]], 0)
    absorbed = tf.concat([[False], chosen], 0)[: tf.size(tok)]
    # best is the int32 maximum (= NO_RANK) for segments with no pair at all.
    active = tf.gather(best < NO_RANK, seg)
    finished = flat_where(tf.logical_not(active))
    keep = flat_where(tf.logical_and(active, tf.logical_not(absorbed)))
    return RoundResult(tf.gather(tok, keep), tf.gather(seg, keep), tf.gather(index, keep),
                       tf.gather(index, finished), tf.gather(tok, finished))


class Merger:
    """BPE of segments of bytes: `merger(b, seg_start) -> (index, ids)`.

    b: int32 bytes [M]; seg_start: bool [M], True at each segment's first
    byte (b[0] must start one). Returns every resulting token as the index
    in `b` of its first byte and its id, in no particular order.

    In a graph it is one nested tf.function, traced once however often it
    is called; run eagerly it runs its ops directly (nothing to trace).
    """

    def __init__(self, byte_ids: tf.Tensor, byte_pair: tf.Tensor, pairs: perfect_hash.Probe):
        self.byte_ids, self.byte_pair, self.pairs = byte_ids, byte_pair, pairs
        vector = tf.TensorSpec([None], tf.int32)
        self._graph = tf.function(self.merge, autograph=False,
                                  input_signature=[vector, tf.TensorSpec([None], tf.bool)])

    def __call__(self, b: tf.Tensor, seg_start: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if tf.executing_eagerly():
            return self.merge(b, seg_start)
        return self._graph(b, seg_start)

    def merge(self, b: tf.Tensor, seg_start: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Single-byte segments (e.g. in whitespace runs) are done already.
        single = tf.logical_and(seg_start, shift_left(seg_start, 1, True))
        single_index = flat_where(single)
        multi_index = flat_where(tf.logical_not(single))
        multi = tf.gather(b, multi_index)
        seg_start = tf.gather(seg_start, multi_index)
        seg = tf.cumsum(tf.cast(seg_start, I32)) - 1
        num_seg = tf.reduce_sum(tf.cast(seg_start, I32))

        # Round 1 on raw bytes: the dense byte-pair table. Tokens are tracked
        # by `index`, the position of their first byte in b.
        pair = tf.gather(self.byte_pair, multi[:-1] * 256 + multi[1:])
        first = merge_round(tf.gather(self.byte_ids, multi), seg, num_seg, multi_index,
                            pair[:, 0], pair[:, 1])
        # (The loop accumulates only what later rounds finish: less to copy.)
        done_index, done_ids = tf.zeros([0], I32), tf.zeros([0], I32)

        def body(tok, seg, index, done_index, done_ids):
            found, value = self.pairs.lookup([tok[:-1], tok[1:]])
            rank = tf.where(found, value[:, 0], NO_RANK)
            r = merge_round(tok, seg, num_seg, index, rank, value[:, 1])
            return (r.tok, r.seg, r.index, tf.concat([done_index, r.finished_index], 0),
                    tf.concat([done_ids, r.finished_ids], 0))

        vector = tf.TensorShape([None])
        *_, done_index, done_ids = tf.while_loop(
            lambda tok, *_: tf.size(tok) > 0, body,
            (first.tok, first.seg, first.index, done_index, done_ids),
            shape_invariants=(vector,) * 5)
        single_ids = tf.gather(self.byte_ids, tf.gather(b, single_index))
        return (tf.concat([single_index, first.finished_index, done_index], 0),
                tf.concat([single_ids, first.finished_ids, done_ids], 0))
