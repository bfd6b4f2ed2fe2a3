"""The one registry of GPT-2 names: the four released models, their sizes,
and where the Hugging Face hub keeps them.

It imports nothing of tfgpt2, so `checkpoints.hub` (repo ids) and `config`
(presets) both read it and only one way: config -> checkpoints.hub -> names.
"""

from __future__ import annotations

# The architecture sizes of the four released models (OpenAI's hparams.json).
PRESETS = {
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12),
    "gpt2-medium": dict(n_layer=24, n_embd=1024, n_head=16),
    "gpt2-large": dict(n_layer=36, n_embd=1280, n_head=20),
    "gpt2-xl": dict(n_layer=48, n_embd=1600, n_head=25),
}
DEFAULT_PRESET = "gpt2-medium"
HUB_ORGANISATION = "openai-community"  # where the hub keeps the released checkpoints
# Every name that means one of the released models; they all share GPT-2's
# vocabulary, which is available offline.
GPT2_NAMES = frozenset(
    name for size in PRESETS for name in (size, f"{HUB_ORGANISATION}/{size}"))
EOS_TOKEN = "<|endoftext|>"
EOS_TOKEN_ID = 50256


def preset_key(name: str) -> str | None:
    """The preset a GPT-2 name refers to (`gpt2-medium` for both
    `gpt2-medium` and `openai-community/gpt2-medium`), else None."""
    key = name.rsplit("/", 1)[-1] if name.startswith(f"{HUB_ORGANISATION}/") else name
    return key if key in PRESETS else None


def hub_repo_id(name: str) -> str:
    """The hub repo of a name: the released models' short names map to their
    `openai-community/` repos; anything else is taken as a repo id."""
    return f"{HUB_ORGANISATION}/{name}" if name in PRESETS else name
