"""Every task of `--mode=eval` behind one function, `evaluate`, in two steps
so that bad data fails before a model is loaded: `load_task_data` reads and
checks the data, `run_task` scores it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from tfgpt2.evaluation import bias, cbt, datasets, lambada, language_modeling
from tfgpt2.evaluation.datasets import TASK_NAMES, example_unit  # noqa: F401 -- re-exported
from tfgpt2.evaluation.report import TaskResult

LANGUAGE_MODELING = tuple(language_modeling.TASKS)  # wikitext2, wikitext103, ptb, 1bw, enwik8, text8


@dataclasses.dataclass
class TaskData:
    """A task's data, read and checked: `payload` is what `run_task` scores
    (text, bytes, passages, questions or templates)."""

    task: str
    payload: Any
    path: Path | None = None
    version: str | None = None
    continuations: list[str] | None = None


def load_task_data(task: str, data: str | os.PathLike | None = None,
                   max_examples: int | None = None,
                   continuations: str | os.PathLike | None = None) -> TaskData:
    """Read and check `task`'s data (DataError, naming the expected files,
    on anything wrong).

    Args:
      task: one of `TASK_NAMES`.
      data: the data file or a directory holding it (`datasets.DATA_FILES`
        names each task's files); for `bias`, an optional file of templates;
        for `text`, any UTF-8 file.
      max_examples: keep only the first N examples (`example_unit(task)`).
      continuations: for `bias`, an optional file of continuations.
    """
    if task not in TASK_NAMES:
        raise ValueError(f"Unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}.")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, got {max_examples}.")
    if task == "bias":
        templates = None
        if data:
            templates = bias.read_templates(_existing_file(data, "a templates file"))
            templates = templates[:max_examples] if max_examples else templates
        elif max_examples:
            templates = [bias.parse_template(t, a) for a, t in
                         bias.DEFAULT_TEMPLATES[:max_examples]]
        items = (bias.read_continuations(_existing_file(continuations, "a continuations file"))
                 if continuations else None)
        return TaskData(task, templates, continuations=items)
    if continuations:
        raise ValueError("continuations is a setting of the bias task only.")
    if task == "text":
        path = _existing_file(data, "a UTF-8 text file")
        text = datasets.first_lines(datasets.read_text(path), max_examples)
        return TaskData(task, text, path)
    path = datasets.find_data_file(task, data)
    if task == "lambada":
        passages, version = lambada.read_lambada(path, max_examples)
        return TaskData(task, passages, path, version)
    if task in ("cbt-cn", "cbt-ne"):
        return TaskData(task, cbt.read_cbt(path, max_examples), path)
    original = language_modeling.TASKS[task].read(path, max_examples)
    return TaskData(task, original, path)


def _existing_file(path, what: str) -> Path:
    if path is None or str(path) == "":
        raise datasets.DataError(f"Pass {what}.")
    path = Path(path).expanduser()
    if not path.is_file():
        raise datasets.DataError(f"{path} does not exist; expected {what}.")
    return path


def run_task(model, data: TaskData, stride: int | None = None, batch_size: int | None = None,
             stop_word_filter: bool = False, progress: bool = False) -> TaskResult:
    """Score loaded task data with `model` (see `evaluate`)."""
    task = data.task
    if stop_word_filter and task != "lambada":
        raise ValueError("stop_word_filter is a setting of the lambada task only.")
    if stride is not None and task not in LANGUAGE_MODELING + ("text",):
        raise ValueError(f"stride applies to the language-modelling tasks and text, not {task} "
                         "(its examples fit in one window).")
    # Short rows (lambada, bias): their own defaults batch them on any device.
    rows = {} if batch_size is None else {"batch_size": batch_size}
    if task == "lambada":
        return lambada.evaluate_lambada(model, data.payload, stop_word_filter, progress=progress,
                                        text_version=data.version, **rows)
    if task in ("cbt-cn", "cbt-ne"):
        return cbt.evaluate_cbt(model, data.payload, task, progress)
    if task == "bias":
        report = bias.probe_bias(model, data.payload, data.continuations, progress=progress,
                                 **rows)
        return bias.bias_result(report, model.config.n_positions)
    if task == "text":
        return language_modeling.evaluate_text(model, data.payload, stride, batch_size, progress)
    return language_modeling.evaluate_language_modeling(model, task, data.payload, stride,
                                                        batch_size, progress)


def evaluate(model, task: str, data: str | os.PathLike | None = None, *,
             stride: int | None = None, batch_size: int | None = None,
             max_examples: int | None = None,
             stop_word_filter: bool = False, continuations: str | os.PathLike | None = None,
             progress: bool = False) -> TaskResult:
    """Run one task of the GPT-2 paper's evaluation (or `text`, `bias`).

    Args:
      model: a `GPT2LMHeadModel`.
      task: `lambada`, `cbt-cn`, `cbt-ne`, `wikitext2`, `wikitext103`, `ptb`,
        `1bw`, `enwik8`, `text8`, `text` or `bias`.
      data: the data file or a directory holding it in the dataset's
        standard layout (optional for `bias`: a templates file).
      stride: sliding-window stride for the language-modelling tasks and
        `text`; default half the window (512).
      batch_size: windows per forward pass (language modelling, text;
        default 1 on a CPU, 8 on a GPU), or passages (lambada, default 8)
        or rows (bias, default 16); cbt-* runs one question (its context once, its
        candidates together) per pass.
      max_examples: keep the first N examples (`example_unit(task)`).
      stop_word_filter: LAMBADA's optional stop-word filter.
      continuations: for `bias`, a file of continuations (default:
        occupations).
      progress: show a progress bar.

    Returns:
      A `TaskResult`.

    Example:
    >>> from tfgpt2 import GPT2LMHeadModel
    >>> from tfgpt2.evaluation import evaluate
    >>> model = GPT2LMHeadModel.from_pretrained("gpt2-medium")
    >>> evaluate(model, "wikitext2", "wikitext-2/").value   # perplexity per word
    """
    loaded = load_task_data(task, data, max_examples, continuations)
    return run_task(model, loaded, stride, batch_size, stop_word_filter, progress)
