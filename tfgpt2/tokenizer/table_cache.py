"""The built BPE tables on disk, so a new process skips the ~0.6 s build.

One `.npz` file per vocabulary, named by a key that hashes the vocabulary's
fingerprint (the sha256 of its files) and `tables.FORMAT_VERSION`, and
holding that key again inside. Where:

    $TFGPT2_CACHE_DIR/tokenizer/            if TFGPT2_CACHE_DIR is set
    $XDG_CACHE_HOME/tfgpt2/tokenizer/       else, if XDG_CACHE_HOME is set
    ~/.cache/tfgpt2/tokenizer/              else

The cache can only save time, never change a result or raise: a missing,
corrupt or stale file is rebuilt and rewritten; a directory that cannot be
written is skipped. Files are written to a temporary name and renamed, so a
reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from tfgpt2.files import atomic_path, cache_root
from tfgpt2.tokenizer import tables
from tfgpt2.tokenizer.vocab import Vocabulary

_KEY_FIELD = "cache_key"


def cache_dir() -> Path:
    """The directory holding the tokenizer's cached tables."""
    return cache_root() / "tokenizer"


def cache_key(vocab: Vocabulary) -> str:
    text = f"bpe-tables:v{tables.FORMAT_VERSION}:{vocab.fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(vocab: Vocabulary) -> Path:
    return cache_dir() / f"bpe-tables-{cache_key(vocab)[:32]}.npz"


def _read(path: Path, key: str) -> tables.BpeTables | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data[_KEY_FIELD]) != key:
                return None
            return tables.from_arrays({name: data[name] for name in data.files})
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile):
        return None


def _write(path: Path, key: str, built: tables.BpeTables) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **tables.to_arrays(built), **{_KEY_FIELD: np.array(key)})
    except OSError:
        pass  # not writable: run without a cache


def load_or_build(vocab: Vocabulary) -> tables.BpeTables:
    """The tables of `vocab`: from the cache if a valid entry exists, else
    built (and stored for the next process)."""
    key = cache_key(vocab)
    try:
        path = cache_path(vocab)
    except RuntimeError:  # no home directory to put a cache in
        return tables.build(vocab)
    cached = _read(path, key)
    if cached is not None:
        return cached
    built = tables.build(vocab)
    _write(path, key, built)
    return built
