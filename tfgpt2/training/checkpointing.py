"""Training checkpoints: written atomically, kept to the last k, checked
against the run before resuming.

Layout: `output_dir/checkpoints/ckpt-<step>/` holds a `tf.train.Checkpoint`
(model, optimizer with its step counter and moments, loss scale) and
`manifest.json` (step, model config, the settings that shape training, the
corpus size).

Atomicity: a checkpoint is written into `.tmp-ckpt-<step>-<pid>/` beside the
others, every file and the directory are fsynced, and only then is the
directory renamed to `ckpt-<step>` (a rename is atomic on POSIX file
systems). A `ckpt-*` directory therefore exists only complete, and the
latest checkpoint is the highest-numbered one: there is no separate pointer
file that could disagree with the files. Old checkpoints are removed only
after the new one is in place (renamed away first, then deleted), and
leftovers of a killed write (`.tmp-*`, `.trash-*`) are cleared at start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

MANIFEST = "manifest.json"
STATE_PREFIX = "state"
_NAME = re.compile(r"^ckpt-(\d+)$")


class CheckpointMismatchError(ValueError):
    """The output directory holds checkpoints of another model or run."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one is intact."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """The checkpoints of one run under `directory`.

    Args:
      directory: `output_dir/checkpoints`.
      keep: how many of the latest checkpoints to keep.
      writer: whether this task writes (the chief does; other workers only read).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, writer: bool = True):
        self.directory, self.keep, self.writer = Path(directory), keep, writer

    def clear_leftovers(self) -> None:
        if not self.writer or not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if path.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(path, ignore_errors=True)

    def all(self) -> list[tuple[int, Path]]:
        """(step, path) of every complete checkpoint, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match and (path / MANIFEST).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> tuple[int, Path] | None:
        found = self.all()
        return found[-1] if found else None

    @staticmethod
    def manifest(path: Path) -> dict:
        try:
            return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointMismatchError(f"{path / MANIFEST} is unreadable ({err}); delete "
                                          f"{path} to resume from an earlier checkpoint.") from err

    def save(self, step: int, checkpoint, manifest: dict) -> Path | None:
        """Write `checkpoint` (a tf.train.Checkpoint) and `manifest` as
        `ckpt-<step>`, atomically; then drop checkpoints beyond `keep`."""
        if not self.writer:
            return None
        import tensorflow as tf

        final = self.directory / f"ckpt-{step:08d}"
        tmp = self.directory / f".tmp-ckpt-{step:08d}-{os.getpid()}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            checkpoint.write(str(tmp / STATE_PREFIX))
            manifest = {**manifest, "step": step, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True),
                                        encoding="utf-8")
            for path in tmp.iterdir():
                _fsync(path)
            _fsync(tmp)
            if final.exists():  # a rerun that reached the same step again
                self._discard(final)
            os.rename(tmp, final)
            _fsync(self.directory)
        except (OSError, tf.errors.OpError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = self.latest()
            kept = (f"The previous checkpoint ({previous[1]}, step {previous[0]}) is intact"
                    if previous else "No earlier checkpoint exists")
            reason = getattr(err, "message", None) or str(err)
            raise CheckpointWriteError(
                f"Could not write the checkpoint of step {step} in {self.directory}: "
                f"{reason.strip().splitlines()[0] if reason.strip() else type(err).__name__}. "
                f"{kept}. Free disk space or fix the directory's permissions, then rerun the "
                "same command to continue.") from err
        for _, old in self.all()[:-self.keep]:
            self._discard(old)
        return final

    def _discard(self, path: Path) -> None:
        trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def restore(checkpoint, path: Path) -> None:
        status = checkpoint.read(str(path / STATE_PREFIX))
        status.assert_existing_objects_matched()


def check_compatible(path: Path, manifest: dict, expected: dict) -> None:
    """Refuse to resume from a checkpoint of another model, settings or
    corpus, listing every difference."""
    differences = []
    for section in ("model_config", "settings", "train_data"):
        saved, wanted = manifest.get(section, {}), expected.get(section, {})
        for key in sorted(set(saved) | set(wanted)):
            if saved.get(key) != wanted.get(key):
                differences.append(f"{section}.{key}: checkpoint {saved.get(key)!r}, "
                                   f"now {wanted.get(key)!r}")
    if differences:
        shown = "\n  ".join(differences[:12])
        raise CheckpointMismatchError(
            f"{path.parent} holds checkpoints of a different run (latest: {path.name}), which "
            f"cannot be continued with these settings:\n  {shown}\n"
            "Use a new --output_dir, or rerun with the checkpoint's settings, or delete "
            f"{path.parent} to start over.")
