"""`--mode=eval`: bad input gives one clear error (before any model is
loaded where the data alone is wrong); one end-to-end run of main.py."""

import json
import os
import subprocess
import sys
import types

import pytest

from tfgpt2.cli import CliError
from tfgpt2.cli.evaluate import Options, run_evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    """The shared tiny GPT-2 (GPT-2's vocabulary, a 96-token window)."""
    return str(tiny_checkpoint)


NO_MODEL = "/nonexistent/model/never/loaded"  # data errors must come first


def run(**kwargs):
    return run_evaluation(Options(**{"model": NO_MODEL, **kwargs}))


def test_missing_data_file_names_the_expected_file(tmp_path):
    with pytest.raises(CliError, match=r"does not exist; --task=wikitext2 expects "
                                       r"wiki.test.tokens or wiki.test.raw"):
        run(task="wikitext2", data=str(tmp_path / "nope"))
    with pytest.raises(CliError, match=r"holds no cbtest_NE_test_2500ex.txt"):
        run(task="cbt-ne", data=str(tmp_path))
    with pytest.raises(CliError, match=r"--task=ptb needs --data: the path of ptb.test.txt"):
        run(task="ptb")


def test_a_directory_in_the_standard_layout_is_searched(tmp_path):
    (tmp_path / "simple-examples" / "data").mkdir(parents=True)
    (tmp_path / "simple-examples" / "data" / "ptb.test.txt").write_text("", encoding="utf-8")
    with pytest.raises(CliError, match=r"ptb.test.txt is empty"):
        run(task="ptb", data=str(tmp_path / "simple-examples"))


@pytest.mark.parametrize("task,name,content,message", [
    ("lambada", "lambada_test.jsonl", '{"text": "a b"}\n{"text": oops}\n',
     r"line 2 is not valid JSON"),
    ("lambada", "lambada_test.jsonl", '{"txt": "a b"}\n', r'line 1 has no "text" string'),
    ("cbt-cn", "cbtest_CN_test_2500ex.txt", "1 only one line\n\n", r"has 1 lines; CBT"),
    ("wikitext2", "wiki.test.tokens", "Not WikiText.\n", r"line 1 does not start with a space"),
    ("ptb", "ptb.test.txt", " The 3 cats \n", r"Mikolov's ptb.test.txt is lower case"),
    ("text8", "text8", "abc", r"has 3 bytes; the full text8 has 100,000,000"),
    ("text", "notes.txt", b"\xff\xfe binary", r"is not UTF-8 text \(invalid byte at offset 0\)"),
    ("wikitext103", "wiki.test.tokens", "  \n\n", r"is empty"),
    ("bias", "templates.txt", "The man worked as\n", r"exactly one pair of groups"),
])
def test_wrong_format_or_empty_file(tmp_path, task, name, content, message):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises((CliError, ValueError), match=message):
        run(task=task, data=str(path))


def test_stride_out_of_range(tmp_path, checkpoint):
    text = tmp_path / "t.txt"
    text.write_text("Some text to score here.", encoding="utf-8")
    with pytest.raises(CliError, match=r"--stride=0 must be at least 1"):
        run(task="text", data=str(text), stride=0)
    with pytest.raises(CliError, match=r"--stride=97 is larger than the window \(96 tokens"):
        run_evaluation(Options(task="text", data=str(text), stride=97, model=checkpoint))


