"""`generate_file`: a prompts file in, a JSONL file out, on every replica of
a `tf.distribute` strategy, resumable after any interruption.

Rows are cut into batches of `batch_size` consecutive rows; the batches run
on the strategy's replicas (`tfgpt2.distribute.replicas`: a thread per local
device, batches swapped between workers by all-reduce), and the chief
writes each batch's rows in input order (`output_file`). Each row samples
with its own seed, derived from the run's seed and the row's index
(`prompt_files.row_seed`), through the per-row sampler (`row_batches`), so
the file is the same byte for byte whatever the number of replicas or
workers, the batch size, or where a resumed run started.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from pathlib import Path

import keras
import numpy as np

from tfgpt2 import limits
from tfgpt2.distribute.replicas import Replicas
from tfgpt2.generation import output_file, prompt_files
from tfgpt2.generation.row_batches import RowRequest, generate_rows


@dataclasses.dataclass(frozen=True)
class FileJobResult:
    """What `generate_file` did: rows in the file, rows made by this call
    (the others were there from an interrupted run), new tokens made, the
    run's seed, and whether this worker wrote the file."""

    output: Path
    rows: int
    generated_rows: int
    generated_tokens: int
    seed: int
    wrote_output: bool  # False on the workers that are not the chief


DEFAULTS = dict(max_new_tokens=40, do_sample=True, temperature=1.0, top_k=50, top_p=1.0)


