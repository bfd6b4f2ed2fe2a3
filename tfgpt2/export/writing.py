"""Write the artifacts: atomically (built in a temporary directory beside
the target, then renamed into place), never over existing files unless asked."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

log = logging.getLogger("tfgpt2.export")


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


def _claim(target: Path, overwrite: bool) -> None:
    if target.exists() and (target.is_file() or any(target.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) to "
                                  "replace it, or choose another output directory.")
    target.parent.mkdir(parents=True, exist_ok=True)


def _replace(built: Path, target: Path) -> None:
    """Move `built` to `target`; an old `target` is moved aside first and
    removed only once the new one is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(built, target)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def write_saved_model(model, output_dir, *, version: int = 1, cache_length=None, xla=False,
                      overwrite=False) -> Path:
    """Write TF Serving's layout, `output_dir/<version>/saved_model.pb`,
    `variables/`, `assets/`. Returns the version directory."""
    from export.saved_model import ServingModule
    from tfgpt2.tokenizer import BytePairTokenizer

    if not isinstance(version, int) or version < 0:
        raise ValueError(f"The TF Serving version must be an int >= 0, got {version!r}.")
    target = Path(output_dir) / str(version)
    _claim(target, overwrite)
    module = ServingModule(model, BytePairTokenizer(model.tokenizer.vocabulary),
                           cache_length=cache_length, xla=xla)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        built = Path(tmp) / "model"
        log.info("Tracing and saving the SavedModel (%s) ...", "XLA loop" if xla else "no XLA")
        tf.saved_model.save(module, str(built), signatures=module.signatures())
        (built / "assets").mkdir(exist_ok=True)  # TF Serving's layout has it, even empty
        _replace(built, target)
    return target


def write_tflite(model, output_path, *, quantization="int8", cache_length=None,
                 overwrite=False) -> Path:
    """Write the `.tflite` (builtins only) to `output_path`."""
    from export.tflite import convert
    from tfgpt2.tokenizer import BytePairTokenizer

    target = Path(output_path)
    _claim(target, overwrite)
    log.info("Converting to TFLite (quantization=%s); GPT-2 Medium takes a few minutes ...",
             quantization)
    data = convert(model, BytePairTokenizer(model.tokenizer.vocabulary),
                   quantization=quantization, cache_length=cache_length)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target
