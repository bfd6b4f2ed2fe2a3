"""`GenerationConfig`: every `generate` setting, documented once here."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass
class GenerationConfig:
    """The generation settings users know from transformers and keras-hub.

    `generate(inputs, **settings)` and `pipeline(...)(text, **settings)` take
    these as keyword arguments; a `GenerationConfig` can also be passed whole
    as `generation_config=`.

    Args:
      max_length: total length, prompt included (as in transformers and the
        model card). With neither this nor `max_new_tokens`: 20 in total.
      max_new_tokens: new tokens only; wins over `max_length`.
      do_sample: sample (True) or choose greedily / by beam search (False).
      temperature: divides the logits before sampling (> 0).
      top_k: sample among the k most likely tokens (ties at the k-th kept);
        0 or None disables it. Default 50, as transformers.
      top_p: nucleus sampling: the smallest set of most likely tokens whose
        probability reaches `top_p` (1.0 disables it).
      num_beams: beam search width (1: no beam search).
      length_penalty: beam scores are divided by length ** length_penalty.
      early_stopping: beam search stops a prompt as soon as `num_beams`
        hypotheses have finished (transformers' rule); else when no live beam
        can beat the finished ones.
      repetition_penalty: CTRL's penalty on tokens already in the sequence
        (1.0: off).
      num_return_sequences: sequences per prompt (sampling or beams).
      eos_token_id: token id(s) that end a sequence; None: the model's
        `<|endoftext|>`; `[]`: never stop early.
      stop_token_ids: more ids that end a sequence.
      pad_token_id: written after a sequence ends and used for left padding;
        None: the model's eos_token_id.
      seed: makes sampling reproducible (same seed, same tokens, also per
        batch row and when streaming); None: drawn from `set_seed`'s stream.
      truncate_prompt: when prompt + new tokens exceed the context, keep the
        prompt's last tokens instead of raising an error.

    Example:
        config = GenerationConfig(max_new_tokens=40, do_sample=True, top_p=0.9, seed=0)
        model.generate("The meaning of life is", generation_config=config)
    """

    max_length: int | None = None
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    eos_token_id: int | Sequence[int] | None = None
    stop_token_ids: Sequence[int] | None = None
    pad_token_id: int | None = None
    seed: int | None = None
    truncate_prompt: bool = False

    def validate(self, vocab_size: int):
        def check(ok, message):
            if not ok:
                raise ValueError(message)

        check(self.max_length is None or (isinstance(self.max_length, int) and self.max_length >= 1),
              f"max_length must be a positive int, got {self.max_length!r}.")
        check(self.max_new_tokens is None
              or (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1),
              f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}.")
        if self.do_sample:
            check(isinstance(self.temperature, (int, float)) and self.temperature > 0,
                  f"temperature must be > 0 when sampling, got {self.temperature!r}; for "
                  "deterministic output use do_sample=False (greedy).")
        check(isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1,
              f"top_p must be in (0, 1], got {self.top_p!r}.")
        check(self.top_k is None or (isinstance(self.top_k, int) and self.top_k >= 0),
              f"top_k must be a positive int (or 0/None to disable it), got {self.top_k!r}.")
        check(isinstance(self.num_beams, int) and self.num_beams >= 1,
              f"num_beams must be an int >= 1, got {self.num_beams!r}.")
        check(not (self.num_beams > 1 and self.do_sample),
              "Beam sampling (num_beams > 1 with do_sample=True) is not supported; use one or "
              "the other.")
        check(isinstance(self.num_return_sequences, int) and self.num_return_sequences >= 1,
              f"num_return_sequences must be an int >= 1, got {self.num_return_sequences!r}.")
        check(self.num_beams == 1 or self.num_return_sequences <= self.num_beams,
              f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams "
              f"({self.num_beams}).")
        check(self.num_beams > 1 or self.do_sample or self.num_return_sequences == 1,
              "Greedy decoding returns one sequence per prompt; use do_sample=True or num_beams > 1 "
              "for num_return_sequences > 1.")
        check(isinstance(self.repetition_penalty, (int, float)) and self.repetition_penalty > 0,
              f"repetition_penalty must be > 0, got {self.repetition_penalty!r}.")
        for token in self.stop_ids():
            check(isinstance(token, (int, np.integer)) and 0 <= token < vocab_size,
                  f"Stop token ids must be in [0, {vocab_size}), got {token!r}.")

    def stop_ids(self) -> list[int]:
        ids = []
        for value in (self.eos_token_id, self.stop_token_ids):
            if value is None:
                continue
            ids.extend([value] if isinstance(value, (int, np.integer)) else list(value))
        return ids
