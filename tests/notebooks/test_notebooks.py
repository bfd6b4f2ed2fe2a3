"""The notebooks: committed without outputs, and each one executed end to end
with the tiny random model, in a Jupyter kernel of this interpreter, failing
on the first error cell; the plots and the export table must be produced."""

import os
import sys

import nbformat
import pytest

from notebook_support import MODEL_VARIABLE, NOTEBOOK_DIR, NOTEBOOKS, execute, stripped

# What each notebook must show besides text: a matplotlib figure, or (export)
# the sizes and speeds table.
EXPECTED_OUTPUT = {
    "quickstart.ipynb": ("image/png", None),
    "finetune.ipynb": ("image/png", None),
    "evaluate.ipynb": ("image/png", None),
    "export.ipynb": ("text/markdown", "tokens/s"),
}
# Appended to the executed copy: which Python ran the cells.
KERNEL_PROBE = "import sys\nprint(sys.prefix)"


def read(name):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs]


def test_the_notebooks_are_the_ones_tested():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert set(EXPECTED_OUTPUT) == set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    assert stripped(notebook) == notebook, (
        f"notebooks/{name} holds outputs or execution counts; strip them with "
        f"`python tests/notebooks/notebook_support.py notebooks/{name}` before committing.")
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_cells_name_the_model_variable(name):
    cells = read(name).cells
    first_markdown = next(c for c in cells if c.cell_type == "markdown")
    first_code = next(c for c in cells if c.cell_type == "code")
    assert cells[0] is first_markdown and MODEL_VARIABLE in first_markdown.source
    assert f'os.environ.get("{MODEL_VARIABLE}", "gpt2-medium")' in first_code.source


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_end_to_end_with_the_tiny_model(name, tmp_path):
    notebook = read(name)
    notebook.cells.append(nbformat.v4.new_code_cell(KERNEL_PROBE, id="kernel-probe"))
    workdir, scratch = tmp_path / "workdir", tmp_path / "tmp"
    workdir.mkdir()
    scratch.mkdir()
    # A kernel as Jupyter starts it: matplotlib's inline backend (not a
    # headless MPLBACKEND the environment may set), temporary files in tmp_path.
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env.update({MODEL_VARIABLE: "tiny", "TMPDIR": str(scratch)})
    try:
        execute(notebook, workdir, env, connection_file=tmp_path / "kernel.json")
    finally:  # keep the executed copy next to the test's files, for a look
        nbformat.write(notebook, str(tmp_path / name))

    printed = outputs(notebook)
    assert not [o for o in printed if o.output_type == "error"]
    probe = notebook.cells[-1].outputs
    assert probe and probe[0].text.strip() == sys.prefix, "the kernel ran another Python"
    mime, contains = EXPECTED_OUTPUT[name]
    shown = [o.data[mime] for o in printed if mime in o.get("data", {})]
    assert shown, f"{name} produced no {mime} output"
    if contains:
        assert any(contains in text for text in shown)
    # The tiny path writes only to temporary directories, never where it runs.
    assert not list(workdir.iterdir())
