"""Exact BPE of long segments with a bounded number of merge rounds.

Merging one rank per segment per round (merge.py) needs a round per
distinct merge a segment uses: 100k random digits are one segment needing
~1000 rounds over the whole run. Long segments (> LONG bytes) instead:

1. are cut every WINDOW bytes; each window extends HALO bytes past its
   cuts and is merged exactly on its own (rounds bounded by its length);
2. around each cut, the two windows are stitched where both have a token
   boundary (the one nearest the cut), and the pair across each stitch is
   checked;
3. where a cut fails (no common boundary, or the pair does not check), the
   windows on both sides are joined into one and stitched again; a segment
   with a cut failing again is merged whole, as before (never seen on the
   test families, but it keeps the result exact whatever the input).

Why checking pairs makes this exact (docs/tokenizer.md, "Long pieces"): a
token sequence is the BPE of its bytes if and only if every adjacent pair
is the BPE of the pair's bytes ("compatible" pairs), and any run of
consecutive tokens of a BPE result is the BPE of its own bytes. A pair is
checked by merging its bytes exactly (a few bytes, so a few rounds): they
must come back as the same two tokens.

Periodic stretches ("0000...", "ababab...") need care in windows: a run of
one repeated token is merged left to right, so where it starts decides all
of it, and a window starting inside it may pair it from the wrong end,
never agreeing with its neighbour until the stretch ends. So a cut is
placed where no such stretch (period up to `tie_period`, the longest period
of a token that merges with itself) reaches the last TAIL bytes of its zone
(HALO bytes either side): any stretch the two windows see in the zone then
ends before it does, and they agree again after it. Where there is no such
place, windows grow; a stretch costs few rounds.
"""

from __future__ import annotations

import tensorflow as tf

from tfgpt2.tokenizer.ops.merge import Merger
from tfgpt2.tokenizer.ops.tensor_utils import (I32, exclusive_cumsum, flags_at, flat_where,
                                               lazy_cond, ragged_range, scatter)

# Chosen by measuring rounds x tokens on random digits and letters, and
# stitch failures on the test families (tests/tokenizer/test_tokenizer_long.py).
WINDOW = 32  # bytes between cuts
HALO = 8  # bytes a window extends past each cut
TAIL = 8  # last bytes of a cut's zone that must be free of periodic stretches
STRETCH = 8  # a stretch: STRETCH + p bytes repeating with a period p
MAX_TIE_PERIOD = 16  # periods looked for (GPT-2 needs 6); more only costs retries
LONG = WINDOW + 2 * HALO  # segments longer than this take the bounded path