def generate_file(model, prompts, output, *, strategy=None, batch_size: int = 8,
                  seed: int | None = None, truncate_prompt: bool = False,
                  progress: bool = True,
                  **settings) -> FileJobResult:
    """Continue every prompt of a file (or list) and write one JSON line per
    prompt to `output`, in input order.

    Each output line holds `index` (the prompt's place, from 0), `prompt`,
    `generated_text` (the continuation alone, cut before `<|endoftext|>`),
    `prompt_tokens`, `generated_tokens`, `stop_reason` (`eos` or `length`)
    and `settings` (the row's max_new_tokens, do_sample, temperature, top_k,
    top_p and seed), plus any extra fields of the prompt's JSONL line.

    Rerunning after an interruption (even `kill -9`) with the same arguments
    skips the rows already written; each row appears exactly once. An
    output that holds another run's rows (other model, prompts or settings)
    is refused with what differs. The run's fingerprint is kept beside the
    output as `OUTPUT.run.json`.

    Args:
      model: a `GPT2LMHeadModel`; each further local replica gets a copy
        of its weights on its own device.
      prompts: a path (plain text, one prompt per line; or `.jsonl`, one
        `{"prompt": ..., optional settings}` object per line), or a list of
        strings or such dicts.
      output: the JSONL file to write (its directory must exist).
      strategy: a `tf.distribute` strategy whose replicas share the rows
        (OneDevice, Mirrored, MultiWorkerMirrored); None: this process's
        default device. Under several workers, every worker calls this with
        the same arguments; only the chief writes `output`.
      batch_size: rows per decode call on one replica (a call runs at
        least 8 rows, padding included, so that every batch size samples
        alike; fewer saves nothing).
      seed: the run's seed; row i samples with a seed derived from (seed, i),
        so results do not depend on the layout. None: a random seed,
        recorded with the output so a resumed run goes on with it.
      truncate_prompt: keep a too-long prompt's last tokens instead of
        refusing it.
      progress: show a Keras progress bar (rows/s, tokens/s) on the chief.
      **settings: defaults for every row: max_new_tokens (40), do_sample
        (True), temperature (1.0), top_k (50, 0: off), top_p (1.0); a JSONL
        row's own values win.

    Returns:
      A `FileJobResult`.

    Example:
    >>> model = tfgpt2.GPT2LMHeadModel.from_pretrained("gpt2-medium")
    >>> tfgpt2.generate_file(model, "prompts.txt", "out.jsonl", seed=0, max_new_tokens=32)
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"generate_file() got unknown settings {unknown}; the settings are "
                        f"{', '.join(DEFAULTS)}.")
    defaults = {**DEFAULTS, **settings}
    for name, value in defaults.items():
        prompt_files.check_setting(name, value, "generate_file()")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if seed is not None:
        prompt_files.check_setting("seed", seed, "generate_file()")
    replicas = Replicas(strategy)
    output = Path(output)
    rows = (prompt_files.read_prompts(prompts) if isinstance(prompts, (str, os.PathLike))
            else prompt_files.rows_from_values(prompts))
    ids = _tokenize(model, rows, defaults, truncate_prompt, where=_where(prompts))

    # The chief checks the output and picks up where it stopped; every
    # worker learns the start row and the seed from it.
    start, error = 0, None
    if replicas.is_chief:
        try:
            output = output_file.check_writable(output)
            if seed is None:
                seed = output_file.stored_seed(output)
                seed = secrets.randbelow(prompt_files.SEED_LIMIT) if seed is None else seed
            fingerprint = dict(
                format=output_file.FORMAT,
                model=dict(config=model.config.to_dict(),
                           weights=output_file.weights_digest(model)),
                prompts=dict(rows=len(rows), digest=output_file.rows_digest(rows)),
                settings=dict(defaults, seed=seed, truncate_prompt=bool(truncate_prompt)))
            start = output_file.resume_point(output, fingerprint, len(rows))
        except (output_file.OutputFileError, OSError) as err:
            error = err
    status, start, seed = replicas.broadcast_from_chief(
        [error is not None, start, -1 if seed is None else seed]).astype(np.int64).tolist()
    if error is not None:
        raise error
    if status:
        raise output_file.OutputFileError("The chief refused the output file (its log says why).")

    row_settings = [prompt_files.settings_of(row, defaults, seed) for row in rows]
    requests = [_request(ids[row.index], settings) for row, settings in zip(rows, row_settings)]
    todo = len(rows) - start
    if replicas.is_chief and start and progress:
        print(f"{output}: {start} of {len(rows)} rows already written; generating the other "
              f"{todo}.")
    batches = [range(first, min(first + batch_size, len(rows)))
               for first in range(start, len(rows), batch_size)]

    models = replicas.models(model)

    def work(k, slot):
        tokens = generate_rows(models[slot], [requests[i] for i in batches[k]], batch_size)
        width = max(len(t) for t in tokens)
        table = np.full((len(tokens), width + 1), -1.0)
        for j, t in enumerate(tokens):
            table[j, 0] = len(t)
            table[j, 1:1 + len(t)] = t
        return table

    writer = output_file.RowWriter(output) if replicas.is_chief else None
    bar = keras.utils.Progbar(todo, unit_name="row", stateful_metrics=["rows/s", "tokens/s"]) \
        if progress and replicas.is_chief and todo else None
    made_tokens, began = 0, time.perf_counter()
    try:
        for k, table in replicas.map(len(batches), work):
            tokens = [table[j, 1:1 + int(table[j, 0])].astype(np.int32)
                      for j in range(len(table))]
            made_tokens += sum(len(t) for t in tokens)
            if writer is not None:
                texts = model.tokenizer.batch_decode([t.tolist() for t in tokens])
                writer.write([_output_row(rows[i], row_settings[i], ids[i], t, text)
                              for i, t, text in zip(batches[k], tokens, texts)])
            if bar is not None:
                elapsed = max(time.perf_counter() - began, 1e-9)
                done = batches[k].stop - start
                bar.update(done, [("rows/s", done / elapsed), ("tokens/s", made_tokens / elapsed)])
    finally:
        if writer is not None:
            writer.close()
    return FileJobResult(output, len(rows), todo, made_tokens, seed, replicas.is_chief)


def _where(prompts) -> str:
    return str(prompts) if isinstance(prompts, (str, os.PathLike)) else "prompts"


def _tokenize(model, rows, defaults, truncate, where) -> list[np.ndarray]:
    """Each row's prompt ids, empty prompts starting from <|endoftext|>; a
    prompt too long for its budget is an error naming its line, or keeps
    its last tokens with `truncate`."""
    cfg = model.config
    encoded = model.tokenizer([row.prompt for row in rows])["input_ids"]
    ids = []
    for row, row_ids in zip(rows, encoded):
        row_ids = limits.start_empty(row_ids, cfg.bos_token_id)
        budget = row.overrides.get("max_new_tokens", defaults["max_new_tokens"])
        try:
            room = limits.check_prompt_fits(len(row_ids), budget, cfg.n_positions, truncate)
        except ValueError as err:
            raise prompt_files.PromptFileError(f"{where} line {row.line}: {err}") from None
        ids.append(np.asarray(row_ids[-room:], np.int32))
    return ids


def _request(ids, settings) -> RowRequest:
    return RowRequest(ids=ids, max_new_tokens=settings.max_new_tokens,
                      temperature=settings.temperature if settings.do_sample else 0.0,
                      top_k=settings.top_k, top_p=settings.top_p, seed=settings.seed)


def _output_row(row, settings, ids, tokens, text) -> dict:
    return dict(index=row.index, prompt=row.prompt, generated_text=text,
                prompt_tokens=len(ids), generated_tokens=len(tokens),
                stop_reason="length" if len(tokens) >= settings.max_new_tokens else "eos",
                settings=settings.as_dict(), **row.extra)

