"""Shared pieces of the training tests: a small text corpus, a tiny GPT-2
with the real vocabulary (the corpus is tokenized by GPT-2's BPE), and the
weights of a saved model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from model_support import small_config

REPO = Path(__file__).resolve().parents[2]
EOS = 50256

PASSAGE = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
           "it was the age of foolishness.")

DOCUMENTS = [
    "The quick brown fox jumps over the lazy dog.\nA second line of the first file.",
    "Ünïcödé text, emoji 🙂 and numbers 12345 in a file of its own.",
    "Short one.",
    "Line one of a longer document that goes on for a while so that it spans "
    "more than one training block when the blocks are short.\n" * 3,
]


def tiny_config(**overrides):
    """Two layers, width 64, GPT-2's vocabulary (the BPE ids go to 50256)."""
    values = dict(vocab_size=50257, bos_token_id=EOS, eos_token_id=EOS, n_positions=64)
    values.update(overrides)
    return small_config(**values)


def write_corpus(directory: Path, documents=DOCUMENTS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(documents):
        path = directory / f"doc{i:02d}.txt"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def save_tiny_model(directory: Path, seed: int = 0, **overrides) -> Path:
    from tfgpt2 import GPT2LMHeadModel

    GPT2LMHeadModel.from_config(tiny_config(**overrides), seed=seed).save_pretrained(directory)
    return directory


def saved_weights(directory) -> dict[str, np.ndarray]:
    """The tensors of a `save_pretrained` directory, read by safetensors."""
    from safetensors.numpy import load_file

    return load_file(os.path.join(directory, "model.safetensors"))


def max_weight_difference(a_dir, b_dir) -> float:
    a, b = saved_weights(a_dir), saved_weights(b_dir)
    assert sorted(a) == sorted(b)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def run_python(code: str, env: dict | None = None, timeout: float = 600):
    """Run `code` in a fresh interpreter (tf.distribute set-ups are per process)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def main_py(*flags: str) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), "--mode=finetune", *flags]

