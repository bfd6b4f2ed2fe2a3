"""The integer graph core: UTF-8 bytes -> GPT-2 ids, and ids -> bytes.

Everything is a function of int32 tensors built from TF ops that LiteRT runs
as builtins (no strings, no bitwise_and, no int64). A batch is a flat byte
tensor [N] with row splits [B + 1]; nothing crosses a row boundary.

Encoding, all rows and pieces at once:
1. UTF-8 units and their code points (utf8_ops), classes by table lookup.
2. Piece starts by the pre-tokenizer's local rules (pretokenize_ops); a
   special token, if enabled, is a piece of its own and a segment boundary.
3. Pieces that are themselves tokens: one perfect-hash probe each.
4. The rest: split where no merge can cross (a byte bigram inside no token),
   then BPE rounds over all sub-pieces at once (merge.py); long sub-pieces
   go through windows of bounded length, stitched exactly (windows.py).
5. Tokens are put in text order: pieces are in order and each yields one
   token or the BPE tokens of its bytes, so offsets per piece suffice.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from tfgpt2.tokenizer import tables as bpe_tables, unicode_table
from tfgpt2.tokenizer.ops import (merge as merge_ops, perfect_hash, pretokenize as pretokenize_ops,
                                  utf8 as utf8_ops, windows as window_ops)
from tfgpt2.tokenizer.ops.pretokenize import Kind
from tfgpt2.tokenizer.ops.tensor_utils import (I32 as _I32, exclusive_cumsum, flags_at,
                                               flat_where, ragged_range, scatter, shift_right)


def _scoped(name: str):
    """Run a graph-building method under a name scope (readable profiles)."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with tf.name_scope(name):
                return fn(*args, **kwargs)
        return wrapper
    return decorate


