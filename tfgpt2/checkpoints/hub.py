"""Resolve `name_or_dir` to a local directory: a path, or a Hugging Face hub repo.

Hub downloads go through `huggingface_hub` into its usual cache, and only
fetch the files a caller names (never `pytorch_model.bin` or `tf_model.h5`).
"""

from __future__ import annotations

import os
from pathlib import Path

from tfgpt2.names import hub_repo_id


WEIGHT_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
]
TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json"]


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or os.sep in name.replace("/", "", 1)
        or name.count("/") > 1
        or (os.altsep is not None and os.altsep in name)
    )


def resolve_directory(name_or_dir: str | os.PathLike, files: list[str]) -> Path:
    """Return a local directory holding `files` for `name_or_dir`.

    A directory is returned as is. Anything else is treated as a hub repo id
    (`gpt2-medium`, `openai-community/gpt2-medium`, `org/name`) and downloaded
    with `huggingface_hub.snapshot_download`, restricted to `files` (glob
    patterns allowed).
    """
    path = Path(os.path.expanduser(os.fspath(name_or_dir)))
    if path.is_dir():
        return path
    name = os.fspath(name_or_dir)
    if path.exists():
        raise NotADirectoryError(
            f"{name!r} is a file; pass the directory that holds it (with "
            "config.json and the weights), or a hub name such as 'gpt2-medium'."
        )
    if _looks_like_path(name):
        raise FileNotFoundError(
            f"No directory at {name!r}. Pass an existing checkpoint directory "
            "or a hub name such as 'gpt2-medium'."
        )
    repo_id = hub_repo_id(name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        local = snapshot_download(repo_id, allow_patterns=files)
    except HFValidationError as err:
        raise ValueError(
            f"{name!r} is neither a local directory nor a valid hub repo id "
            f"({err})."
        ) from err
    except (LocalEntryNotFoundError, OSError) as err:
        raise OSError(offline_message(repo_id, err)) from err
    return Path(local)


def offline_message(repo_id: str, err: Exception | None = None) -> str:
    """What to do when a hub name cannot be downloaded: where the cache
    lives, and the command (huggingface_hub's `hf` CLI) that fetches the
    files on a machine with internet."""
    from huggingface_hub import constants

    cause = f" ({type(err).__name__}: {str(err).splitlines()[0]})" if err and str(err) else ""
    local = repo_id.rsplit("/", 1)[-1]
    return (
        f"Could not download {repo_id!r} from the Hugging Face hub, and it is not in the hub "
        f"cache ({constants.HF_HUB_CACHE}){cause}. On a machine with internet run "
        f"`hf download {repo_id} --include '*.json' --include '*.safetensors' --include "
        f"merges.txt --local-dir {local}`, copy that directory here, and pass its path "
        f"(e.g. ./{local}) instead of the name.")
