"""The Hugging Face-style Python API (model card usage) and its errors.
Oracle for ids: tiktoken; for behaviour: Hugging Face's documented semantics."""

import numpy as np
import pytest
import tensorflow as tf

import tokenizer_support as support
from tfgpt2.tokenizer import BatchEncoding, BytePairTokenizer, GPT2Tokenizer

TEXT = "Hello world! It's a test<|endoftext|>"


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2-medium")


def test_model_card_basics(tok):
    assert tok.vocab_size == 50257 and len(tok) == 50257
    assert tok.eos_token == tok.bos_token == "<|endoftext|>"
    assert tok.eos_token_id == tok.bos_token_id == 50256
    assert tok.pad_token is None and tok.pad_token_id is None
    enc = tok(TEXT)
    assert isinstance(enc, BatchEncoding)
    assert enc.input_ids == enc["input_ids"] == support.oracle_ids(TEXT)
    assert enc.attention_mask == [1] * len(enc.input_ids)
    assert enc.input_ids[-1] == 50256  # special token by default, as Hugging Face


def test_special_token_as_text(tok):
    want = support.oracle_ids(TEXT, special_tokens=False)
    assert tok.encode(TEXT, split_special_tokens=True) == want
    assert GPT2Tokenizer(split_special_tokens=True).encode(TEXT) == want
    assert 50256 not in want


def test_encode_decode(tok):
    ids = tok.encode(TEXT)
    assert ids == support.oracle_ids(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.decode(ids, skip_special_tokens=True) == TEXT.replace("<|endoftext|>", "")
    assert tok.decode(np.array(ids)) == tok.decode(tf.constant(ids)) == TEXT
    assert tok.decode(50256) == "<|endoftext|>"
    # Bytes that are not valid UTF-8 decode with U+FFFD, as errors="replace".
    half = tok.encode("😀")[:1]
    assert tok.decode(half) == b"".join(tok.vocabulary.token_bytes[i] for i in half).decode(
        "utf-8", "replace")


def test_batch_call_and_batch_decode(tok):
    texts = ["a b c", "Hello", "", "é日本😀"]
    enc = tok(texts)
    assert enc["input_ids"] == [support.oracle_ids(t) for t in texts]
    assert tok.batch_decode(enc["input_ids"]) == texts
    assert tok.batch_decode(tf.ragged.constant(enc["input_ids"])) == texts


def test_return_tensors(tok):
    tf_enc = tok("Hello world", return_tensors="tf")
    assert isinstance(tf_enc.input_ids, tf.Tensor) and tf_enc.input_ids.dtype == tf.int32
    assert tf_enc.input_ids.shape == (1, 2)
    np_enc = tok(["Hello world", "Hi you"], return_tensors="np")
    assert isinstance(np_enc["input_ids"], np.ndarray) and np_enc["input_ids"].shape == (2, 2)
    assert np_enc["attention_mask"].tolist() == [[1, 1], [1, 1]]
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "a b c"], return_tensors="tf")
    with pytest.raises(ValueError, match="return_tensors"):
        tok("a", return_tensors="pt")


def test_padding_needs_a_pad_token_like_hugging_face():
    tok = GPT2Tokenizer()
    with pytest.raises(ValueError, match=r"tokenizer.pad_token = tokenizer.eos_token"):
        tok(["a", "a b c"], padding=True)


def test_padding_right_and_left():
    tok = GPT2Tokenizer()
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == 50256
    a, abc = support.oracle_ids("a"), support.oracle_ids("a b c")
    enc = tok(["a", "a b c"], padding=True, return_tensors="np")
    assert enc["input_ids"].tolist() == [a + [50256] * 2, abc]
    assert enc["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    enc = tok(["a", "a b c"], padding="longest", padding_side="left")
    assert enc["input_ids"] == [[50256] * 2 + a, abc]
    assert enc["attention_mask"] == [[0, 0, 1], [1, 1, 1]]
    left = GPT2Tokenizer(padding_side="left", pad_token="<|endoftext|>")
    assert left(["a", "a b c"], padding=True)["attention_mask"] == [[0, 0, 1], [1, 1, 1]]
    enc = tok("a", padding="max_length", max_length=4)
    assert enc["input_ids"] == a + [50256] * 3 and enc["attention_mask"] == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="padding_side"):
        tok("a", padding=True, padding_side="middle")


