"""The command line as a user meets it: `python main.py ...` in a fresh
process. Modes have their own tests; these check what all modes share."""

import os
import subprocess
import sys

import pytest

from tfgpt2.cli import flag_spelling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*flags, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *flags],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=environment)


def test_generate_prints_each_continuation_without_tensorflow_noise(tiny_checkpoint):
    result = run("--mode=generate", f"--model={tiny_checkpoint}", "--prompt=Hello there",
                 "--prompt=Second prompt", "--max_new_tokens=5", "--nodo_sample")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--- 0 ---\nHello there" in result.stdout
    assert "--- 1 ---\nSecond prompt" in result.stdout
    for noise in ("oneDNN", "cuda", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in result.stderr, result.stderr


def test_generate_with_int8_quantization_prints_the_quantized_models_text(tiny_checkpoint):
    from tfgpt2 import GPT2LMHeadModel

    result = run("--mode=generate", f"--model={tiny_checkpoint}", "--prompt=Hello there",
                 "--max_new_tokens=5", "--nodo_sample", "--quantization=int8")
    assert result.returncode == 0, result.stderr[-2000:]
    model = GPT2LMHeadModel.from_pretrained(tiny_checkpoint)
    model.quantize("int8")  # tests/modeling/test_quantization.py checks it against NumPy
    expected = model.generate("Hello there", max_new_tokens=5, do_sample=False)
    assert result.stdout == f"--- 0 ---\n{expected}\n"


def test_generate_in_bfloat16_prints_the_bf16_models_text(tiny_checkpoint):
    from tfgpt2 import GPT2LMHeadModel

    result = run("--mode=generate", f"--model={tiny_checkpoint}", "--prompt=Hello there",
                 "--max_new_tokens=5", "--nodo_sample", "--precision=bfloat16")
    assert result.returncode == 0, result.stderr[-2000:]
    # tests/modeling/test_bfloat16.py checks the bf16 model against float32.
    model = GPT2LMHeadModel.from_pretrained(tiny_checkpoint, dtype="bfloat16")
    expected = model.generate("Hello there", max_new_tokens=5, do_sample=False)
    assert result.stdout == f"--- 0 ---\n{expected}\n"


def test_beams_alone_mean_greedy_beam_search(tiny_checkpoint):
    result = run(f"--model={tiny_checkpoint}", "--prompt=Hello", "--num_beams=3",
                 "--max_new_tokens=4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--- 0 ---\nHello" in result.stdout


def test_library_errors_speak_in_flags(tiny_checkpoint):
    bad = run(f"--model={tiny_checkpoint}", "--top_p=2")
    assert bad.returncode == 1 and "top_p must be in (0, 1]" in bad.stderr
    assert "Traceback" not in bad.stderr
    long = run(f"--model={tiny_checkpoint}", "--prompt=" + "word " * 120, "--max_new_tokens=8")
    assert long.returncode == 1
    assert "pass --truncate_prompt to keep the prompt's last tokens" in long.stderr
    truncated = run(f"--model={tiny_checkpoint}", "--prompt=" + "word " * 120,
                    "--max_new_tokens=8", "--truncate_prompt", "--nodo_sample")
    assert truncated.returncode == 0, truncated.stderr[-2000:]


def test_tflite_generation_without_litert_or_the_file_says_what_to_do(tmp_path):
    missing = tmp_path / "nope.tflite"
    result = run("--mode=generate", f"--tflite={missing}", "--prompt=Hi")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"No .tflite at {missing}: export one with" in result.stderr
    script = ("import runpy, sys\nsys.modules['ai_edge_litert'] = None\n"
              f"sys.argv = ['main.py', '--mode=generate', '--tflite={missing}', '--prompt=Hi']\n"
              f"runpy.run_path({os.path.join(ROOT, 'main.py')!r}, run_name='__main__')\n")
    absent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert absent.returncode == 2 and "Traceback" not in absent.stderr, absent.stderr[-2000:]
    assert "pip install 'tfgpt2[litert]'" in absent.stderr


def test_usage_mistakes_are_one_line():
    result = run("--stream", "--prompt=a", "--prompt=b")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --stream prints one continuation: pass exactly one --prompt (got 2)."]
    stray = run("--mode=generate", "stray words")
    assert stray.returncode == 2 and len(stray.stderr.strip().splitlines()) == 1


def test_help_lists_every_mode_with_an_example():
    result = run("--help")
    assert result.returncode == 0
    assert "--mode=generate" in result.stdout and "e.g. python main.py --mode=generate" in result.stdout
    assert "--max_new_tokens" in result.stdout


@pytest.mark.parametrize("message,expected", [
    ("pass truncate_prompt=True to keep", "pass --truncate_prompt to keep"),
    ("use do_sample=False (greedy)", "use --nodo_sample (greedy)"),
    ("got top_k=-1.", "got --top_k=-1."),
    ("max_length=30 exceeds", "max_length=30 exceeds"),  # not a flag: unchanged
])
def test_flag_spelling(message, expected):
    assert flag_spelling(message, ["truncate_prompt", "do_sample", "top_k"]) == expected