def _segment_bounds(seg_start: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    start = flat_where(seg_start)
    return start, tf.concat([start[1:], [tf.size(seg_start)]], 0) - start


def _merge_ranges(merger: Merger, b, start, length):
    """Merge the given ranges of b as segments -> (token positions in b, ids)."""
    pos, _, first = ragged_range(start, length)
    index, ids = merger(tf.gather(b, pos), first)
    return tf.gather(pos, index), ids


class WindowedBpe:
    """`windowed(b, seg_start, tail) -> (index, ids)`, the contract of
    `Merger`, with long segments (all in b[tail:]) merged in windows."""

    def __init__(self, exact: Merger, token_lengths: tf.Tensor, tie_period: int):
        self.exact = exact
        self.token_lengths = token_lengths  # int32 [V]
        self.tie_period = min(max(1, int(tie_period)), MAX_TIE_PERIOD)

    def __call__(self, b: tf.Tensor, seg_start: tf.Tensor, tail: tf.Tensor):
        """Long segments can only lie in b[tail:] (where long pieces are):
        normal text pays for the check on those bytes only."""
        start, length = _segment_bounds(seg_start[tail:])
        start = start + tail
        is_long = length > LONG
        in_long = tf.gather(is_long, tf.cumsum(tf.cast(seg_start[tail:], I32)) - 1)
        # Long segments' bytes go through the exact merge as single bytes
        # (no work) and are replaced by their windowed result.
        index, ids = self.exact(b, tf.concat([seg_start[:tail],
                                              tf.logical_or(seg_start[tail:], in_long)], 0))

        def with_long():
            keep = tf.logical_not(tf.gather(tf.concat([tf.zeros_like(seg_start[:tail]), in_long],
                                                      0), index))
            long_pos, long_ids = self._with_windows(b, tf.boolean_mask(start, is_long),
                                                    tf.boolean_mask(length, is_long))
            return (tf.concat([tf.boolean_mask(index, keep), long_pos], 0),
                    tf.concat([tf.boolean_mask(ids, keep), long_ids], 0))

        return lazy_cond(tf.reduce_any(is_long), with_long, lambda: (index, ids))

    def _owner(self, b, long_start):
        """int32 [n]: index of the long segment at or before each position."""
        return tf.cumsum(tf.cast(flags_at(long_start, tf.size(b)), I32)) - 1

    def _compatible(self, b, left_start, right_end, left_id):
        """bool per pair: bytes b[left_start:right_end], two tokens with the
        first `left_id`, merge exactly back into those two tokens."""
        pair_pos, pair_offsets, pair_first = ragged_range(left_start, right_end - left_start)
        index, ids = self.exact(tf.gather(b, pair_pos), pair_first)
        pair_of = tf.gather(tf.cumsum(tf.cast(pair_first, I32)) - 1, index)
        num_pairs = tf.size(left_start)
        count = tf.math.unsorted_segment_sum(tf.ones_like(pair_of), pair_of, num_pairs)
        leads = tf.equal(index, tf.gather(pair_offsets, pair_of))
        lead_id = scatter(tf.where(leads, ids + 1, 0), pair_of, num_pairs) - 1
        return tf.logical_and(tf.equal(count, 2), tf.equal(lead_id, left_id))

    # -- windows ----------------------------------------------------------------

    def _with_windows(self, b, long_start, long_len):
        """Windows, the retry and the last resort for the long segments of b."""
        cuts = self._cuts(b, long_start, long_len)
        # No cut at all (a dash line, a run of one byte): nothing to stitch.
        return lazy_cond(tf.size(cuts) > 0,
                         lambda: self._stitched_windows(b, long_start, long_len, cuts),
                         lambda: _merge_ranges(self.exact, b, long_start, long_len))

    def _stitched_windows(self, b, long_start, long_len, cuts):
        n = tf.size(b)
        # Windows, each named by its left end: a segment start or a cut.
        left = flat_where(tf.logical_or(flags_at(long_start, n), flags_at(cuts, n)))
        owner = tf.gather(self._owner(b, long_start), left)
        owner_start = tf.gather(long_start, owner)
        owner_end = owner_start + tf.gather(long_len, owner)
        right = tf.minimum(tf.concat([left[1:], [n]], 0), owner_end)
        w_start = tf.maximum(owner_start, left - HALO)
        w_end = tf.minimum(owner_end, right + HALO)
        pos, ids, window = self._merge_windows(b, w_start, w_end)
        stitched = self._stitch(b, long_start, long_len, left, pos, ids, window)

        def retry():
            """Join the windows on both sides of each failed cut and stitch
            again; only joined windows are merged again."""
            failed_cut = stitched[2]
            group = tf.cumsum(tf.cast(tf.logical_not(failed_cut), I32)) - 1
            groups = tf.reduce_max(group) + 1
            g_start = tf.math.unsorted_segment_min(w_start, group, groups)
            g_end = tf.math.unsorted_segment_max(w_end, group, groups)
            joined = tf.math.unsorted_segment_sum(tf.ones_like(group), group, groups) > 1
            token_group = tf.gather(group, window)
            reuse = tf.logical_not(tf.gather(joined, token_group))
            new_pos, new_ids, new_window = self._merge_windows(
                b, tf.boolean_mask(g_start, joined), tf.boolean_mask(g_end, joined))
            return self._stitch(
                b, long_start, long_len, tf.boolean_mask(left, tf.logical_not(failed_cut)),
                tf.concat([tf.boolean_mask(pos, reuse), new_pos], 0),
                tf.concat([tf.boolean_mask(ids, reuse), new_ids], 0),
                tf.concat([tf.boolean_mask(token_group, reuse),
                           tf.gather(flat_where(joined), new_window)], 0))

        kept_pos, kept_ids, _, failed = lazy_cond(tf.reduce_any(stitched[2]), retry,
                                                  lambda: stitched)
        good = tf.logical_not(tf.gather(failed, tf.gather(self._owner(b, long_start), kept_pos)))
        kept_pos, kept_ids = tf.boolean_mask(kept_pos, good), tf.boolean_mask(kept_ids, good)

        def whole():
            more_pos, more_ids = _merge_ranges(self.exact, b, tf.boolean_mask(long_start, failed),
                                               tf.boolean_mask(long_len, failed))
            return tf.concat([kept_pos, more_pos], 0), tf.concat([kept_ids, more_ids], 0)

        return lazy_cond(tf.reduce_any(failed), whole, lambda: (kept_pos, kept_ids))

    def _merge_windows(self, b, w_start, w_end):
        """Exact BPE of each window -> (positions in b, ids, window index)."""
        pos, _, first = ragged_range(w_start, w_end - w_start)
        index, ids = self.exact(tf.gather(b, pos), first)
        return tf.gather(pos, index), ids, tf.gather(tf.cumsum(tf.cast(first, I32)) - 1, index)

    def _stitch(self, b, long_start, long_len, left, pos, ids, window):
        """Stitch window encodings (tokens at `pos` with `ids` of window
        `window`; windows named by their left ends `left`, sorted) ->
        (kept positions, kept ids, bool per window: its left cut failed,
        bool per segment: some cut failed)."""
        n = tf.size(b)
        owner = tf.gather(self._owner(b, long_start), left)
        owner_start = tf.gather(long_start, owner)
        owner_end = owner_start + tf.gather(long_len, owner)
        num_windows = tf.size(left)
        has_left_cut = left > owner_start
        following = tf.minimum(tf.range(num_windows) + 1, num_windows - 1)
        has_right_cut = tf.logical_and(tf.range(num_windows) + 1 < num_windows,
                                       tf.gather(left, following) < owner_end)

        # Per window with a left cut: the common boundary of it and the
        # window before it, nearest to the cut, in the zone around the cut.
        zone = 2 * HALO
        as_right = pos - (tf.gather(left, window) - HALO)
        in_right = tf.logical_and(tf.gather(has_left_cut, window),
                                  tf.logical_and(as_right >= 0, as_right < zone))
        next_window = tf.gather(following, window)
        as_left = pos - (tf.gather(left, next_window) - HALO)
        in_left = tf.logical_and(tf.gather(has_right_cut, window),
                                 tf.logical_and(as_left >= 0, as_left < zone))
        size = num_windows * zone
        from_right = flags_at(tf.where(in_right, window * zone + as_right, size), size)
        from_left = flags_at(tf.where(in_left, next_window * zone + as_left, size), size)
        common = tf.reshape(tf.logical_and(from_right, from_left), [num_windows, zone])
        closeness = zone - tf.abs(tf.range(zone) - HALO)  # > 0 everywhere
        score = tf.where(common, closeness[None, :], 0)
        found = tf.logical_or(tf.reduce_max(score, axis=1) > 0, tf.logical_not(has_left_cut))
        stitch = tf.where(has_left_cut,
                          left - HALO + tf.argmax(score, axis=1, output_type=I32), owner_start)
        stitch_after = tf.where(has_right_cut, tf.gather(stitch, following), owner_end)

        # Each window contributes its tokens from its stitch to the next.
        keep = tf.logical_and(pos >= tf.gather(stitch, window),
                              pos < tf.gather(stitch_after, window))
        kept_pos, kept_ids = tf.boolean_mask(pos, keep), tf.boolean_mask(ids, keep)

        # Check the pair across each stitch. (Where a cut failed, windows may
        # overlap and `at` hold sums of ids: clamped so that the check stays
        # in bounds; such results are not used.)
        at = scatter(kept_ids + 1, kept_pos, n)
        starts = flat_where(at > 0)
        rank_of = scatter(tf.range(tf.size(starts)), starts, n)
        checked = flat_where(tf.logical_and(has_left_cut, found))
        q = tf.gather(stitch, checked)
        prev_start = tf.gather(starts, tf.maximum(tf.gather(rank_of, q) - 1, 0))
        right_id = tf.clip_by_value(tf.gather(at, q) - 1, 0, tf.size(self.token_lengths) - 1)
        right_end = tf.minimum(q + tf.maximum(tf.gather(self.token_lengths, right_id), 1), n)
        compatible = self._compatible(b, prev_start, right_end, tf.gather(at, prev_start) - 1)
        failed_cut = tf.logical_or(
            tf.logical_not(found),
            scatter(tf.cast(tf.logical_not(compatible), I32), checked, num_windows) > 0)
        failed = tf.math.unsorted_segment_max(tf.cast(failed_cut, I32), owner,
                                              tf.size(long_start)) > 0
        return kept_pos, kept_ids, failed_cut, failed

    def _in_stretch(self, b):
        """bool [n]: the byte lies in a periodic stretch: STRETCH + p bytes or
        more that repeat with a period p <= tie_period."""
        n = tf.size(b)
        position = tf.range(n)
        member = tf.zeros_like(b) > 0
        for period in range(1, self.tie_period + 1):
            same = exclusive_cumsum(tf.cast(tf.equal(b[period:], b[:-period]), I32))
            full = tf.cast(tf.equal(same[STRETCH:] - same[:-STRETCH], STRETCH), I32)
            starts = exclusive_cumsum(full)  # full[j]: b[j : j + STRETCH + period] repeats
            last = tf.size(full)
            hi = tf.clip_by_value(position + 1, 0, last)
            lo = tf.clip_by_value(position - STRETCH - period + 1, 0, last)
            member = tf.logical_or(member, tf.gather(starts, hi) > tf.gather(starts, lo))
        return member

    def _cuts(self, b, long_start, long_len):
        """Where long segments are cut: near every WINDOW-th byte, at the
        first position from there whose zone ends in TAIL bytes free of
        periodic stretches; no cut if there is none within WINDOW // 2."""
        # Work on the long segments' bytes only, laid end to end (`local`
        # positions): a stretch across two of them only costs a cut.
        pos, offsets, _ = ragged_range(long_start, long_len)
        n = tf.size(pos)
        count = (long_len - HALO) // WINDOW  # >= 1 as long_len > LONG
        k, _, first = ragged_range(tf.zeros_like(count), count)
        owner = tf.cumsum(tf.cast(first, I32)) - 1
        seg_local = tf.gather(offsets, owner)
        seg_end = tf.gather(offsets[1:], owner)
        grid = seg_local + (k + 1) * WINDOW
        stretch = exclusive_cumsum(tf.cast(self._in_stretch(tf.gather(b, pos)), I32))
        tail_end = tf.minimum(tf.range(n) + HALO, n)
        tail_start = tf.maximum(tail_end - TAIL, 0)
        clean = flat_where(tf.equal(tf.gather(stretch, tail_end), tf.gather(stretch, tail_start)))
        before = exclusive_cumsum(tf.cast(flags_at(clean, n), I32))
        pick = tf.gather(before, grid)  # index in `clean` of the first clean position >= grid
        cut = tf.gather(tf.concat([clean, [n]], 0), pick)
        usable = tf.logical_and(cut < grid + WINDOW // 2, cut + HALO <= seg_end)
        cut = tf.boolean_mask(cut, usable)
        return tf.gather(pos, cut)  # back to positions in b
