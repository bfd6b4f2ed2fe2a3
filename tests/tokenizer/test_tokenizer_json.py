"""`tokenizer.json` (what LiteRT-LM bundles carry): Hugging Face's
`tokenizers` reading our file must give tiktoken's ids and bytes back."""

import json

import pytest
import tokenizers
from hypothesis import given, settings

from tests.tokenizer_support import MULTILINGUAL, EMOJI, hard_texts, oracle_ids, real_corpus
from tfgpt2.tokenizer.tokenizer_json import write_tokenizer_json


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    path = write_tokenizer_json(tmp_path_factory.mktemp("tok") / "tokenizer.json")
    return tokenizers.Tokenizer.from_file(str(path))


def test_the_file_is_json_with_the_whole_vocabulary(tmp_path):
    path = write_tokenizer_json(tmp_path / "tokenizer.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["model"]["vocab"]) == 50257
    assert len(data["model"]["merges"]) == 50000
    assert [t["content"] for t in data["added_tokens"]] == ["<|endoftext|>"]
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temporary left


@pytest.mark.parametrize("text", ["Hello, I'm a language model,", "", " ", "  leading",
                                  "<|endoftext|>Start", "a<|endoftext|>b", "don't 'S 'll",
                                  *MULTILINGUAL, *EMOJI])
def test_known_texts_match_tiktoken(hf_tokenizer, text):
    ids = hf_tokenizer.encode(text, add_special_tokens=False).ids
    assert ids == oracle_ids(text)
    assert hf_tokenizer.decode(ids, skip_special_tokens=False) == text


def test_a_real_corpus_matches_tiktoken(hf_tokenizer):
    docs = real_corpus()[:60]
    got = [e.ids for e in hf_tokenizer.encode_batch(list(docs), add_special_tokens=False)]
    for doc, ids in zip(docs, got, strict=True):
        assert ids == oracle_ids(doc)


@settings(max_examples=300, deadline=None)
@given(text=hard_texts())
def test_hard_texts_match_tiktoken(hf_tokenizer, text):
    assert hf_tokenizer.encode(text, add_special_tokens=False).ids == oracle_ids(text)
