"""The language-modelling benchmarks as the GPT-2 paper scores them: the
log-probability of the whole (de-tokenized) test set under the model with a
sliding window, divided by the number of canonical units of the ORIGINAL
dataset (words, bytes or characters), not by BPE tokens.

The token stream starts with `<|endoftext|>` so that the text's first token
is scored too; every token is then scored exactly once (`score_tokens`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfgpt2.evaluation import datasets, detokenizers, units
from tfgpt2.evaluation.report import TaskResult, bits_per_unit, perplexity
from tfgpt2.evaluation.scoring import default_stride, score_tokens


@dataclasses.dataclass(frozen=True)
class LanguageModelingTask:
    """A benchmark: how to read its test split, undo its tokenization and
    count its units.

    Attributes:
      name: the `--task` name.
      unit: `word`, `byte` or `character`.
      metric: `perplexity` (per word), `bits_per_byte` or
        `bits_per_character`.
      detokenize: text -> the text the model reads (see `detokenizers`).
      read: (path, max_examples) -> the original test text (bytes for
        enwik8).
    """

    name: str
    unit: str
    metric: str
    detokenize: Callable[[str], str]
    read: Callable[[Path, int | None], str | bytes]


def _read_lines(check=None):
    def read(path: Path, max_examples: int | None) -> str:
        text = datasets.read_text(path)
        if check is not None:
            check(text, path)
        return datasets.first_lines(text, max_examples)
    return read


def _read_enwik8(path: Path, max_examples: int | None) -> bytes:
    data = datasets.hutter_test_split(datasets.read_bytes(path), path, "enwik8")
    return datasets.first_byte_lines(data, max_examples)


def _read_text8(path: Path, max_examples: int | None) -> str:
    data = datasets.hutter_test_split(datasets.read_bytes(path), path, "text8")
    text = datasets.decode_utf8(data, path)
    if "\n" in text.strip() or text != text.lower():
        raise datasets.DataError(f"{path} is not text8: text8 is one line of lower-case "
                                 "letters and spaces.")
    return datasets.first_words(text, max_examples)


TASKS = {
    task.name: task for task in (
        LanguageModelingTask("wikitext2", "word", "perplexity", detokenizers.wikitext_detokenize,
                             _read_lines(datasets.check_wikitext)),
        LanguageModelingTask("wikitext103", "word", "perplexity",
                             detokenizers.wikitext_detokenize,
                             _read_lines(datasets.check_wikitext)),
        LanguageModelingTask("ptb", "word", "perplexity", detokenizers.ptb_detokenize,
                             _read_lines(datasets.check_ptb)),
        LanguageModelingTask("1bw", "word", "perplexity", detokenizers.lm1b_detokenize,
                             _read_lines()),
        LanguageModelingTask("enwik8", "byte", "bits_per_byte", detokenizers.identity,
                             _read_enwik8),
        LanguageModelingTask("text8", "character", "bits_per_character", detokenizers.identity,
                             _read_text8),
    )
}


def tokenize_stream(tokenizer, text: str | bytes) -> np.ndarray:
    """`<|endoftext|>` followed by the ids of `text` (str or raw bytes, which
    need not be valid UTF-8). `<|endoftext|>` inside the text is text."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    ids = tokenizer.graph(split_special_tokens=True).tokenize(tf.constant(data)).numpy()
    return np.concatenate([[tokenizer.eos_token_id], ids]).astype(np.int32)


def _score(model, text, stride, batch_size, progress):
    ids = tokenize_stream(model.tokenizer, text)
    if len(ids) - 1 < 2:
        raise ValueError(f"The text is {len(ids) - 1} token(s) long; scoring needs at least 2.")
    window = model.config.n_positions
    stride = default_stride(window) if stride is None else stride
    result = score_tokens(model, ids, window=window, stride=stride, batch_size=batch_size,
                          progress=progress)
    return result, window, stride


def evaluate_language_modeling(model, task: str, original: str | bytes, stride: int | None = None,
                               batch_size: int | None = None, progress: bool = False) -> TaskResult:
    """Score one benchmark's ORIGINAL test text the paper's way.

    Args:
      model: a `GPT2LMHeadModel` (its `tokenizer` encodes the text).
      task: a name in `TASKS` (`wikitext2`, `wikitext103`, `ptb`, `1bw`,
        `enwik8`, `text8`).
      original: the test split as distributed (str; bytes for enwik8).
      stride: sliding-window stride; default half the window (512).
      batch_size: windows per forward pass (default 1 on a CPU, 8 on a GPU).
      progress: show a progress bar.

    Returns:
      A `TaskResult` whose value is perplexity per original word, or bits
      per original byte / character.

    Example:
    >>> text = Path("wikitext-2/wiki.test.tokens").read_text()
    >>> evaluate_language_modeling(model, "wikitext2", text).value  # perplexity per word
    """
    spec = TASKS[task]
    if spec.unit == "word":
        count = units.count_words(original)
    elif spec.unit == "byte":
        count = units.count_bytes(original)
    else:
        count = units.count_characters(original)
    if count == 0:
        raise ValueError(f"The {task} text has no {spec.unit}s to score.")
    text = original if isinstance(original, bytes) else spec.detokenize(original)
    result, window, stride = _score(model, text, stride, batch_size, progress)
    value = (perplexity(result.total_nll, count) if spec.metric == "perplexity"
             else bits_per_unit(result.total_nll, count))
    return TaskResult(task=task, metric=spec.metric, value=value, unit=spec.unit,
                      num_units=count, num_tokens=result.num_scored,
                      total_nll=result.total_nll, stride=stride, window=window)


def evaluate_text(model, text: str, stride: int | None = None, batch_size: int | None = None,
                  progress: bool = False) -> TaskResult:
    """Any UTF-8 text, scored as it is: perplexity per token (the headline),
    per whitespace-separated word, and bits per UTF-8 byte.

    Args:
      model: a `GPT2LMHeadModel`.
      text: the text (at least 2 tokens).
      stride: sliding-window stride; default half the window (512).
      batch_size: windows per forward pass (default 1 on a CPU, 8 on a GPU).
      progress: show a progress bar.

    Returns:
      A `TaskResult` with `figures` `token_perplexity`, `word_perplexity`
      and `bits_per_byte`.

    Example:
    >>> result = evaluate_text(model, Path("notes.txt").read_text())
    >>> result.figures
    {'token_perplexity': ..., 'word_perplexity': ..., 'bits_per_byte': ...}
    """
    result, window, stride = _score(model, text, stride, batch_size, progress)
    words = units.count_whitespace_words(text)
    num_bytes = units.count_bytes(text)
    figures = {"token_perplexity": perplexity(result.total_nll, result.num_scored),
               "word_perplexity": perplexity(result.total_nll, words) if words else math.nan,
               "bits_per_byte": bits_per_unit(result.total_nll, num_bytes)}
    return TaskResult(task="text", metric="token_perplexity",
                      value=figures["token_perplexity"], unit="token",
                      num_units=result.num_scored, num_tokens=result.num_scored,
                      total_nll=result.total_nll, stride=stride, window=window, figures=figures,
                      details={"num_words": words, "num_bytes": num_bytes},
                      figure_units={"word_perplexity": (words, "word"),
                                    "bits_per_byte": (num_bytes, "byte")})
