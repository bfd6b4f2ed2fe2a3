"""The notebooks under test, how their outputs are stripped, and how one is
executed in a Jupyter kernel of this very interpreter.

Also a command, to strip outputs before committing:

    python tests/notebooks/notebook_support.py notebooks/*.ipynb
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("quickstart.ipynb", "finetune.ipynb", "evaluate.ipynb", "export.ipynb")
MODEL_VARIABLE = "TFGPT2_NOTEBOOK_MODEL"
# Cell metadata that records a run (nbclient's timings, Jupyter's view state).
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def stripped(notebook):
    """A copy of `notebook` without outputs, execution counts or run metadata."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata.pop("widgets", None)
    return notebook


def strip_file(path: Path) -> bool:
    """Strip `path` in place (written to a temporary file, then renamed);
    returns whether anything changed."""
    notebook = nbformat.read(path, as_version=4)
    clean = stripped(notebook)
    if clean == notebook:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(clean, f)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def kernel_manager(connection_file: Path):
    """A manager for a `python3` kernel that runs `sys.executable`.

    Only ipykernel's own spec is looked at (no kernel directories): a
    `python3` kernel installed for another interpreter, in the user's or the
    system's Jupyter folders, cannot be picked up instead. ipykernel builds
    that spec's command from `sys.executable`."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    specs = KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs,
                              connection_file=str(connection_file))


def execute(notebook, workdir: Path, env: dict, connection_file: Path, timeout: int = 900):
    """Run every cell of `notebook` (in place) in a fresh kernel started in
    `workdir` with the environment `env`; raises nbclient's
    CellExecutionError, with the cell's traceback, at the first failing cell."""
    from nbclient import NotebookClient

    client = NotebookClient(notebook, km=kernel_manager(connection_file), timeout=timeout,
                            startup_timeout=180, allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    # The client shuts down only kernels it made itself; this one too, please.
    client.execute(env=env, cleanup_kc=True)
    return notebook


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: python {sys.argv[0]} NOTEBOOK.ipynb ...")
    for name in sys.argv[1:]:
        print(("stripped  " if strip_file(Path(name)) else "unchanged ") + name)
