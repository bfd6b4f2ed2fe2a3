"""Strings in, strings out: generate on text, the model card's pipeline and
snippets, TextStreamer and the command line, with tiktoken as the oracle for
the text of generated ids."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from tfgpt2 import (GPT2Config, GPT2LMHeadModel, GPT2Tokenizer, TextStreamer, TFGPT2Model,
                    pipeline, set_seed)
from tokenizer_support import tiktoken_gpt2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny GPT-2 with the real vocabulary, saved in the HF layout."""
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=96, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel.from_config(config, seed=0)
    # Louder blocks: a fresh init only echoes the last token.
    for block in model.blocks:
        block.mlp.c_proj.kernel.assign(block.mlp.c_proj.kernel.numpy() * 60.0)
    directory = tmp_path_factory.mktemp("tiny_gpt2")
    model.save_pretrained(directory)
    return directory


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


def test_model_card_pipeline(checkpoint):
    generator = pipeline("text-generation", model=str(checkpoint))
    set_seed(42)
    first = generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)
    set_seed(42)
    again = generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)
    assert first == again and len(first) == 5
    prompt = "Hello, I'm a language model,"
    for item in first:
        assert set(item) == {"generated_text"}
        assert item["generated_text"].startswith(prompt)
    # The same draws as ids (re-encoding sampled text can merge or split
    # tokens, so count them here): max_length=30 counts the prompt.
    prompt_ids = tiktoken_gpt2().encode(prompt)
    set_seed(42)
    ids = generator.model.generate(np.array([prompt_ids]), max_length=30, do_sample=True,
                                   num_return_sequences=5)
    assert ids.shape == (5, 30)
    eos = generator.model.config.eos_token_id
    news = [row[len(prompt_ids):] for row in ids.tolist()]
    news = [new[: new.index(eos)] if eos in new else new for new in news]  # text stops at eos
    assert [item["generated_text"] for item in first] == [
        prompt + generator.tokenizer.decode(new) for new in news]
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


def test_command_line_generates(checkpoint):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--mode=generate", f"--model={checkpoint}",
         "--prompt=Hello there", "--prompt=Second prompt", "--max_new_tokens=5", "--nodo_sample"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--- 0 ---\nHello there" in result.stdout
    assert "--- 1 ---\nSecond prompt" in result.stdout
    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--mode=generate",
         f"--model={checkpoint}", "--top_p=2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert bad.returncode != 0 and "top_p must be in (0, 1]" in bad.stderr
