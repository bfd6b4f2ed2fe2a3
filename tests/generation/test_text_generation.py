"""Strings in, strings out: generate on text, the model card's pipeline and
snippets, TextStreamer and the command line, with tiktoken as the oracle for
the text of generated ids."""

import io

import numpy as np
import pytest

from tfgpt2 import (GPT2LMHeadModel, GPT2Tokenizer, TextStreamer, TFGPT2Model,
                    pipeline, set_seed)
from tokenizer_support import tiktoken_gpt2


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(scope="module")
def model(checkpoint):
    return GPT2LMHeadModel.from_pretrained(checkpoint)


def test_generate_on_text_is_prompt_plus_decoded_ids(model):
    prompts = ["Hello, I'm a language model,", "Ünïcode ☃ and emoji 🙂 too"]
    texts = model.generate(prompts, max_new_tokens=12, eos_token_id=[])
    enc = tiktoken_gpt2()
    for prompt, text in zip(prompts, texts):
        ids = np.array([enc.encode(prompt)])
        new = model.generate(ids, max_new_tokens=12, eos_token_id=[])[0, ids.shape[1]:]
        assert text == prompt + enc.decode(new.tolist(), errors="replace")
    single = model.generate(prompts[0], max_new_tokens=12, eos_token_id=[])
    assert single == texts[0]


def test_text_stops_before_the_end_of_text_token(model):
    prompt = "The weather today"
    enc = tiktoken_gpt2()
    ids = np.array([enc.encode(prompt)])
    free = model.generate(ids, max_new_tokens=10, eos_token_id=[])[0, ids.shape[1]:].tolist()
    stop = free[3]
    text = model.generate(prompt, max_new_tokens=10, eos_token_id=stop)
    assert text == prompt + enc.decode(free[: free.index(stop)], errors="replace")


def test_model_card_pipeline(checkpoint, model):
    prompt = "Hello, I'm a language model,"
    generator = pipeline("text-generation", model=str(checkpoint))
    set_seed(42)
    first = generator(prompt, max_length=30, num_return_sequences=5)
    set_seed(42)
    again = generator(prompt, max_length=30, num_return_sequences=5)
    assert first == again and len(first) == 5
    # The same draws on token ids (tiktoken's): 30 tokens in all, the text is
    # the prompt plus the new ids decoded, cut at <|endoftext|>.
    enc = tiktoken_gpt2()
    ids = np.array([enc.encode(prompt)])
    set_seed(42)
    expected = model.generate(ids, max_length=30, do_sample=True, num_return_sequences=5)
    assert expected.shape == (5, 30)
    for item, row in zip(first, expected[:, ids.shape[1]:].tolist()):
        assert set(item) == {"generated_text"}
        new = row[: row.index(50256)] if 50256 in row else row
        assert item["generated_text"] == prompt + enc.decode(new, errors="replace")
    assert len({item["generated_text"] for item in first}) > 1  # it samples by default
    batch = generator(["One", "Two"], max_new_tokens=4, do_sample=False)
    assert [len(group) for group in batch] == [1, 1]
    assert batch[0][0]["generated_text"].startswith("One")
    tail = generator("One", max_new_tokens=4, do_sample=False, return_full_text=False)
    assert "One" + tail[0]["generated_text"] == batch[0][0]["generated_text"]


def test_model_card_feature_snippet(checkpoint):
    tokenizer = GPT2Tokenizer.from_pretrained(str(checkpoint))
    model = TFGPT2Model.from_pretrained(str(checkpoint))
    text = "Replace me by any text you'd like."
    encoded_input = tokenizer(text, return_tensors="tf")
    output = model(encoded_input)
    assert output.last_hidden_state.shape == (1, len(tiktoken_gpt2().encode(text)), 64)
    assert encoded_input["input_ids"].numpy()[0].tolist() == tiktoken_gpt2().encode(text)


def test_text_streamer_prints_what_generate_returns(model):
    out = io.StringIO()
    text = model.generate("Stream me", max_new_tokens=15, eos_token_id=[],
                          streamer=TextStreamer(model.tokenizer, file=out))
    assert out.getvalue() == text + "\n"
    skipped = io.StringIO()
    model.generate("Stream me", max_new_tokens=15, eos_token_id=[],
                   streamer=TextStreamer(model.tokenizer, skip_prompt=True, file=skipped))
    assert skipped.getvalue() == text[len("Stream me"):] + "\n"


def test_streaming_refuses_beams_and_batches(model):
    with pytest.raises(ValueError, match="not beam search"):
        model.generate("x", max_new_tokens=3, num_beams=2, streamer=lambda t: None)
    with pytest.raises(ValueError, match="takes one sequence"):
        model.generate(["a", "b"], max_new_tokens=3, streamer=TextStreamer(model.tokenizer))