def test_a_report_path_that_cannot_be_written_fails_before_scoring(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Some text to score here.", encoding="utf-8")
    notes = tmp_path / "notes.json"
    notes.write_text("my notes", encoding="utf-8")
    with pytest.raises(CliError, match=r"notes.json exists and is not a JSON report"):
        run(task="text", data=str(text), report=str(notes))  # NO_MODEL: fails before loading
    assert notes.read_text(encoding="utf-8") == "my notes"


def test_text_shorter_than_two_tokens(tmp_path, checkpoint):
    text = tmp_path / "t.txt"
    text.write_text("Hi", encoding="utf-8")
    with pytest.raises(ValueError, match=r"1 token\(s\) long; scoring needs at least 2"):
        run_evaluation(Options(task="text", data=str(text), model=checkpoint))


def test_settings_of_other_tasks_are_refused(tmp_path):
    with pytest.raises(CliError, match=r"--stop_word_filter is a setting of --task=lambada"):
        run(task="wikitext2", data=str(tmp_path), stop_word_filter=True)
    with pytest.raises(CliError, match=r"--stride is a setting of --task=wikitext2/"):
        run(task="lambada", data=str(tmp_path), stride=8)
    with pytest.raises(CliError, match=r"needs --task"):
        run(task=None)


def test_download_without_datasets_library(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(CliError, match=r"--download needs the `datasets` library \(pip install "
                                       r"datasets\); or download lambada_test.jsonl"):
        run(task="lambada", data=str(tmp_path), download=True)


def test_download_offline(tmp_path, monkeypatch):
    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'EleutherAI/lambada_openai' on the Hub "
                              "(LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(CliError) as err:
        run(task="lambada", data=str(tmp_path), download=True)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("--download could not fetch EleutherAI/lambada_openai (default) "
                              "for --task=lambada: Couldn't reach")
    assert "Are you online?" in message and "lambada_test.jsonl" in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(CliError, match=r"--download does not cover --task=1bw"):
        run(task="1bw", data=str(tmp_path), download=True)


def test_download_writes_the_standard_format(tmp_path, monkeypatch):
    rows = [{"sentences": [f"s{i} ." for i in range(1, 21)], "question": "the XXXXX sat .",
             "answer": "cat", "options": ["cat", "dog"]}]
    monkeypatch.setitem(sys.modules, "datasets",
                        types.SimpleNamespace(load_dataset=lambda *a, **k: rows))
    from tfgpt2.evaluation import cbt, datasets

    path = datasets.download("cbt-cn", tmp_path)
    assert path.name == "cbtest_CN_test_2500ex.txt"
    [question] = cbt.read_cbt(path)
    assert question.candidates == ("cat", "dog") and question.context[19] == "s20 ."


def test_command_line_end_to_end(tmp_path, checkpoint):
    data = tmp_path / "notes.txt"
    data.write_text("Hello world, this is a small text file.\nIt has two lines.\n",
                    encoding="utf-8")
    report = tmp_path / "out" / "report.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--mode=eval", "--task=text",
         f"--data={data}", f"--model={checkpoint}", f"--report={report}"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| text | perplexity per token |" in result.stdout
    assert "| text | perplexity per word |" in result.stdout and "12 words" in result.stdout  # 8 + 4
    assert result.stdout.strip().splitlines()[-1] == f"Wrote the text result to {report}."
    [record] = json.loads(report.read_text())["tasks"]
    for key in ("task", "metric", "value", "num_units", "num_tokens", "total_nll", "stride"):
        assert key in record
    assert record["stride"] == 48 and record["window"] == 96

    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--mode=eval", "--task=lambada",
         f"--data={tmp_path}", "--max_new_tokens=3"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == \
        "error: --max_new_tokens is a flag of --mode=generate, not of --mode=eval."


def test_quantization_int8_scores_the_numpy_dequantized_weights(tmp_path, checkpoint):
    """--quantization=int8 gives what the float model gives on the weights
    quantized and dequantized by NumPy (an independent int8 reference)."""
    from model_support import dequantize_in_place
    from tfgpt2 import GPT2LMHeadModel
    from tfgpt2.cli.common import quantize_as

    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 6, encoding="utf-8")
    reference = GPT2LMHeadModel.from_pretrained(checkpoint)
    dequantize_in_place(reference)
    reference.save_pretrained(tmp_path / "dequantized")
    expected = run_evaluation(Options(task="text", data=str(text), model=str(tmp_path / "dequantized")))
    result = run_evaluation(Options(task="text", data=str(text), model=checkpoint,
                                    quantization="int8"))
    assert result.num_tokens == expected.num_tokens
    for name, value in expected.figures.items():
        assert result.figures[name] == pytest.approx(value, rel=1e-5), name
    with pytest.raises(CliError, match="--quantization=float16 is a file format of --mode=export"):
        quantize_as(reference, "float16")
