"""A prompts file read into rows, each with the settings it generates with.

Two formats, told apart by the name:
- `.jsonl` / `.ndjson`: one JSON object per line with a `prompt` (a string)
  and optionally its own `max_new_tokens`, `do_sample`, `temperature`,
  `top_k`, `top_p`, `seed`; any other field (an `id`, a label) is copied to
  the row's output unchanged.
- anything else: plain UTF-8 text, one prompt per line.
Blank lines are skipped in both; a row's index counts prompts, not lines.

Plain Python (no TensorFlow), so a bad file fails before a model loads.
Every error names the file and line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

JSONL_SUFFIXES = (".jsonl", ".ndjson")
# What a JSONL row may set for itself, with the type each must have.
ROW_SETTINGS = dict(max_new_tokens=int, do_sample=bool, temperature=float, top_k=int,
                    top_p=float, seed=int)
# Fields of an output row; an input field of these names would be lost.
OUTPUT_FIELDS = ("index", "prompt", "generated_text", "prompt_tokens", "generated_tokens",
                 "stop_reason", "settings")
SEED_LIMIT = 2**31  # seeds are int32 on the device


class PromptFileError(ValueError):
    """A prompts file that cannot be generated from; the message names the line."""


@dataclasses.dataclass(frozen=True)
class RowSettings:
    """How one row generates. `seed` is the row's own: given in its JSONL
    line, or derived from the run's seed and the row's index (`row_seed`)."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    seed: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PromptRow:
    index: int  # among the prompts, from 0
    line: int  # in the file, from 1
    prompt: str
    overrides: dict  # the row's own settings (JSONL)
    extra: dict  # other JSONL fields, copied to the output


def row_seed(run_seed: int, index: int) -> int:
    """Row `index`'s seed in a run seeded `run_seed`: a hash of the pair, so
    a row samples the same whatever the batch, replica or resume point."""
    state = np.random.SeedSequence([int(run_seed), int(index)]).generate_state(1)[0]
    return int(state) % SEED_LIMIT


def read_prompts(path: str | os.PathLike) -> list[PromptRow]:
    """The rows of a prompts file (see the module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PromptFileError(f"The prompts file {path} does not exist.") from None
    except IsADirectoryError:
        raise PromptFileError(f"The prompts file {path} is a directory; pass a file.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise PromptFileError(f"{path} line {line}: not UTF-8 ({err.reason}); save the file "
                              "as UTF-8.") from None
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{path} line {number}"
        if jsonl:
            prompt, overrides, extra = _parse_json_line(line, where)
        else:
            prompt, overrides, extra = line, {}, {}
        rows.append(PromptRow(len(rows), number, prompt, overrides, extra))
    if not rows:
        raise PromptFileError(f"The prompts file {path} holds no prompts (it is empty or blank); "
                              "write one prompt per line"
                              + (', as {"prompt": "..."}.' if jsonl else "."))
    return rows


def rows_from_values(prompts) -> list[PromptRow]:
    """Rows from Python values: strings, or dicts as a JSONL line's."""
    rows = []
    for i, value in enumerate(prompts):
        where = f"prompts[{i}]"
        if isinstance(value, str):
            rows.append(PromptRow(i, i + 1, value, {}, {}))
        elif isinstance(value, dict):
            rows.append(PromptRow(i, i + 1, *_split_fields(value, where)))
        else:
            raise PromptFileError(f"{where} is a {type(value).__name__}; give a string or a dict "
                                  'with a "prompt".')
    if not rows:
        raise PromptFileError("No prompts given: pass at least one.")
    return rows


def _parse_json_line(line: str, where: str):
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise PromptFileError(f'{where}: not JSON ({err.msg}); each line must be an object like '
                              '{"prompt": "..."}.') from None
    if not isinstance(value, dict):
        raise PromptFileError(f'{where}: a JSON {type(value).__name__}, not an object like '
                              '{"prompt": "..."}.')
    return _split_fields(value, where)


def _split_fields(value: dict, where: str):
    if "prompt" not in value:
        raise PromptFileError(f'{where}: no "prompt" field (found: {", ".join(value) or "none"}).')
    prompt = value["prompt"]
    if not isinstance(prompt, str):
        raise PromptFileError(f'{where}: "prompt" must be a string, got '
                              f"{type(prompt).__name__}.")
    overrides = {k: v for k, v in value.items() if k in ROW_SETTINGS}
    extra = {k: v for k, v in value.items() if k not in ROW_SETTINGS and k != "prompt"}
    clashes = [k for k in extra if k in OUTPUT_FIELDS]
    if clashes:
        raise PromptFileError(f"{where}: the field(s) {', '.join(clashes)} would be overwritten "
                              "by the output's own; rename them.")
    for name, value in overrides.items():
        check_setting(name, value, where)
    return prompt, overrides, extra


def check_setting(name: str, value, where: str) -> None:
    """PromptFileError unless `value` is a valid `name` setting."""
    kind = ROW_SETTINGS[name]
    ok_type = (isinstance(value, bool) if kind is bool else
               isinstance(value, int) and not isinstance(value, bool) if kind is int else
               isinstance(value, (int, float)) and not isinstance(value, bool))
    if not ok_type:
        raise PromptFileError(f"{where}: {name} must be {kind.__name__}, got {value!r}.")
    ranges = dict(max_new_tokens=(value >= 1, ">= 1"),
                  temperature=(math.isfinite(value) and value > 0, "a number > 0"),
                  top_k=(value >= 0, ">= 0 (0: off)"),
                  top_p=(math.isfinite(value) and 0 < value <= 1, "in (0, 1] (1: off)"),
                  seed=(0 <= value < SEED_LIMIT, f"in [0, {SEED_LIMIT})"))
    if name in ranges and not ranges[name][0]:
        raise PromptFileError(f"{where}: {name} must be {ranges[name][1]}, got {value!r}.")


def settings_of(row: PromptRow, defaults: dict, run_seed: int) -> RowSettings:
    """The row's settings: its own, else the run's; its own seed, else the
    one derived from the run's seed and its index."""
    values = {name: row.overrides.get(name, defaults[name]) for name in ROW_SETTINGS
              if name != "seed"}
    seed = row.overrides.get("seed")
    return RowSettings(**values, seed=row_seed(run_seed, row.index) if seed is None else seed)
