"""Any byte sequence tokenises losslessly; invalid UTF-8 decodes like Python.

Oracles: Python's `bytes.decode("utf-8", "replace")`, the vocabulary's token
bytes, and (for ids) tokenizer_support.oracle_ids_for_bytes: Python's codec
finds the invalid units, the `regex` module splits, tiktoken does the BPE.
"""

import numpy as np
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

import tokenizer_support as support
from tfgpt2.tokenizer.ops import utf8 as utf8_ops

_SKIP = None


def _without_regex_disagreement(data: bytes) -> bytes:
    global _SKIP
    _SKIP = _SKIP or support.regex_disagreement()
    text = data.decode("utf-8", "surrogateescape")
    return "".join("?" if ord(c) in _SKIP else c for c in text).encode("utf-8", "surrogateescape")


def _flat(rows):
    flat = np.frombuffer(b"".join(rows), np.uint8).astype(np.int32)
    splits = np.cumsum([0] + [len(r) for r in rows]).astype(np.int32)
    return flat, splits


@tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
def _replace_invalid(byte_values, row_splits):
    n = tf.size(byte_values)
    row_start = tf.math.unsorted_segment_max(tf.ones_like(row_splits[:-1]), row_splits[:-1],
                                             n + 1)[:n] > 0
    out, offsets = utf8_ops.replace_invalid(byte_values, row_start)
    return out, tf.gather(offsets, row_splits)


def _rows(values, splits):
    data = bytes(np.asarray(values, np.uint8))
    return [data[splits[i]:splits[i + 1]] for i in range(len(splits) - 1)]


@support.hypothesis_settings(examples=60)
@given(st.lists(support.hard_bytes(), min_size=30, max_size=60))
def test_replace_invalid_matches_python(rows):
    out, splits = _replace_invalid(*_flat(rows))
    got = _rows(out.numpy(), splits.numpy())
    assert got == [r.decode("utf-8", "replace").encode("utf-8") for r in rows]


@support.hypothesis_settings(examples=40)
@given(st.lists(st.binary(max_size=40), min_size=30, max_size=60))
def test_replace_invalid_matches_python_on_random_bytes(rows):
    out, splits = _replace_invalid(*_flat(rows))
    assert _rows(out.numpy(), splits.numpy()) == [
        r.decode("utf-8", "replace").encode("utf-8") for r in rows]


def test_every_utf8_lead_and_continuation_pattern():
    # All 1-3 byte sequences over the bytes that matter to the strict table.
    interesting = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                   0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    rows = [bytes([a, b, c, d]) for a in interesting for b in interesting[3:]
            for c in (0x80, 0xA0, 0xBF, 0x41) for d in (0x80, 0x90, 0x41)]
    out, splits = _replace_invalid(*_flat(rows))
    assert _rows(out.numpy(), splits.numpy()) == [
        r.decode("utf-8", "replace").encode("utf-8") for r in rows]


@support.hypothesis_settings(examples=50)
@given(st.lists(support.hard_bytes(), min_size=30, max_size=60))
def test_any_bytes_encode_losslessly_and_as_the_oracle(rows):
    rows = [_without_regex_disagreement(r) for r in rows]
    tok = support.graph_tokenizer()
    flat, splits = _flat(rows)
    ids, id_splits = tok.encode_bytes(flat, splits)
    ids, id_splits = ids.numpy(), id_splits.numpy()
    token_bytes = tok.vocabulary.token_bytes
    for i, row in enumerate(rows):
        row_ids = ids[id_splits[i]:id_splits[i + 1]].tolist()
        assert b"".join(token_bytes[t] for t in row_ids) == row
        if b"<|endoftext|>" not in row:
            assert row_ids == support.oracle_ids_for_bytes(row)
    # Decoding gives Python's replacement of the same bytes, as ints and as tf.string.
    back, back_splits = tok.decode_bytes(ids, id_splits)
    want = [r.decode("utf-8", "replace").encode("utf-8") for r in rows]
    assert _rows(back.numpy(), back_splits.numpy()) == want
    ragged = tf.RaggedTensor.from_row_splits(ids, id_splits)
    assert tok.detokenize(ragged).numpy().tolist() == want


def test_a_lone_continuation_byte_is_one_token_each():
    tok = support.graph_tokenizer()
    ids, _ = tok.encode_bytes([0x80, 0x80, 0xBF])
    assert ids.numpy().tolist() == [tok.vocabulary.byte_ids[b] for b in (0x80, 0x80, 0xBF)]
