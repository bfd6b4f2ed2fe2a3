"""The output of a file generation: a JSONL file written so that a run
killed at any moment (even `kill -9`) resumes where it stopped.

- Rows are appended in input order, each batch's lines in ONE `write` on a
  file opened for appending, then `fsync`. A kill can leave only a last
  line without its newline; on resume that partial line is cut off (it was
  never a complete row) and the rows after the complete ones are made
  again, so each row appears exactly once.
- The run's fingerprint (the model, the prompts and the settings) is the
  sidecar `OUT.jsonl.run.json`, written atomically (`atomic_path`) before the
  first row. A rerun whose fingerprint differs is refused, saying what
  differs, so one file never mixes two runs' rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from tfgpt2.files import atomic_path

FORMAT = "tfgpt2.generate_file/1"


class OutputFileError(ValueError):
    """An output file that this run may not write or append to."""


def sidecar_path(output: Path) -> Path:
    return output.with_name(output.name + ".run.json")


def check_writable(output: str | os.PathLike) -> Path:
    """The output path, or an error if its directory cannot take the file."""
    output = Path(output)
    directory = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise OutputFileError(f"The output file {output} is a directory; pass a file path such "
                              "as out.jsonl.")
    if not directory.is_dir():
        raise OutputFileError(f"The output directory {directory} does not exist; create it or "
                              "choose another output file.")
    try:  # a real file, not os.access: root, read-only mounts and ACLs all count
        tempfile.NamedTemporaryFile(dir=directory, prefix=f".{output.name}.probe").close()
        if output.exists():
            open(output, "ab").close()
    except OSError as err:
        raise OutputFileError(f"Cannot write {output} ({err.strerror} in {directory}); choose "
                              "a directory you can write to.") from None
    return output


def weights_digest(model) -> str:
    """A short digest of the weights (every 997th value of each), enough to
    tell a fine-tuned model from its base or another seed's."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(np.asarray(variable.numpy()).ravel()[::997]).tobytes())
    return digest.hexdigest()[:16]


def rows_digest(rows) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.prompt, row.overrides, row.extra], sort_keys=True,
                                 ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def differences(found: dict, wanted: dict, prefix: str = "") -> list[str]:
    """'name: found vs wanted' for each field that differs (nested)."""
    out = []
    for name in sorted(set(found) | set(wanted)):
        a, b = found.get(name), wanted.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name}: {a!r} in the file's run vs {b!r} now")
    return out


def resume_point(output: Path, fingerprint: dict, total: int) -> int:
    """How many rows `output` already holds for this run (0 for a new file),
    after cutting a partial last line; writes the sidecar for a new run.
    Raises OutputFileError if the file belongs to another run."""
    sidecar = sidecar_path(output)
    if output.exists() and output.stat().st_size:
        if not sidecar.exists():
            raise OutputFileError(
                f"{output} already holds rows but no {sidecar.name} saying which run wrote "
                "them; choose another output file or delete it to start over.")
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
        changed = differences(stored, fingerprint)
        if changed:
            raise OutputFileError(
                f"{output} holds rows of another run ({'; '.join(changed)}); choose another "
                f"output file, or delete {output.name} and {sidecar.name} to start over.")
        return _complete_rows(output, total)
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n",
                       encoding="utf-8")
    return 0


def stored_seed(output: Path) -> int | None:
    """The run seed recorded beside an output that already holds rows."""
    sidecar = sidecar_path(output)
    if not (output.exists() and output.stat().st_size and sidecar.exists()):
        return None
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))["settings"]["seed"]
    except (ValueError, KeyError, TypeError):
        return None


def _complete_rows(output: Path, total: int) -> int:
    """Cut a partial last line; check the complete ones are rows 0..n-1."""
    data = output.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(output, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    lines = data[:end].splitlines()
    for number, line in enumerate(lines):
        try:
            index = json.loads(line)["index"]
        except (ValueError, KeyError, TypeError):
            index = None
        if index != number:
            raise OutputFileError(f"{output} line {number + 1} is not row {number} of this run; "
                                  "the file was changed by hand. Delete it to start over.")
    if len(lines) > total:
        raise OutputFileError(f"{output} holds {len(lines)} rows but the prompts have {total}.")
    return len(lines)


class RowWriter:
    """Appends complete lines, one write and fsync per call."""

    def __init__(self, output: Path):
        self._fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)

    def write(self, rows: list[dict]) -> None:
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: leave no partial line behind
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - written)
            raise OSError(f"Only {written} of {len(data)} bytes were written (disk full?).")
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
