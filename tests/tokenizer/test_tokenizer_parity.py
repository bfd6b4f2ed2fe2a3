"""Exact id parity with tiktoken (same vocabulary files), and round trips.

Oracles: tiktoken for ids; the `regex` module with OpenAI's pattern for
piece boundaries; Python's UTF-8 codec for bytes that are not valid UTF-8.
"""

import numpy as np
import pytest
import regex
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

import tokenizer_support as support
from tokenizer_support import encode_batch, graph_tokenizer, oracle_ids


def _first_difference(ours, want):
    for i, (a, b) in enumerate(zip(ours, want)):
        if a != b:
            return i
    return min(len(ours), len(want))


def assert_same_ids(texts, special_tokens=True):
    got = encode_batch(texts, special_tokens)
    for text, ids in zip(texts, got):
        want = oracle_ids(text, special_tokens)
        if ids != want:
            i = _first_difference(ids, want)
            enc = support.tiktoken_gpt2()
            context = enc.decode(want[max(0, i - 3):i + 3])
            pytest.fail(f"ids differ at token {i} near {context!r}: ours {ids[i:i + 6]}, "
                        f"tiktoken {want[i:i + 6]} (text {text[:80]!r}...)")


def test_real_corpus_matches_tiktoken():
    docs = support.real_corpus()
    assert sum(len(d.encode("utf-8")) for d in docs) >= 1_000_000
    assert_same_ids(list(docs))


def test_real_corpus_matches_tiktoken_with_special_tokens_as_text():
    docs = list(support.real_corpus()[:40]) + support.MULTILINGUAL
    docs = [d.replace("\n\n", "\n<|endoftext|>\n", 3) for d in docs]
    assert_same_ids(docs, special_tokens=False)
    assert_same_ids(docs, special_tokens=True)


def test_multilingual_and_emoji_samples():
    samples = support.MULTILINGUAL + support.EMOJI
    assert_same_ids(samples)
    assert_same_ids(["".join(samples)])  # also as one long row


def test_documented_edge_cases():
    cases = [
        "", " ", "  ", "\n", "a", "'s", "'S", " 's", "\t's", "x's", "x'S", "x'LL", "!'s",
        "  x", "\n x", " \tx", "\xa0x", "a \xa0b", "1a2b3", "don't I'll we're they've I'm he'd",
        "<|endoftext|>", "<|endoftext|><|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ",
        "<|endoftext", "<|endoftext|", "<<|endoftext|>>", "'<|endoftext|>s", "x\n<|endoftext|>\n",
        "e\u0301", "👨‍👩‍👧‍👦", "🇺🇸🇫🇷", "   \n\n\t  ", "x   ", "\u3000\u3000x", "\r\n\r\n x",
    ]
    assert_same_ids(cases)
    assert_same_ids(cases, special_tokens=False)


@support.hypothesis_settings(examples=60)
@given(st.lists(support.hard_texts(), min_size=40, max_size=80))
def test_random_hard_strings_match_tiktoken(texts):
    assert_same_ids(texts)
    assert_same_ids(texts, special_tokens=False)


@support.hypothesis_settings(examples=25)
@given(st.lists(st.text(max_size=60), min_size=40, max_size=80))
def test_random_unicode_strings_match_tiktoken(texts):
    assert_same_ids(texts)


def _piece_starts(texts, special_tokens):
    data = [t.encode("utf-8") for t in texts]
    flat = np.frombuffer(b"".join(data), np.uint8).astype(np.int32)
    splits = np.cumsum([0] + [len(d) for d in data]).astype(np.int32)
    core = graph_tokenizer(special_tokens)._core  # noqa: SLF001 -- the unit under test
    return tf.function(core.piece_starts, reduce_retracing=True)(
        tf.constant(flat), tf.constant(splits), special_tokens).numpy().tolist(), splits


def _regex_piece_starts(text: str, special_tokens: bool) -> list[int]:
    segments = regex.split("(<\\|endoftext\\|>)", text) if special_tokens else [text]
    starts, offset = [], 0
    for segment in segments:
        if segment == "<|endoftext|>" and special_tokens:
            starts.append(offset)
        else:
            for match in regex.finditer(support.PATTERN, segment):
                starts.append(offset + len(segment[:match.start()].encode("utf-8")))
        offset += len(segment.encode("utf-8"))
    return starts


@support.hypothesis_settings(examples=40)
@given(st.lists(support.hard_texts(), min_size=40, max_size=80), st.booleans())
def test_piece_boundaries_match_openai_regex(texts, special_tokens):
    skip = support.regex_disagreement()
    texts = ["".join("?" if ord(c) in skip else c for c in t) for t in texts]
    got, splits = _piece_starts(texts, special_tokens)
    want = []
    for text, offset in zip(texts, splits):
        want += [offset + s for s in _regex_piece_starts(text, special_tokens)]
    assert got == want


@support.hypothesis_settings(examples=40)
@given(st.lists(support.hard_texts(), min_size=40, max_size=80))
def test_round_trip_text(texts):
    tok = graph_tokenizer()
    ids = tok.tokenize(tf.constant([t.encode("utf-8") for t in texts]))
    back = tok.detokenize(ids).numpy().tolist()
    assert [b.decode("utf-8") for b in back] == texts


def test_round_trip_real_corpus():
    docs = list(support.real_corpus())
    tok = graph_tokenizer()
    back = tok.detokenize(tok.tokenize(tf.constant([d.encode("utf-8") for d in docs])))
    assert [b.decode("utf-8") for b in back.numpy().tolist()] == docs
