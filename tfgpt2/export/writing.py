"""Put an artifact in place whole or not at all, and never over an existing
one unless asked: a directory artifact is built in a temporary directory
beside its destination and renamed into place; a one-file artifact is
written with `tfgpt2.files.atomic_path`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def directory_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"


def claim(target: Path, overwrite: bool) -> None:
    """Refuse a non-empty `target` unless `overwrite`; make its parent."""
    if target.exists() and (target.is_file() or any(target.iterdir())):
        if not overwrite:
            # Library words; the command line turns `name=value` into flags.
            other = (f" (for this SavedModel: another version, e.g. version={int(target.name) + 1})"
                     if target.name.isdigit() else "")
            raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it, "
                                  f"or write somewhere else{other}.")
    if target.parent.exists() and not target.parent.is_dir():
        raise NotADirectoryError(f"{target.parent} is a file; the artifact needs a directory "
                                 "there (choose another --output_dir).")
    target.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def directory_in_place(target: Path, overwrite: bool):
    """Yield a fresh path to build a directory artifact at; once the block
    ends without an error it replaces `target` (an old one is moved aside
    first and removed only once the new one is in place). On an error
    nothing changes at `target`."""
    claim(target, overwrite)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        built = Path(tmp) / target.name
        yield built
        _replace(built, target)


def _replace(built: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(built, target)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
