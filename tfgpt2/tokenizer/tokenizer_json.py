"""The vocabulary as one Hugging Face `tokenizer.json`: the file the
`tokenizers` library and on-device runtimes (LiteRT-LM's bundles) read.

It spells out GPT-2's byte-level BPE the way `tokenizers` runs it: OpenAI's
pre-tokenizer regex (`ByteLevel` with `use_regex`), no prefix space, no
normalizer, the merges in rank order, and `<|endoftext|>` as an added
special token matched whole in text. Encoding with it gives our ids
(tests/tokenizer/test_tokenizer_json.py checks it against tiktoken).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfgpt2.files import atomic_path
from tfgpt2.tokenizer.vocab import Vocabulary, as_vocabulary


def _byte_level(**extra) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
            "use_regex": True, **extra}


def tokenizer_json(vocabulary: Vocabulary | str | os.PathLike | None = None) -> dict:
    """`tokenizer.json`'s content for `vocabulary` (default: GPT-2's)."""
    vocab = as_vocabulary(vocabulary)
    added = [{"id": token_id, "content": token, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for token, token_id in sorted(vocab.special_tokens.items(), key=lambda kv: kv[1])]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": _byte_level(),
        "post_processor": _byte_level(),
        "decoder": _byte_level(),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": dict(sorted(vocab.encoder.items(), key=lambda kv: kv[1])),
            "merges": [[a, b] for a, b in vocab.merges],
        },
    }


def write_tokenizer_json(path: str | os.PathLike,
                         vocabulary: Vocabulary | str | os.PathLike | None = None) -> Path:
    """Write `tokenizer.json` at `path` (atomically); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(tokenizer_json(vocabulary), ensure_ascii=False),
                       encoding="utf-8")
    return path
