"""A static perfect hash over integer keys: built in numpy, probed in TF.

"Hash and displace": a first hash puts every key in a bucket; buckets, the
largest first, each get a displacement that moves all their keys into free
slots of a table. A probe is then a gather of the bucket's displacement and
a gather of the slot's record, whatever the table size (a binary search would
be ~16 rounds of gathers).

The hash is linear with random weights, h = sum(input_j * w_j), computed
exactly in int32: the weights are bounded so the sum stays below 2**31
(LiteRT has no int64 or bitwise_and builtins; floormod is its one modulo).
The bucket is h mod B and the slot's base h mod T, with B and T coprime;
keys with little entropy per weight (large inputs, so small weights) use a
second, independent hash for the base.
The record holds the full key, so a probe with a key that is not in the table
finds a record whose key differs: lookups are exact, never "probably".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

_INT32_LIMIT = 2**31 - 1
_SEEDS = range(64)  # hash weights are drawn from these seeds until a table builds


@dataclasses.dataclass(frozen=True)
class PerfectHash:
    """records: int32 [slots, key_width + value_width] (empty slots: keys -1);
    displacement: int32 [buckets]; weights: int32 [1 or 2 hashes, hash inputs]."""

    records: np.ndarray
    displacement: np.ndarray
    weights: np.ndarray
    key_width: int

    @property
    def slots(self) -> int:
        return self.records.shape[0]


class _Failed(Exception):
    pass


def build(hash_inputs: np.ndarray, input_max: np.ndarray, keys: np.ndarray,
          values: np.ndarray, load: float = 0.5, bucket_size: float = 4.0,
          num_hashes: int = 1) -> PerfectHash:
    """hash_inputs int [K, m] (each column j in [0, input_max[j]]), keys int
    [K, w] (distinct rows), values [K, v]. The TF probe hashes the keys, so
    hash_inputs must be the keys (kept apart to state their bounds)."""
    hash_inputs = np.asarray(hash_inputs, np.int64)
    keys = np.asarray(keys, np.int64)
    values = np.asarray(values, np.int64).reshape(len(keys), -1)
    bound = _INT32_LIMIT // max(1, int(np.sum(input_max)))
    if bound < 8:
        raise ValueError("hash inputs too large for int32 linear hashing")
    for seed in _SEEDS:
        weights = np.random.default_rng(seed).integers(1, bound, (num_hashes, hash_inputs.shape[1]))
        try:
            return _build(hash_inputs @ weights.T, keys, values, weights, load, bucket_size)
        except _Failed:
            continue
    raise ValueError("perfect hash construction failed for every seed")


def _build(hashes, keys, values, weights, load, bucket_size) -> PerfectHash:
    num_keys, width = keys.shape
    buckets = max(1, int(num_keys / bucket_size) + 1)
    slots = max(8, int(num_keys / load) + 1)
    while np.gcd(slots, buckets) != 1:
        slots += 1
    bucket = hashes[:, 0] % buckets
    first = hashes[:, -1] % slots  # slot = (first + displacement[bucket]) mod slots
    order = np.argsort(bucket, kind="stable")
    starts = np.searchsorted(bucket[order], np.arange(buckets + 1))
    sizes = np.diff(starts)
    occupied = np.zeros(slots, bool)
    slot_of = np.full(num_keys, -1, np.int64)
    displacement = np.zeros(buckets, np.int64)
    chunk = np.arange(256, dtype=np.int64)
    for b in np.argsort(-sizes, kind="stable"):
        if sizes[b] == 0:
            break
        members = order[starts[b]:starts[b + 1]]
        base = first[members]
        if len(np.unique(base)) != len(base):
            raise _Failed  # two keys share both hashes
        # Candidate displacements, tried 256 at a time: [len(members), 256].
        for start in range(0, slots, len(chunk)):
            taken = occupied[(base[:, None] + start + chunk[None, :]) % slots]
            free = np.flatnonzero(~taken.any(axis=0))
            if len(free):
                break
        else:
            raise _Failed
        displacement[b] = (start + free[0]) % slots
        slot_of[members] = (base + displacement[b]) % slots
        occupied[slot_of[members]] = True
    records = np.full((slots, width + values.shape[1]), -1, np.int64)
    records[slot_of, :width] = keys
    records[slot_of, width:] = values
    return PerfectHash(records.astype(np.int32), displacement.astype(np.int32),
                       weights.astype(np.int32), width)


class Probe:
    """The TF side of a PerfectHash: constants and the lookup."""

    def __init__(self, table: PerfectHash):
        self.key_width = table.key_width
        self.slots = table.slots
        self.buckets = len(table.displacement)
        self.weights = table.weights.tolist()
        self.records = tf.constant(table.records)
        self.displacement = tf.constant(table.displacement)

    def hashes(self, columns: list[tf.Tensor]) -> list[tf.Tensor]:
        """The 1 or 2 hashes of inputs given as int32 [n] columns."""
        out = []
        for weights in self.weights:
            h = columns[0] * weights[0]
            for column, w in zip(columns[1:], weights[1:]):
                h = h + column * w
            out.append(h)
        return out

    def lookup(self, key_columns: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """key_columns: key_width int32 [n], each within the bounds the table
        was built for. Returns (found bool [n], values int32 [n, v])."""
        h = self.hashes(key_columns)
        bucket = tf.math.floormod(h[0], self.buckets)
        slot = tf.math.floormod(h[-1], self.slots) + tf.gather(self.displacement, bucket)
        slot = tf.where(slot >= self.slots, slot - self.slots, slot)
        record = tf.gather(self.records, slot)
        found = tf.equal(record[:, 0], key_columns[0])
        for i in range(1, self.key_width):
            found = tf.logical_and(found, tf.equal(record[:, i], key_columns[i]))
        return found, record[:, self.key_width:]
