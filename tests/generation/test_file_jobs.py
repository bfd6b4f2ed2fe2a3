"""`generate_file` on one device: what each row holds (greedy rows against
`generate`, prompt counts against tiktoken), that the file does not depend
on the batch size or on where a resumed run starts (a torn last line
included), and every bad input as one clear error that names the line and
writes nothing."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from file_jobs_support import ROWS, SETTINGS, write_jsonl
from tokenizer_support import oracle_ids

from tfgpt2.generation.output_file import OutputFileError, sidecar_path
from tfgpt2.generation.prompt_files import PromptFileError


@pytest.fixture(scope="module")
def model(file_model):
    return file_model


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rows_hold_prompt_text_counts_and_settings(model, reference):
    _, _, out, result = reference
    rows = lines(out)
    assert [r["index"] for r in rows] == list(range(len(ROWS)))
    assert result.rows == result.generated_rows == len(ROWS)
    for row, given in zip(rows, ROWS):
        assert row["prompt"] == given["prompt"]
        settings = row["settings"]
        for name in ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "seed"):
            default = dict(SETTINGS, do_sample=True, temperature=1.0, top_k=50, top_p=1.0)
            if name != "seed" or "seed" in given:
                assert settings[name] == given.get(name, default[name]), name
        # Empty prompts start from <|endoftext|>, as generate's do.
        assert row["prompt_tokens"] == max(1, len(oracle_ids(given["prompt"])))
        assert 0 <= row["generated_tokens"] <= settings["max_new_tokens"]
        assert row["stop_reason"] == ("length" if row["generated_tokens"]
                                      == settings["max_new_tokens"] else "eos")
    assert rows[1]["id"] == "fox"  # extra JSONL fields come back
    assert len({r["settings"]["seed"] for r in rows}) == len(rows)  # a seed per row


def test_greedy_rows_equal_generate(model, reference):
    for row in lines(reference[2]):
        if not row["settings"]["do_sample"]:
            expected = model.generate(row["prompt"], do_sample=False,
                                      max_new_tokens=row["settings"]["max_new_tokens"])
            assert row["prompt"] + row["generated_text"] == expected


def test_the_seed_changes_sampled_rows_only(model, reference, tmp_path):
    import tfgpt2

    _, prompts, out, _ = reference
    other = tmp_path / "seed8.jsonl"
    tfgpt2.generate_file(model, prompts, other, batch_size=4, progress=False,
                         **dict(SETTINGS, seed=8))
    for a, b, given in zip(lines(out), lines(other), ROWS):
        sampled_by_run_seed = given.get("do_sample", True) and "seed" not in given
        assert (a["generated_text"] != b["generated_text"]) == sampled_by_run_seed, given


def test_batch_size_and_resume_point_do_not_change_the_file(model, reference, tmp_path):
    import tfgpt2

    _, prompts, out, _ = reference
    whole = out.read_bytes()
    # Three rows written, then a torn fourth line, as a kill mid-write leaves.
    resumed = tmp_path / "resumed.jsonl"
    first_lines = whole.splitlines(keepends=True)
    resumed.write_bytes(b"".join(first_lines[:3]) + first_lines[3][:17])
    shutil.copy(sidecar_path(out), sidecar_path(resumed))
    result = tfgpt2.generate_file(model, prompts, resumed, batch_size=3, progress=False,
                                  **SETTINGS)
    assert resumed.read_bytes() == whole
    assert result.generated_rows == len(ROWS) - 3
    # Complete: a rerun writes nothing.
    again = tfgpt2.generate_file(model, prompts, resumed, batch_size=2, progress=False,
                                 **SETTINGS)
    assert again.generated_rows == 0 and resumed.read_bytes() == whole


def test_an_unseeded_run_records_its_seed_and_resumes_with_it(model, reference, tmp_path):
    import tfgpt2

    _, prompts, _, _ = reference
    out = tmp_path / "unseeded.jsonl"
    first = tfgpt2.generate_file(model, prompts, out, batch_size=4, progress=False,
                                 max_new_tokens=6)
    whole = out.read_bytes()
    out.write_bytes(b"".join(whole.splitlines(keepends=True)[:2]))
    resumed = tfgpt2.generate_file(model, prompts, out, batch_size=4, progress=False,
                                   max_new_tokens=6)
    assert resumed.seed == first.seed and out.read_bytes() == whole


# --- bad inputs: one error naming the line, nothing written ---------------------------


def refused(model, prompts, out, error=PromptFileError, **settings):
    import tfgpt2

    before = sorted(os.listdir(out.parent)) if out.parent.is_dir() else None
    with pytest.raises(error) as caught:
        tfgpt2.generate_file(model, prompts, out, progress=False, **{**SETTINGS, **settings})
    if before is not None:
        assert sorted(os.listdir(out.parent)) == before  # nothing written or left behind
    return str(caught.value)


@pytest.mark.parametrize("content, message", [
    ("", "holds no prompts"),
    ("\n  \n", "holds no prompts"),
    ('{"prompt": "a"}\n{"prompt": "b",}\n', "line 2: not JSON"),
    ('{"prompt": "a"}\n\n{"text": "b"}\n', 'line 3: no "prompt" field (found: text)'),
    ('["a"]\n', "line 1: a JSON list"),
    ('{"prompt": "a", "top_p": 2}\n', "line 1: top_p must be in (0, 1]"),
    ('{"prompt": "a", "max_new_tokens": "5"}\n', "line 1: max_new_tokens must be int"),
])
def test_bad_prompt_files(model, tmp_path, content, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(content, encoding="utf-8")
    assert message in refused(model, prompts, tmp_path / "out" / "x.jsonl")


def test_a_prompt_longer_than_the_context(model, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("short\n" + "word " * 200 + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    message = refused(model, prompts, out)
    count = len(oracle_ids("word " * 200))
    assert f"{prompts} line 2: A prompt of {count} tokens plus 6 new tokens exceeds" in message
    assert "truncate_prompt" in message


def test_another_runs_output_is_refused_saying_what_differs(model, reference, tmp_path):
    from tfgpt2 import GPT2LMHeadModel

    _, prompts, out, _ = reference
    held = tmp_path / "held.jsonl"
    shutil.copy(out, held)
    shutil.copy(sidecar_path(out), sidecar_path(held))
    message = refused(model, prompts, held, OutputFileError, temperature=0.5)
    assert "settings.temperature: 1.0 in the file's run vs 0.5 now" in message
    assert "settings.seed: 7 in the file's run vs 9 now" in refused(
        model, prompts, held, OutputFileError, seed=9)
    other = GPT2LMHeadModel.from_config(model.config, seed=1)
    assert "model.weights" in refused(other, prompts, held, OutputFileError)
    shorter = write_jsonl(tmp_path / "shorter.jsonl", ROWS[:3])
    assert "prompts.digest" in refused(model, shorter, held, OutputFileError)
    assert held.read_bytes() == out.read_bytes()


def test_an_unwritable_output_directory(model, reference, tmp_path):
    _, prompts, _, _ = reference
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        probe = locked / "probe"
        probe.touch()  # root writes anyway: use a directory no one may write
        probe.unlink()
        locked = "/sys"
    except PermissionError:
        pass
    out = os.path.join(locked, "out.jsonl")
    message = refused(model, prompts, Path(out), OutputFileError)
    assert f"Cannot write {out} (Permission denied in {locked})" in message
    assert "does not exist" in refused(model, prompts, tmp_path / "missing" / "out.jsonl",
                                       OutputFileError)


def test_command_line_errors_name_the_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a"}\nnot json\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "main.py", "--mode=generate", f"--prompts_file={prompts}",
         f"--output_file={tmp_path / 'out.jsonl'}"],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), text=True,
        capture_output=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f'error: {prompts} line 2: not JSON (Expecting value); each line must be an object like '
        '{"prompt": "..."}.']
    assert not (tmp_path / "out.jsonl").exists()

