"""The JSON report (atomic, merged by task) and the screen table."""

import json

import pytest

from tfgpt2.evaluation.report import TaskResult, format_table, write_report


def result(task="wikitext2", value=22.5):
    return TaskResult(task=task, metric="perplexity", value=value, unit="word", num_units=100,
                      num_tokens=130, total_nll=311.4, stride=512, window=1024)


def test_report_merges_tasks_of_the_same_model(tmp_path):
    path = tmp_path / "report.json"
    write_report(path, "gpt2-medium", [result("wikitext2", 30.0)])
    write_report(path, "gpt2-medium", [result("ptb", 50.0)])
    write_report(path, "gpt2-medium", [result("wikitext2", 22.5)])  # replaces, keeps ptb
    report = json.loads(path.read_text())
    assert report["model"] == "gpt2-medium"
    assert {t["task"]: t["value"] for t in report["tasks"]} == {"ptb": 50.0, "wikitext2": 22.5}
    record = report["tasks"][-1]
    assert record == {"task": "wikitext2", "metric": "perplexity", "value": 22.5, "unit": "word",
                      "num_units": 100, "num_tokens": 130, "total_nll": 311.4, "stride": 512,
                      "window": 1024}
    write_report(path, "my-finetune", [result("ptb", 40.0)])  # another model starts afresh
    assert [t["task"] for t in json.loads(path.read_text())["tasks"]] == ["ptb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temp files left


def test_report_refuses_to_overwrite_another_file(tmp_path):
    path = tmp_path / "notes.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="not a tfgpt2 evaluation report"):
        write_report(path, "gpt2-medium", [result()])
    path.write_text("not json")
    with pytest.raises(ValueError, match="is not a JSON report"):
        write_report(path, "gpt2-medium", [result()])
    assert path.read_text() == "not json"


def test_choice_task_records_correct_and_total():
    record = TaskResult(task="cbt-cn", metric="accuracy", value=50.0, unit="question",
                        num_units=2, num_tokens=9, total_nll=3.0, stride=None, window=1024,
                        correct=1, total=2).to_json()
    assert (record["correct"], record["total"], record["stride"]) == (1, 2, None)


def test_table_shows_the_model_card_only_for_gpt2_medium():
    lambada = TaskResult(task="lambada", metric="perplexity", value=16.1, unit="passage",
                         num_units=5153, num_tokens=6000, total_nll=1.0, stride=None,
                         window=1024, correct=2800, total=5153,
                         figures={"perplexity": 16.1, "accuracy": 54.3})
    table = format_table([result(), lambada], "gpt2-medium")
    assert "model card (GPT-2 Medium)" in table
    assert "| wikitext2 | perplexity per word | 22.50 | 22.76 | 100 words | 130 |" in table
    assert "| lambada | accuracy (%) | 54.30 | 55.48 | 2,800 / 5,153 correct | 6,000 |" in table
    assert "| lambada | perplexity | 16.10 | 15.60 |" in table
    other = format_table([result()], "./my-finetuned-model")
    assert "model card" not in other and "22.76" not in other
