"""`python main.py --mode=export` and `--mode=generate --tflite=FILE` as a
user runs them."""

import os
import subprocess
import sys

from conftest import ROOT


def run(*flags):
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *flags],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_export_tflite_then_generate_with_it(tiny_checkpoint, tiny_model, tmp_path):
    out = run("--mode=export", "--format=tflite", f"--model={tiny_checkpoint}",
              f"--output_dir={tmp_path}", "--quantization=none")
    assert out.returncode == 0, out.stderr[-2000:]
    path = tmp_path / f"{tiny_checkpoint.name}.none.tflite"
    assert path.is_file()
    assert out.stdout.strip().splitlines()[-1].startswith(f"Wrote .tflite (none) to {path} (")
    again = run("--mode=export", "--format=tflite", f"--model={tiny_checkpoint}",
                f"--output_dir={tmp_path}", "--quantization=none")
    assert again.returncode == 1 and "--overwrite" in again.stderr
    generated = run("--mode=generate", f"--tflite={path}", "--prompt=Hello there",
                    "--max_new_tokens=6", "--nodo_sample")
    assert generated.returncode == 0, generated.stderr[-2000:]
    expected = tiny_model.generate("Hello there", max_new_tokens=6, do_sample=False)
    assert generated.stdout == f"--- 0 ---\n{expected}\n"


def test_export_saved_model_writes_the_serving_layout(tiny_checkpoint, tmp_path):
    out = run("--mode=export", f"--model={tiny_checkpoint}", f"--output_dir={tmp_path}",
              "--version=7")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "7" / "saved_model.pb").is_file()
    assert "Wrote SavedModel (no XLA)" in out.stdout
    again = run("--mode=export", f"--model={tiny_checkpoint}", f"--output_dir={tmp_path}",
                "--version=7")
    lines = again.stderr.strip().splitlines()
    assert again.returncode == 1 and len(lines) == 1, again.stderr[-2000:]
    assert "pass --overwrite to replace it" in lines[0] and "--version=8" in lines[0]
    assert "(--overwrite)" not in lines[0]


def test_failed_exports_leave_no_empty_directories(tiny_model, tmp_path, monkeypatch):
    from tfgpt2.export import saved_model

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(saved_model.SavedModelTarget, "write", interrupted)
    destination = tmp_path / "new" / "serving"
    try:
        tiny_model.export(destination, format="tf_saved_model", version=1)
    except KeyboardInterrupt:
        pass
    assert os.listdir(tmp_path) == []
    existing = tmp_path / "kept"
    existing.mkdir()
    try:
        tiny_model.export(existing / "serving", format="tf_saved_model", version=1)
    except KeyboardInterrupt:
        pass
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(existing) == []


def test_flags_of_the_other_format_are_refused(tiny_checkpoint, tmp_path):
    out = run("--mode=export", "--format=tflite", "--xla", f"--output_dir={tmp_path}")
    assert out.returncode == 2 and "--xla does not apply to --format=tflite" in out.stderr
    missing = run("--mode=export", "--format=tflite")
    assert missing.returncode == 2 and "--output_dir is required" in missing.stderr
    with_beams = run("--mode=generate", f"--tflite={tmp_path / 'x.tflite'}", "--num_beams=2")
    assert with_beams.returncode == 2 and "--num_beams is not available with --tflite" in (
        with_beams.stderr)
