"""What the bench scripts share: the seeded random GPT-2 Medium they all
measure (real weights cannot be downloaded on every machine that benches),
and the model FLOPs that MFU is counted in; how greedy tokens are compared;
the decoding settings bench/decode.py runs every peer with."""

from __future__ import annotations

import os
import sys

import numpy as np

# Each decoding setting as transformers-style generate() keyword arguments,
# the same for every peer of bench/decode.py; unset: top_k=0 (the whole
# vocabulary), top_p=1.0, temperature=1.0.
DECODE_SETTINGS = {
    "greedy": dict(do_sample=False),
    "top_k=50": dict(do_sample=True, top_k=50),
    "top_p=0.9": dict(do_sample=True, top_k=0, top_p=0.9),
    "temperature=0.7+top_k=40": dict(do_sample=True, temperature=0.7, top_k=40),
}


def sampling(setting: str) -> tuple[bool, int, float, float]:
    """(do_sample, top_k, top_p, temperature) of a DECODE_SETTINGS name."""
    values = dict(dict(top_k=0, top_p=1.0, temperature=1.0), **DECODE_SETTINGS[setting])
    return values["do_sample"], values["top_k"], values["top_p"], values["temperature"]


def random_checkpoint(directory: str, config, what: str) -> str:
    """`directory`, holding a seeded random GPT-2 of `config` (a
    `GPT2Config`), written if missing; `what` names it in the message."""
    if os.path.isfile(os.path.join(directory, "model.safetensors")):
        return directory
    from tfgpt2 import GPT2LMHeadModel

    print(f"Writing a seeded random {what} to {directory} ...", file=sys.stderr)
    model = GPT2LMHeadModel.from_config(config, seed=0)
    model.save_pretrained(directory)
    return directory


def random_medium_checkpoint(directory: str) -> str:
    """`directory`, holding a seeded random GPT-2 Medium (written if missing)."""
    from tfgpt2 import GPT2Config

    return random_checkpoint(directory, GPT2Config.from_preset("gpt2-medium"), "GPT-2 Medium")


def training_flops_per_token(num_params: int, n_layer: int, n_embd: int, seq_len: int) -> int:
    """Model FLOPs of one trained token (BENCHMARKS.md): 6N for the weight
    matmuls forward and backward, plus 12 L H Q T for attention's scores and
    weighted sums (H Q = n_embd, T = seq_len). N counts the tied embedding
    once, as the LM head's matmul. MFU = tok/s x this / peak FLOP/s."""
    return 6 * num_params + 12 * n_layer * n_embd * seq_len


def leading_agreement(tokens, reference) -> int:
    """New tokens [B, N] equal to the reference's before the first
    difference, in the row that diverges first (after it, the two continue
    different texts)."""
    differs = np.asarray(tokens) != np.asarray(reference)
    first = np.where(differs.any(axis=1), differs.argmax(axis=1), differs.shape[1])
    return int(first.min())
