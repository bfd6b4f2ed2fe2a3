"""Shared fixtures. The helpers in `model_support.py` and `tokenizer_support.py`
sit next to this file, which pytest puts on sys.path for every test folder."""

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny GPT-2 with the real vocabulary, saved in the Hugging Face
    layout by `save_pretrained`: what `from_pretrained`, the pipeline and the
    command line load in the tests."""
    from tfgpt2 import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=96, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel.from_config(config, seed=0)
    # Louder blocks: a fresh init only echoes the last token.
    for block in model.blocks:
        block.mlp.c_proj.kernel.assign(block.mlp.c_proj.kernel.numpy() * 60.0)
    directory = tmp_path_factory.mktemp("tiny_gpt2")
    model.save_pretrained(directory)
    return directory
