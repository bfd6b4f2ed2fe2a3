"""Task results, the model card's published figures beside ours, the screen
table and the JSON report (written atomically, merged by task)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from tfgpt2.files import atomic_path

# GPT-2 Medium (345M in the paper's table 3), zero-shot, from the model card.
# Accuracies are percentages.
MODEL_CARD_MEDIUM = {
    ("lambada", "perplexity"): 15.60,
    ("lambada", "accuracy"): 55.48,
    ("cbt-cn", "accuracy"): 92.35,
    ("cbt-ne", "accuracy"): 87.1,
    ("wikitext2", "perplexity"): 22.76,
    ("ptb", "perplexity"): 47.33,
    ("enwik8", "bits_per_byte"): 1.01,
    ("text8", "bits_per_character"): 1.06,
    ("wikitext103", "perplexity"): 26.37,
    ("1bw", "perplexity"): 55.72,
}
MODEL_CARD_NAMES = ("gpt2-medium", "openai-community/gpt2-medium")


def published_figure(model_name: str | None, task: str, metric: str) -> float | None:
    """The model card's figure, only for the checkpoint it describes."""
    if model_name not in MODEL_CARD_NAMES:
        return None
    return MODEL_CARD_MEDIUM.get((task, metric))


@dataclasses.dataclass
class TaskResult:
    """One task's outcome.

    Attributes:
      task: the task name (`wikitext2`, `lambada`, ...).
      metric: the headline metric: `perplexity` (per `unit`), `accuracy`
        (percent), `bits_per_byte`, `bits_per_character` or, for the bias
        probe, `mean_abs_log_ratio`.
      value: its value.
      unit: what `num_units` counts (word, byte, character, token, passage,
        question, pair).
      num_units: the canonical units the figure is per.
      num_tokens: BPE tokens scored.
      total_nll: natural-log NLL summed over the scored tokens.
      stride: sliding-window stride (None where no window slides).
      window: tokens per forward pass at most.
      correct, total: for choice tasks.
      figures: every figure to show, headline first (`{"perplexity": ..,
        "accuracy": ..}` for LAMBADA).
      details: task-specific extras (the bias probe's records and ranking).
      settings: the scoring rules used (LAMBADA's text version and
        accuracy rule).
      figure_units: for a figure per other units than `unit`, metric ->
        `(count, unit)` (the text task's words and bytes).
    """

    task: str
    metric: str
    value: float
    unit: str
    num_units: int
    num_tokens: int
    total_nll: float
    stride: int | None
    window: int
    correct: int | None = None
    total: int | None = None
    figures: dict = dataclasses.field(default_factory=dict)
    details: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)
    figure_units: dict = dataclasses.field(default_factory=dict)  # metric -> (count, unit)

    def __post_init__(self):
        if not self.figures:
            self.figures = {self.metric: self.value}

    def to_json(self) -> dict:
        record = {"task": self.task, "metric": self.metric, "value": self.value,
                  "unit": self.unit, "num_units": self.num_units, "num_tokens": self.num_tokens,
                  "total_nll": self.total_nll, "stride": self.stride, "window": self.window}
        if self.correct is not None:
            record.update(correct=self.correct, total=self.total)
        if len(self.figures) > 1:
            record["figures"] = dict(self.figures)
        if self.settings:
            record["settings"] = dict(self.settings)
        record.update(self.details)
        return record


def perplexity(total_nll: float, units: int) -> float:
    return math.exp(total_nll / units)


def bits_per_unit(total_nll: float, units: int) -> float:
    return total_nll / math.log(2) / units


METRIC_LABELS = {
    "perplexity": "perplexity",
    "accuracy": "accuracy (%)",
    "bits_per_byte": "bits per byte",
    "bits_per_character": "bits per character",
    "mean_abs_log_ratio": "mean absolute log-ratio",
    "word_perplexity": "perplexity per word",
    "token_perplexity": "perplexity per token",
}


def format_table(results: list[TaskResult], model_name: str | None) -> str:
    """A markdown table: our figures, with the model card's beside them when
    the model is GPT-2 Medium."""
    show_card = model_name in MODEL_CARD_NAMES
    header = "| task | metric | ours |" + (" model card (GPT-2 Medium) |" if show_card else "") + \
        " per | tokens scored |"
    rule = "|---|---|---:|" + ("---:|" if show_card else "") + "---:|---:|"
    lines = [header, rule]
    for result in results:
        for metric, value in result.figures.items():
            label = METRIC_LABELS.get(metric, metric)
            if metric == "perplexity" and result.unit not in ("passage",):
                label = f"perplexity per {result.unit}"
            row = f"| {result.task} | {label} | {value:.2f} |"
            if show_card:
                card = published_figure(model_name, result.task, metric)
                row += f" {card:.2f} |" if card is not None else " |"
            count, unit_name = result.figure_units.get(metric, (result.num_units, result.unit))
            unit = f"{count:,} {unit_name}s"
            if result.correct is not None and metric == "accuracy":
                unit = f"{result.correct:,} / {result.total:,} correct"
            row += f" {unit} | {result.num_tokens:,} |"
            lines.append(row)
    return "\n".join(lines)


def _existing_tasks(path: Path, model_name: str) -> list[dict]:
    """The records of an existing report to keep; ValueError if `path` holds
    something else."""
    if not path.exists():
        return []
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} exists and is not a JSON report ({err}); choose another "
                         "--report path or remove it.") from None
    if not isinstance(existing, dict) or not isinstance(existing.get("tasks"), list):
        raise ValueError(f"{path} exists and is not a tfgpt2 evaluation report (no "
                         "'tasks' list); choose another --report path.")
    if existing.get("model") != model_name:
        return []
    return [t for t in existing["tasks"] if isinstance(t, dict)]


def check_report_path(path: str | os.PathLike, model_name: str) -> None:
    """Fail now, not after hours of scoring, if the report cannot be written
    there: it holds something that is not a report, or its folder cannot be
    created or written."""
    path = Path(path).expanduser()
    _existing_tasks(path, model_name)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"Cannot write the report {path}: {folder} is not a writable folder.")


def write_report(path: str | os.PathLike, model_name: str, results: list[TaskResult]) -> Path:
    """Write (or update) a JSON report: `{"model": ..., "tasks": [record,
    ...]}`. An existing report of the same model keeps its other tasks; the
    file is replaced atomically, so an interrupted run never leaves half of
    it. Raises ValueError, writing nothing, if the file exists and is not
    such a report."""
    path = Path(path).expanduser()
    tasks = _existing_tasks(path, model_name)
    new = {r.task: r.to_json() for r in results}
    tasks = [t for t in tasks if t.get("task") not in new] + list(new.values())
    payload = json.dumps({"model": model_name, "tasks": tasks}, indent=2, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(payload + "\n", encoding="utf-8")
    return path
