"""`pip install .` (not editable) as a user does it, then everything run from
another directory: the console command, `python -m tfgpt2`, both exports,
generation from the `.tflite`, and `model.export` in Python.

One venv is built for the module. Its dependencies come from the test run's
own environment (a path entry, so pip installs nothing from the network),
but tfgpt2 itself is installed into it from a copy of the source tree: an
import that works only from the repository fails here."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

# What is copied to build from: the source tree, without what a build or a
# test run leaves in it.
_NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ipynb_checkpoints", "runs", "artifacts")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, tfgpt2 command, a working directory outside the source)."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    # The test environment's packages, after the venv's own: a .pth line adds
    # the directory but runs none of its .pth files, so an editable tfgpt2
    # there stays invisible.
    (site / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    # --target puts console scripts in <site>/bin; a venv's live in <venv>/bin.
    command = env_dir / "bin" / "tfgpt2"
    shutil.move(site / "bin" / "tfgpt2", command)
    text = command.read_text().splitlines()
    command.write_text("\n".join([f"#!{python}"] + text[1:]) + "\n")
    work = base / "elsewhere"
    work.mkdir()
    return python, command, work


def run(argv, cwd, timeout=900):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_the_installed_package_is_imported_not_the_source(installed):
    python, _, work = installed
    out = run([python, "-c", "import tfgpt2, tfgpt2.export, tfgpt2.cli.main; "
                             "print(tfgpt2.__file__)"], work)
    assert out.returncode == 0, out.stderr[-2000:]
    path = Path(out.stdout.strip())
    assert "site-packages" in path.parts and ROOT not in str(path)


@pytest.mark.parametrize("how", ["command", "module"])
def test_help_from_the_console_command_and_python_m(installed, how):
    python, command, work = installed
    argv = [command, "--help"] if how == "command" else [python, "-m", "tfgpt2", "--help"]
    out = run(argv, work)
    assert out.returncode == 0, out.stderr[-2000:]
    for mode in ("generate", "finetune", "eval", "export"):
        assert f"--mode={mode}" in out.stdout
    assert "--format" in out.stdout and "--tflite" in out.stdout


def test_export_both_formats_and_generate_with_the_tflite(installed, tiny_checkpoint,
                                                          tiny_model):
    _, command, work = installed
    saved = run([command, "--mode=export", "--format=saved_model", f"--model={tiny_checkpoint}",
                 "--output_dir=serving"], work)
    assert saved.returncode == 0, saved.stderr[-2000:]
    assert (work / "serving" / "1" / "saved_model.pb").is_file()
    lite = run([command, "--mode=export", "--format=tflite", f"--model={tiny_checkpoint}",
                "--output_dir=artifacts", "--quantization=none"], work)
    assert lite.returncode == 0, lite.stderr[-2000:]
    path = work / "artifacts" / f"{tiny_checkpoint.name}.none.tflite"
    assert path.is_file()
    generated = run([command, "--mode=generate", f"--tflite={path}", "--prompt=Hello there",
                     "--max_new_tokens=6", "--nodo_sample"], work)
    assert generated.returncode == 0, generated.stderr[-2000:]
    expected = tiny_model.generate("Hello there", max_new_tokens=6, do_sample=False)
    assert generated.stdout == f"--- 0 ---\n{expected}\n"


def test_model_export_writes_the_serving_saved_model(installed, tiny_checkpoint):
    python, _, work = installed
    script = textwrap.dedent(f"""
        import json, tensorflow as tf, tfgpt2
        model = tfgpt2.GPT2LMHeadModel.from_pretrained({str(tiny_checkpoint)!r})
        path = model.export("exported", format="tf_saved_model", verbose=False)
        serve = tf.saved_model.load(str(path)).signatures["generate"]
        inputs = sorted(serve.structured_input_signature[1])
        out = serve(prompts=tf.constant(["Hello there"]), max_new_tokens=tf.constant([3]),
                    temperature=tf.constant([0.0]), top_k=tf.constant([0]),
                    top_p=tf.constant([1.0]), seed=tf.constant([0]))
        print(json.dumps({{"path": str(path), "inputs": inputs,
                          "num_tokens": out["num_tokens"].numpy().tolist()}}))
    """)
    out = run([python, "-c", script], work)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["path"] == "exported" and (work / "exported" / "saved_model.pb").is_file()
    assert "prompts" in result["inputs"] and result["num_tokens"] == [3]


def test_save_pretrained_into_a_directory_named_like_the_hub_model(installed):
    """What the guides do for offline use, from outside the source tree."""
    python, _, work = installed
    script = textwrap.dedent("""
        import json, tfgpt2
        config = tfgpt2.GPT2Config(n_layer=2, n_embd=64, n_head=4)
        tfgpt2.GPT2LMHeadModel.from_config(config, seed=0).save_pretrained("gpt2-medium")
        loaded = tfgpt2.GPT2LMHeadModel.from_pretrained("gpt2-medium")
        print(json.dumps(loaded.tokenizer.encode("Hello world")))
    """)
    out = run([python, "-c", script], work)
    assert out.returncode == 0, out.stderr[-3000:]
    from tokenizer_support import tiktoken_gpt2

    assert json.loads(out.stdout.strip().splitlines()[-1]) == tiktoken_gpt2().encode("Hello world")
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(
        os.listdir(work / "gpt2-medium"))