class BpeGraph:
    """TF constants for a BpeTables and the encode / decode graph functions."""

    def __init__(self, tables: bpe_tables.BpeTables):
        self.vocab_size = tables.vocab_size
        self.special_ids = dict(tables.special_ids)
        self.byte_ids = tf.constant(tables.byte_ids)
        self.byte_pair = tf.constant(tables.byte_pair)
        self.pairs = perfect_hash.Probe(tables.pairs)
        lengths = tables.token_offsets[1:] - tables.token_offsets[:-1]
        self.merger = merge_ops.Merger(self.byte_ids, self.byte_pair, self.pairs)
        self.windowed = window_ops.WindowedBpe(self.merger, tf.constant(lengths),
                                               tables.tie_period)
        self.pieces = perfect_hash.Probe(tables.pieces)
        self.bigram_in_vocab = tf.constant(tables.bigram_in_vocab)
        self.token_offsets = tf.constant(tables.token_offsets)
        self.token_bytes = tf.constant(tables.token_bytes)
        self.unicode_block_rows = tf.constant(tables.unicode_block_rows)
        self.unicode_rows = tf.constant(tables.unicode_rows)
        self.ascii_kinds = tf.constant(tables.ascii_kinds)
        self.kind_of_class = tf.constant(pretokenize_ops.KIND_OF_CLASS)

    # ------------------------------------------------------------------ encode

    @_scoped("segments")
    def _segments(self, byte_values, row_splits, special_tokens):
        """Row starts, segment starts, and the special tokens found: a list of
        (positions, id), and bool [N] marking their bytes after the first."""
        n = tf.size(byte_values)
        row_start = flags_at(row_splits[:-1], n)
        seg_start, inside, found_all = row_start, None, []
        if special_tokens:
            inner = []
            for pattern, token_id in self.special_ids.items():
                found = pretokenize_ops.find_special(byte_values, row_start, pattern)
                found_all.append((found, token_id))
                seg_start = tf.logical_or(seg_start, tf.logical_or(
                    flags_at(found, n), flags_at(found + len(pattern), n)))
                inner.append(tf.reshape(found[:, None] + tf.range(1, len(pattern))[None, :], [-1]))
            inside = flags_at(tf.concat(inner, 0), n) if inner else None
        return row_start, seg_start, found_all, inside

    def piece_starts(self, byte_values: tf.Tensor, row_splits: tf.Tensor,
                     special_tokens: bool) -> tf.Tensor:
        """int32 [P]: byte positions where pre-tokenizer pieces start."""
        row_start, seg_start, _, inside = self._segments(byte_values, row_splits, special_tokens)
        return self._pieces(byte_values, row_start, seg_start, inside)

    def encode(self, byte_values: tf.Tensor, row_splits: tf.Tensor,
               special_tokens: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """byte_values int32 [N] (0..255), row_splits int32 [B + 1] ->
        (ids int32 [T], id_row_splits int32 [B + 1])."""
        n = tf.size(byte_values)
        row_start, seg_start, specials, inside = self._segments(
            byte_values, row_splits, special_tokens)
        piece_pos = self._pieces(byte_values, row_start, seg_start, inside)
        piece_len = tf.concat([piece_pos[1:], [n]], 0) - piece_pos

        # Each piece is a special token, a whole token, or goes to BPE.
        piece_id, known = self._whole_tokens(byte_values, piece_pos, piece_len)
        if specials:
            is_special = tf.zeros_like(piece_pos)
            for found, token_id in specials:
                marks = scatter(tf.fill(tf.shape(found), token_id + 1), found, n)
                is_special = is_special + tf.gather(marks, piece_pos)
            known = tf.logical_or(known, is_special > 0)
            piece_id = tf.where(is_special > 0, is_special - 1, piece_id)
        # Pieces long enough to hold a long segment go last (see _bpe).
        long_piece = piece_len > window_ops.LONG
        bpe_piece = tf.concat([flat_where(tf.logical_and(tf.logical_not(known),
                                                         tf.logical_not(long_piece))),
                               flat_where(tf.logical_and(tf.logical_not(known), long_piece))], 0)
        bpe_ids, bpe_counts = self._bpe(byte_values, tf.gather(piece_pos, bpe_piece),
                                        tf.gather(piece_len, bpe_piece))
        return self._assemble(row_start, row_splits, piece_pos, piece_id, bpe_piece,
                              bpe_ids, bpe_counts)

    @_scoped("assemble")
    def _assemble(self, row_start, row_splits, piece_pos, piece_id, bpe_piece, bpe_ids,
                  bpe_counts):
        """Ids in text order and their row splits from the per-piece results."""
        num_pieces = tf.size(piece_pos)
        counts = tf.ones_like(piece_pos) + scatter(bpe_counts - 1, bpe_piece, num_pieces)
        offsets = exclusive_cumsum(counts)  # first output index of each piece
        total = offsets[-1]
        # BPE tokens come grouped by piece, in order: shift each group by one
        # step per non-BPE piece before it (a cumsum of the per-group jumps).
        bpe_offsets = exclusive_cumsum(bpe_counts)[:-1]
        shift = tf.gather(offsets, bpe_piece) - bpe_offsets
        jumps = scatter(shift - tf.concat([[0], shift[:-1]], 0), bpe_offsets, tf.size(bpe_ids))
        bpe_index = tf.range(tf.size(bpe_ids)) + tf.cumsum(jumps)
        single = flat_where(tf.logical_not(flags_at(bpe_piece, num_pieces)))
        index = tf.concat([tf.gather(offsets, single), bpe_index], 0)
        ids = scatter(tf.concat([tf.gather(piece_id, single), bpe_ids], 0), index, total)
        # Row r starts at its first piece; an empty row where the next one does.
        first_piece = flat_where(tf.gather(row_start, piece_pos))
        nonempty = tf.cast(row_splits[1:] > row_splits[:-1], _I32)
        starts = tf.concat([tf.gather(offsets, first_piece), [total]], 0)
        return ids, tf.gather(starts, exclusive_cumsum(nonempty))

    @_scoped("classes")
    def _kinds(self, code_points: tf.Tensor) -> tf.Tensor:
        """Pre-tokenizer kind of (non-ASCII) code points; INVALID -> O."""
        cp = tf.maximum(code_points, 0)
        row = tf.gather(self.unicode_block_rows, tf.math.floordiv(cp, unicode_table.BLOCK))
        cls = tf.gather(self.unicode_rows, row * unicode_table.BLOCK
                        + tf.math.floormod(cp, unicode_table.BLOCK))
        return tf.where(code_points < 0, Kind.O, tf.gather(self.kind_of_class, cls))

    @_scoped("pieces")
    def _pieces(self, byte_values, row_start, seg_start, inside) -> tf.Tensor:
        """int32 [P]: the byte position where each piece starts.

        The rules run on bytes, not on compacted units: every byte of a
        multi-byte unit carries the unit's kind, so a unit's previous unit
        is always the byte before it, and its next unit the byte after it
        unless it is multi-byte itself. That only matters for the rule
        looking ahead from whitespace, so multi-byte whitespace units (rare:
        U+00A0, U+3000, ...) are redone with their true next unit."""
        n = tf.size(byte_values)
        units = utf8_ops.NonAsciiUnits(byte_values, row_start)
        ascii = byte_values < 0x80
        unit_start = tf.logical_or(ascii, units.scatter(tf.cast(units.unit_start, _I32), n) > 0)
        lead_kind = self._kinds(units.code_point)
        # Continuation bytes take the kind of their unit's first byte, the
        # nearest unit start 1 to 3 places back in the subset.
        sub_kind = shift_right(lead_kind, 3, Kind.O)
        for back in (2, 1, 0):
            sub_kind = tf.where(shift_right(units.unit_start, back, True),
                                shift_right(lead_kind, back, Kind.O), sub_kind)
        kind = tf.where(ascii, tf.gather(self.ascii_kinds, tf.minimum(byte_values, 127)),
                        units.scatter(sub_kind, n))
        starts = pretokenize_ops.piece_starts(
            kind, seg_start, lambda positions: tf.gather(byte_values, positions))
        starts = tf.logical_and(starts, unit_start)

        # Multi-byte whitespace: the rule again, with the unit after it.
        wide_space = tf.logical_and(tf.equal(lead_kind, Kind.S_OTHER),
                                    tf.logical_and(units.unit_start, units.complete))
        at = tf.boolean_mask(units.index, wide_space)
        after = at + tf.boolean_mask(units.valid_len, wide_space)
        padded_kind = tf.concat([kind, [Kind.NONE]], 0)
        padded_new = tf.concat([seg_start, [True]], 0)
        nxt = tf.where(tf.gather(padded_new, after), Kind.NONE,
                       tf.gather(padded_kind, after))
        prev = tf.where(tf.gather(seg_start, at), Kind.NONE,
                        tf.gather(padded_kind, tf.maximum(at - 1, 0)))
        redone = pretokenize_ops.rule_starts(prev, tf.gather(kind, at), nxt)
        fixed = tf.math.unsorted_segment_max(tf.ones_like(at), at, n) > 0
        starts = tf.where(fixed, scatter(tf.cast(redone, _I32), at, n) > 0, starts)
        if inside is not None:
            starts = tf.logical_and(starts, tf.logical_not(inside))
        return flat_where(starts)

    @_scoped("whole_tokens")
    def _whole_tokens(self, byte_values, piece_pos, piece_len):
        """(id [P], found bool [P]) for pieces that are one token.

        The key of a piece is its length and its first PIECE_BYTES bytes,
        packed three per int (zeros past its end): exact, so the hash probe
        is exact too."""
        width = bpe_tables.PIECE_BYTES
        padded = tf.concat([byte_values, tf.zeros([width + 2], _I32)], 0)
        # Every byte packed with the two after it: one gather per 3 bytes.
        triples = (padded[:-2] * 256 + padded[1:-1]) * 256 + padded[2:]
        column = tf.range(0, width, 3)[None, :]
        raw = tf.gather(triples, piece_pos[:, None] + column)
        # Keep the 3, 2, 1 or 0 bytes of each triple inside the piece.
        inside = tf.clip_by_value(piece_len[:, None] - column, 0, 3)
        unit = tf.gather(tf.constant([2**24, 65536, 256, 1]), inside)
        packed = tf.math.floordiv(raw, unit) * unit
        length = tf.minimum(piece_len, width + 1)
        keys = [length] + tf.unstack(packed, axis=1)
        found, value = self.pieces.lookup(keys)
        return value[:, 0], tf.logical_and(found, piece_len <= width)

    @_scoped("bpe")
    def _bpe(self, byte_values, piece_pos, piece_len):
        """BPE of the given pieces -> (ids [T_bpe] in piece order, number of
        tokens of each piece [len(piece_pos)]). Pieces longer than
        windows.LONG must come last: only their bytes are looked at for long
        segments."""
        pos, offsets, first = ragged_range(piece_pos, piece_len)
        num_bytes = tf.size(pos)
        b = tf.gather(byte_values, pos)
        bigram = shift_right(b, 1, 0) * 256 + b
        seg_start = tf.logical_or(first, tf.logical_not(tf.gather(self.bigram_in_vocab, bigram)))
        num_short = tf.reduce_sum(tf.cast(piece_len <= window_ops.LONG, _I32))
        done_index, done_ids = self.windowed(b, seg_start, tf.gather(offsets, num_short))
        # Piece order: place each token at its first byte, then compact.
        at_byte = scatter(done_ids + 1, done_index, num_bytes)
        starts = flat_where(at_byte > 0)
        # A piece's first byte starts a token: tokens before it = its rank.
        rank = tf.concat([scatter(tf.range(tf.size(starts)), starts, num_bytes),
                          [tf.size(starts)]], 0)
        tokens_before = tf.gather(rank, offsets)
        return tf.gather(at_byte, starts) - 1, tokens_before[1:] - tokens_before[:-1]

    # ------------------------------------------------------------------ decode

    def token_bytes_of(self, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """ids int32 [T] (0 <= id < vocab_size) -> (their bytes, concatenated,
        int32 [N]; each id's offset into them, int32 [T + 1]). Raw: a token
        may end inside a UTF-8 character, so chunks of ids concatenate."""
        begin = tf.gather(self.token_offsets, ids)
        length = tf.gather(self.token_offsets, ids + 1) - begin
        offsets = exclusive_cumsum(length)
        nonempty = length > 0
        positions, _, _ = ragged_range(tf.boolean_mask(begin, nonempty),
                                        tf.boolean_mask(length, nonempty))
        return tf.gather(self.token_bytes, positions), offsets

    def decode(self, ids: tf.Tensor, row_splits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """ids int32 [T] (0 <= id < vocab_size), row_splits [B + 1] ->
        (UTF-8 bytes int32 [N], byte row_splits [B + 1]); byte sequences that
        are not valid UTF-8 become U+FFFD as with `errors="replace"`."""
        raw, offsets = self.token_bytes_of(ids)
        raw_splits = tf.gather(offsets, row_splits)
        fixed, new_offsets = utf8_ops.replace_invalid(raw, flags_at(raw_splits[:-1], tf.size(raw)))
        return fixed, tf.gather(new_offsets, raw_splits)
