"""Streamers: receive tokens while `generate` produces them (the
transformers protocol: `put(token_ids)` for each step, then `end()`)."""

from __future__ import annotations

import sys

import numpy as np


class TextStreamer:
    """Print the text as it is generated, for one prompt.

    The first `put` is the prompt (printed unless `skip_prompt`), then one
    token per call. Text is held back while it ends inside a multi-byte
    character, so a split emoji is printed whole."""

    def __init__(self, tokenizer, skip_prompt: bool = False, file=None, **decode_kwargs):
        self.tokenizer, self.skip_prompt = tokenizer, skip_prompt
        self.file = file or sys.stdout
        self.decode_kwargs = decode_kwargs
        self._ids: list[int] = []
        self._printed = 0
        self._prompt_pending = True

    def put(self, value) -> None:
        ids = np.asarray(value).reshape(-1).tolist()
        if self._prompt_pending:
            self._prompt_pending = False
            if self.skip_prompt:
                return
        self._ids.extend(ids)
        text = self.tokenizer.decode(self._ids, **self.decode_kwargs)
        if text.endswith("\ufffd"):
            return
        self._emit(text[self._printed:])
        self._printed = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self._ids, **self.decode_kwargs)
        self._emit(text[self._printed:] + "\n")
        self._ids, self._printed, self._prompt_pending = [], 0, True

    def _emit(self, text: str) -> None:
        print(text, end="", file=self.file, flush=True)
