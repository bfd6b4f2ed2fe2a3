"""What the bench scripts share: the seeded random GPT-2 Medium they all
measure (real weights cannot be downloaded on every machine that benches)."""

from __future__ import annotations

import os
import sys


def random_medium_checkpoint(directory: str) -> str:
    """`directory`, holding a seeded random GPT-2 Medium (written if missing)."""
    if os.path.isfile(os.path.join(directory, "model.safetensors")):
        return directory
    from tfgpt2 import GPT2Config, GPT2LMHeadModel

    print(f"Writing a seeded random GPT-2 Medium to {directory} ...", file=sys.stderr)
    model = GPT2LMHeadModel.from_config(GPT2Config.from_preset("gpt2-medium"), seed=0)
    model.save_pretrained(directory)
    return directory
