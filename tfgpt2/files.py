"""Writing a file whole or not at all, for every writer in tfgpt2.

A reader (another process, a resumed run) must never see half a file, so
each file is written under a temporary name beside its destination and
renamed onto it. It ends with the mode a plain `open` gives (0o666 minus
the umask): mkstemp's 0600 would hide saved models and caches from the
other users the umask lets read them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty file's path beside `path` to write (by name or by
    opening it); when the block ends it replaces `path`. If the block
    raises, anything at all, the temporary file is removed and `path` is
    left as it was. The parent directory must exist.

    Example:
    >>> with atomic_path("out/model.safetensors") as tmp:
    ...     save_file(tensors, tmp)
    """
    path = Path(path)
    tmp, mode = _create_beside(path)
    try:
        yield tmp
        os.chmod(tmp, mode)  # some writers (safetensors) make a file of their own
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[Path, int]:
    """A new empty file and its mode: created 0o666, the kernel applies the
    umask (read this way, not by os.umask, which would change it for every
    thread for a moment)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            return tmp, os.fstat(fd).st_mode & 0o7777
        finally:
            os.close(fd)


def cache_root() -> Path:
    """Where tfgpt2 keeps what it can rebuild (tokenizer tables, LiteRT's
    packed weights): $TFGPT2_CACHE_DIR, else $XDG_CACHE_HOME/tfgpt2, else
    ~/.cache/tfgpt2."""
    explicit = os.environ.get("TFGPT2_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "tfgpt2"
