"""Numpy tables the graph tokenizer needs, built once from a Vocabulary.

- `byte_ids`: the token id of each byte.
- `byte_pair`: rank and merged id of every byte pair (dense, 65536 rows): the
  first merge round works on raw bytes, where a dense table is one gather.
- `pairs`: perfect hash (left id, right id) -> (rank, merged id).
- `pieces`: perfect hash (length, bytes packed 3 per int) -> id, for every
  token of at most PIECE_BYTES bytes: a pre-tokenizer piece that is itself a
  token is that token (tiktoken does the same), and BPE only runs on the rest.
- `bigram_in_vocab`: whether byte bigram (a, b) occurs inside any token. A
  boundary whose bigram occurs in none can never be crossed by a merge, so
  BPE on either side is independent and pieces are split there.
- `token_offsets` + `token_bytes`: the bytes of every id, for decoding.
- `unicode_*`: the pre-tokenizer classes (tfgpt2.unicode_table).
- `tie_period`: the longest period of a token that merges with itself
  (`0` of `00`, `ab` of `abab`): ops/windows.py keeps window starts out of
  text stretches with such a period.

Building takes ~0.6 s (mostly the perfect hashes), so `table_cache` keeps
the result on disk; `to_arrays`/`from_arrays` are its file format, and
FORMAT_VERSION must change whenever what `build` computes changes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfgpt2.tokenizer import unicode_table
from tfgpt2.tokenizer.ops import perfect_hash, pretokenize as pretokenize_ops
from tfgpt2.tokenizer.vocab import Vocabulary

FORMAT_VERSION = 2
PIECE_BYTES = 15  # 50,126 of GPT-2's 50,256 non-special tokens are this short
NO_RANK = 2**31 - 1


@dataclasses.dataclass(frozen=True, eq=False)
class BpeTables:
    byte_ids: np.ndarray
    byte_pair: np.ndarray  # int32 [65536, 2]: (rank or NO_RANK, merged id)
    pairs: perfect_hash.PerfectHash
    pieces: perfect_hash.PerfectHash
    bigram_in_vocab: np.ndarray  # bool [65536]
    token_offsets: np.ndarray  # int32 [V + 1]
    token_bytes: np.ndarray  # int32 [sum of token lengths]
    unicode_block_rows: np.ndarray
    unicode_rows: np.ndarray
    ascii_kinds: np.ndarray  # int32 [128]: pre-tokenizer kind of each ASCII byte
    special_ids: dict[bytes, int]
    vocab_size: int
    tie_period: int


def pack_piece_keys(lengths: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """[K] lengths and [K, PIECE_BYTES] zero-padded bytes -> int [K, 6] keys."""
    triples = padded.reshape(len(padded), PIECE_BYTES // 3, 3).astype(np.int64)
    packed = triples[:, :, 0] * 65536 + triples[:, :, 1] * 256 + triples[:, :, 2]
    return np.concatenate([lengths[:, None].astype(np.int64), packed], axis=1)


def check_training_order(vocab: Vocabulary) -> None:
    """Raise unless every merge comes after the merges that made its parts.

    BPE training can only merge tokens that exist, so this holds for any
    trained vocabulary; the vectorised rounds rely on it (a merge's new pairs
    then rank after it, so all occurrences of a piece's best pair can merge
    at once, as the one-at-a-time algorithm would)."""
    merges = vocab.merge_ids
    created = np.full(vocab.size, -1, np.int64)  # single bytes exist from the start
    created[merges[:, 2]] = np.arange(len(merges))
    late = np.flatnonzero(np.maximum(created[merges[:, 0]], created[merges[:, 1]])
                          >= np.arange(len(merges)))
    if late.size:
        a, b = vocab.merges[late[0]]
        raise ValueError(f"merge {late[0] + 1} ({a!r} {b!r}) uses a token made by a later "
                         "merge; the merges file is not in training order.")


def _period(data: bytes) -> int:
    """The smallest p such that data is a repetition of its first p bytes."""
    return next(p for p in range(1, len(data) + 1)
                if len(data) % p == 0 and data[:p] * (len(data) // p) == data)


def tie_period(vocab: Vocabulary) -> int:
    """The longest period of a token T with a merge (T, T) (1 if none).
    Only such merges make runs of equal-rank candidate pairs ("ties")."""
    token_bytes, merges = vocab.token_bytes, vocab.merge_ids
    squares = merges[merges[:, 0] == merges[:, 1], 0]
    return max([_period(token_bytes[i]) for i in squares.tolist()], default=1)


def build(vocab: Vocabulary) -> BpeTables:
    check_training_order(vocab)
    token_bytes = vocab.token_bytes
    byte_ids = vocab.byte_ids
    merges = vocab.merge_ids
    ranks = np.arange(len(merges), dtype=np.int64)

    id_to_byte = np.full(vocab.size, -1, np.int64)
    id_to_byte[byte_ids] = np.arange(256)
    byte_pair = np.zeros((65536, 2), np.int64)
    byte_pair[:, 0] = NO_RANK
    left_b, right_b = id_to_byte[merges[:, 0]], id_to_byte[merges[:, 1]]
    on_bytes = (left_b >= 0) & (right_b >= 0)
    byte_pair[left_b[on_bytes] * 256 + right_b[on_bytes]] = np.c_[ranks[on_bytes], merges[on_bytes, 2]]

    top = vocab.size - 1
    pairs = perfect_hash.build(merges[:, :2], np.array([top, top]), merges[:, :2],
                               np.c_[ranks, merges[:, 2]])

    special = set(vocab.special_tokens.values())
    ids = [i for i, t in enumerate(token_bytes) if 0 < len(t) <= PIECE_BYTES and i not in special]
    padded = np.zeros((len(ids), PIECE_BYTES), np.int64)
    for row, i in enumerate(ids):
        padded[row, : len(token_bytes[i])] = list(token_bytes[i])
    lengths = np.array([len(token_bytes[i]) for i in ids])
    keys = pack_piece_keys(lengths, padded)
    pieces = perfect_hash.build(keys, np.array([PIECE_BYTES + 1] + [2**24 - 1] * (PIECE_BYTES // 3)),
                                keys, np.array(ids)[:, None], num_hashes=2)

    bigram = np.zeros(65536, bool)
    for i, t in enumerate(token_bytes):
        if i not in special and len(t) > 1:
            arr = np.frombuffer(t, np.uint8).astype(np.int64)
            bigram[arr[:-1] * 256 + arr[1:]] = True

    lengths_all = np.array([len(t) for t in token_bytes], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths_all)])
    flat = np.frombuffer(b"".join(token_bytes), np.uint8).astype(np.int32)

    block_rows, rows = unicode_table.load()
    return BpeTables(
        byte_ids=byte_ids.astype(np.int32),
        byte_pair=byte_pair.astype(np.int32),
        pairs=pairs,
        pieces=pieces,
        bigram_in_vocab=bigram,
        token_offsets=offsets.astype(np.int32),
        token_bytes=flat,
        unicode_block_rows=block_rows,
        unicode_rows=rows,
        ascii_kinds=pretokenize_ops.ascii_kinds(),
        special_ids={t.encode("utf-8"): i for t, i in vocab.special_tokens.items()},
        vocab_size=vocab.size,
        tie_period=tie_period(vocab),
    )


# ----------------------------------------------------------------------------
# Flat form for the disk cache: named int arrays only (no pickle). The
# Unicode table is package data and is not stored.

_HASHES = ("pairs", "pieces")


def to_arrays(tables: BpeTables) -> dict[str, np.ndarray]:
    out = {name: getattr(tables, name) for name in
           ("byte_ids", "byte_pair", "bigram_in_vocab", "token_offsets", "token_bytes")}
    for name in _HASHES:
        table: perfect_hash.PerfectHash = getattr(tables, name)
        out[f"{name}.records"] = table.records
        out[f"{name}.displacement"] = table.displacement
        out[f"{name}.weights"] = table.weights
        out[f"{name}.key_width"] = np.array(table.key_width)
    specials = list(tables.special_ids.items())
    out["special_bytes"] = np.frombuffer(b"".join(t for t, _ in specials), np.uint8)
    out["special_lengths"] = np.array([len(t) for t, _ in specials], np.int64)
    out["special_id_values"] = np.array([i for _, i in specials], np.int64)
    out["vocab_size"] = np.array(tables.vocab_size)
    out["tie_period"] = np.array(tables.tie_period)
    return out


def from_arrays(arrays) -> BpeTables:
    """The inverse of `to_arrays` (raises KeyError/ValueError if incomplete)."""
    hashes = {name: perfect_hash.PerfectHash(
        records=np.asarray(arrays[f"{name}.records"], np.int32),
        displacement=np.asarray(arrays[f"{name}.displacement"], np.int32),
        weights=np.asarray(arrays[f"{name}.weights"], np.int32),
        key_width=int(arrays[f"{name}.key_width"])) for name in _HASHES}
    raw = np.asarray(arrays["special_bytes"], np.uint8).tobytes()
    ends = np.cumsum(arrays["special_lengths"]).tolist()
    starts = [0] + ends[:-1]
    special_ids = {raw[a:b]: int(i) for a, b, i in zip(starts, ends, arrays["special_id_values"])}
    block_rows, rows = unicode_table.load()
    return BpeTables(
        byte_ids=np.asarray(arrays["byte_ids"], np.int32),
        byte_pair=np.asarray(arrays["byte_pair"], np.int32),
        pairs=hashes["pairs"],
        pieces=hashes["pieces"],
        bigram_in_vocab=np.asarray(arrays["bigram_in_vocab"], bool),
        token_offsets=np.asarray(arrays["token_offsets"], np.int32),
        token_bytes=np.asarray(arrays["token_bytes"], np.int32),
        unicode_block_rows=block_rows,
        unicode_rows=rows,
        ascii_kinds=pretokenize_ops.ascii_kinds(),
        special_ids=special_ids,
        vocab_size=int(arrays["vocab_size"]),
        tie_period=int(arrays["tie_period"]),
    )