def test_truncation():
    tok = GPT2Tokenizer(pad_token="<|endoftext|>")
    ids = support.oracle_ids("one two three four five")
    assert tok("one two three four five", truncation=True, max_length=3)["input_ids"] == ids[:3]
    assert tok.encode("one two three four five", truncation=True, max_length=2) == ids[:2]
    with pytest.warns(UserWarning, match="truncation"):
        assert tok("one two three four five", max_length=2)["input_ids"] == ids[:2]
    assert tok("one two three four five", truncation=False, max_length=2)["input_ids"] == ids
    enc = tok(["one two three four five", "one"], truncation=True, max_length=3,
              padding="max_length", return_tensors="tf")
    assert enc["input_ids"].numpy().tolist() == [ids[:3], ids[:1] + [50256] * 2]
    left = GPT2Tokenizer(truncation_side="left")
    assert left.encode("one two three four five", truncation=True, max_length=2) == ids[-2:]
    long = "word " * 2000
    assert len(tok(long, truncation=True)["input_ids"]) == 1024  # model_max_length


def test_tokens_and_vocab(tok):
    assert tok.tokenize("Hello world") == ["Hello", "Ġworld"]
    assert tok.convert_tokens_to_ids(["Hello", "Ġworld"]) == support.oracle_ids("Hello world")
    assert tok.convert_ids_to_tokens(50256) == "<|endoftext|>"
    assert tok.get_vocab()["Ġthe"] == 262


@pytest.mark.parametrize("bad, error, match", [
    (123, TypeError, "str"), (["a", 1], TypeError, "str"), (b"bytes", TypeError, "str"),
    ([["a"]], TypeError, "str"),
])
def test_bad_text_input(tok, bad, error, match):
    with pytest.raises(error, match=match):
        tok(bad)


@pytest.mark.parametrize("bad, error, match", [
    ([50257], ValueError, "out of range"), ([-1], ValueError, "out of range"),
    (["a"], TypeError, "integers"), ([1.5], TypeError, "integers"),
    (np.array([1.0]), TypeError, "integers"), (np.array([[1, 2]]), ValueError, "1-D"),
])
def test_bad_ids_in_decode(tok, bad, error, match):
    with pytest.raises(error, match=match):
        tok.decode(bad)


def test_bad_inputs_to_the_graph_form():
    graph = support.graph_tokenizer()
    with pytest.raises(TypeError, match="tf.string"):
        graph.tokenize(tf.constant([1, 2]))
    with pytest.raises(ValueError, match="scalar or a 1-D"):
        graph.tokenize(tf.constant([["a"]]))
    with pytest.raises(TypeError, match="integers"):
        graph.encode_bytes(tf.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        graph.encode_bytes([104, 256])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        graph.encode_bytes(np.array([-1, 3]))
    with pytest.raises(ValueError, match="1-D"):
        graph.encode_bytes([[104, 105]])
    with pytest.raises(ValueError, match="row_splits"):
        graph.encode_bytes([104, 105], row_splits=[0, 3])
    with pytest.raises(ValueError, match=r"\[0, 50256\]"):
        graph.decode_bytes([50257])
    with pytest.raises(ValueError, match="rank 1 or 2"):
        graph.detokenize(tf.zeros([1, 1, 1], tf.int32))
    # Inside a graph the checks are assertions.
    checked = tf.function(lambda b: graph.encode_bytes(b)[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="byte values"):
        checked(tf.constant([300]))
    checked_ids = tf.function(lambda i: graph.detokenize(i))
    with pytest.raises(tf.errors.InvalidArgumentError, match="token ids"):
        checked_ids(tf.constant([[70000]]))


def test_graph_form_detokenize_dense_and_1d():
    graph = support.graph_tokenizer()
    ids = support.oracle_ids("Hello world")
    assert graph.detokenize(tf.constant(ids)).numpy() == b"Hello world"
    assert graph.detokenize(tf.constant([ids, ids])).numpy().tolist() == [b"Hello world"] * 2


def test_text_mode_graph_flag():
    text_mode = BytePairTokenizer(special_tokens=False)
    assert text_mode.tokenize(TEXT).numpy().tolist() == support.oracle_ids(TEXT, False)


def test_save_pretrained_round_trip(tmp_path, tok):
    custom = GPT2Tokenizer(padding_side="left", pad_token="<|endoftext|>", model_max_length=77)
    files = custom.save_pretrained(tmp_path)
    assert sorted(p.rsplit("/", 1)[-1] for p in files) == [
        "merges.txt", "tokenizer_config.json", "vocab.json"]
    again = GPT2Tokenizer.from_pretrained(tmp_path)
    assert again.padding_side == "left" and again.pad_token_id == 50256
    assert again.model_max_length == 77
    assert again.encode(TEXT) == tok.encode(TEXT)
