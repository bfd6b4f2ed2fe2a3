"""One batch of rows, each with its own budget, settings and seed, through
generate's compiled programs (prefill, then the XLA token loop) with the
per-row sampler the SavedModel export uses (`Sampler.per_request`).

A row's tokens depend on its own prompt, settings and seed alone: the
per-row sampler's uniforms are a hash of the row's seed and the step, never
of its place in the batch, so a row generates the same in any batch, on any
replica. Prompts are left-padded to generate's length buckets and the batch
to a power of two (`packing`), so a file compiles few programs.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import tensorflow as tf

from tfgpt2.generation import packing
from tfgpt2.generation.generate import _pack
from tfgpt2.generation.programs import DecodeParams, ProgramKey, ProgramKind
from tfgpt2.generation.sampling import Sampler, SamplingSettings

_lock = threading.Lock()
# A program of 1 row multiplies matrices by vectors, with other kernels and
# other float rounding than a program of 8 or 32 rows: bench/file_jobs.py saw
# 1 row of 256 (GPT-2 124M, 16 sampled tokens) tip to another token at batch
# 1, none between batches 8 and 32. With at least 8 rows per program, the
# batch size does not change a row's numbers; a lone row costs little more,
# since decoding reads every weight once per step whatever the batch.
MIN_PROGRAM_ROWS = 8


@dataclasses.dataclass(frozen=True)
class RowRequest:
    ids: np.ndarray  # the prompt's token ids (at least one; truncated to fit)
    max_new_tokens: int
    temperature: float  # 0: greedy
    top_k: int
    top_p: float
    seed: int


def generate_rows(model, requests: list[RowRequest], batch: int | None = None
                  ) -> list[np.ndarray]:
    """The new tokens of each request (int32, cut before the end-of-text
    token), in order. `batch`: the rows the program takes (rounded up to a
    power of two, at least MIN_PROGRAM_ROWS), so a file's last, shorter
    batch compiles nothing new."""
    cfg = model.config
    pad = cfg.eos_token_id
    batch = packing.bucket_batch(max(batch or 0, len(requests), MIN_PROGRAM_ROWS))
    # Padding rows: one token, greedy, a budget of 1.
    filler = RowRequest(np.asarray([pad], np.int32), 1, 0.0, 0, 1.0, 0)
    rows = list(requests) + [filler] * (batch - len(requests))
    ids, mask = _pack([r.ids for r in rows], packing.bucket_length(max(len(r.ids) for r in rows)),
                      pad)
    budget = max(r.max_new_tokens for r in rows)
    stop_mask = np.zeros([cfg.vocab_size], bool)
    stop_mask[cfg.eos_token_id] = True
    column = lambda name, dtype: tf.constant([getattr(r, name) for r in rows], dtype)  # noqa: E731
    params = DecodeParams(
        max_new_tokens=column("max_new_tokens", tf.int32),
        new_token_slots=tf.constant(packing.bucket_length(budget), tf.int32),
        length_penalty=tf.constant(1.0),
        stop_mask=tf.constant(stop_mask),
        pad_token_id=tf.constant(pad, tf.int32),
        sampling=SamplingSettings.per_row(
            temperature=column("temperature", tf.float32), top_k=column("top_k", tf.int32),
            top_p=column("top_p", tf.float32),
            seeds=tf.constant([[r.seed, 0] for r in rows], tf.int32)))
    with _lock:  # replica threads share the program cache
        programs = model.decode_programs
    key = lambda kind: ProgramKey(  # noqa: E731
        kind=kind, batch=batch, prompt_length=ids.shape[1],
        new_tokens=packing.bucket_length(budget), sampler=Sampler.per_request())
    with _lock:
        prefill, loop = programs.get(key(ProgramKind.PREFILL)), programs.get(key(ProgramKind.LOOP))
    state = prefill(ids, mask, params)
    out, steps = loop(state, params)
    out = out[:, :int(steps)]
    counts = packing.tokens_before_stop(out, params.stop_mask).numpy()
    out = out.numpy()
    return [out[i, :min(counts[i], r.max_new_tokens)] for i, r in enumerate(requests)]
