"""Prompts for the file-generation tests: greedy and seeded sampling rows,
per-row settings, an empty prompt, Unicode, an extra field; every prompt
within 8 tokens and every budget within 8, so one program shape serves a
run (a compiled shape costs seconds)."""

from __future__ import annotations

import json

# The run's defaults; rows override some.
SETTINGS = dict(max_new_tokens=6, seed=7)

ROWS = [
    {"prompt": "Hello, I'm a language model,", "do_sample": False},
    {"prompt": "The quick brown fox", "id": "fox"},
    {"prompt": "", "do_sample": False, "max_new_tokens": 3},
    {"prompt": "Ünïcödé 🙂", "temperature": 0.7, "top_p": 0.9},
    {"prompt": "Once upon a time", "seed": 123, "top_k": 0},
    {"prompt": "It was the best of times", "max_new_tokens": 5, "top_k": 5},
    {"prompt": "Numbers 12345", "do_sample": False},
]


def write_jsonl(path, rows=ROWS):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def many_prompts(count: int) -> str:
    """`count` short plain-text prompts, one per line."""
    return "".join(f"Prompt number {i} says\n" for i in range(count))
