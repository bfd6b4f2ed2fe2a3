"""What every export target shares, written once: the target interface,
the module that carries the weights and the graph tokenizer into an
artifact, and the cache-length rule.

A target is one module: a `tf.Module` subclass of `ArtifactModule` with the
artifact's signature functions, and an `ExportTarget` that names its format
and options and writes the artifact.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from pathlib import Path

import tensorflow as tf

log = logging.getLogger("tfgpt2.export")


def resolve_cache_length(cache_length, config) -> int:
    """The artifact's KV-cache length: `cache_length`, or the model's whole
    context when None; it must hold at least a prompt token and a new one."""
    length = int(cache_length or config.n_positions)
    if not 2 <= length <= config.n_positions:
        raise ValueError(f"cache_length must be in [2, {config.n_positions}] (the model's "
                         f"context), got {cache_length}.")
    return length


class ArtifactModule(tf.Module):
    """The model's weights (tracked, so they are saved or frozen into the
    artifact), the tokenizer as TF ops, and the sizes every artifact's
    signatures need."""

    def __init__(self, model, *, cache_length: int | None, name: str):
        super().__init__(name=name)
        from tfgpt2.tokenizer import BytePairTokenizer

        self.config = model.config
        self.cache_length = resolve_cache_length(cache_length, model.config)
        self.tokenizer = BytePairTokenizer(model.tokenizer.vocabulary)  # its tables are saved
        self.weights = [w.value for w in model.weights]
        self._model = model

    def forward(self, *args, **kwargs):
        return self._model.forward(*args, **kwargs)

    def lm_logits(self, hidden):
        return self._model.lm_logits(hidden)


def _missing_ancestors(path: Path) -> list[Path]:
    """`path` (a directory artifact's base) and the directories above it that
    do not exist yet, deepest first."""
    missing = []
    for parent in (path.absolute(), *path.absolute().parents):
        if parent.exists():
            break
        missing.append(parent)
    return missing


class ExportTarget(abc.ABC):
    """One artifact format: `write` builds it at `path` from a model.

    `options` are the keyword settings `write` takes besides `overwrite`;
    anything else is refused with the list of what the format takes.
    """

    format: str  # the name `model.export(..., format=)` takes
    options: tuple[str, ...]

    def export(self, model, path, *, overwrite: bool = False, **options) -> Path:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"format={self.format!r} takes {', '.join(self.options)} and "
                            f"overwrite, not {', '.join(unknown)}.")
        path = Path(path)
        missing = _missing_ancestors(path)
        try:
            return self.write(model, path, overwrite=overwrite, **options)
        except BaseException:  # an error or an interrupt: no empty directories left behind
            for directory in missing:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only if still empty
            raise

    @abc.abstractmethod
    def write(self, model, path: Path, *, overwrite: bool, **options) -> Path:
        """Build the artifact at `path`; returns what was written."""
