"""The README as a new user follows it: every block marked
`<!-- readme-test -->` in README.md is extracted from the file itself (so the
guides cannot drift from the code) and run offline, in a fresh directory,
against a small random GPT-2 saved there as `./gpt2-medium`: a local
directory is looked at before the hub, so the commands run exactly as
written. Fine-tuning commands get a few flags appended (fewer, shorter
steps); nothing else changes."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = "<!-- readme-test -->"
# Appended to fine-tuning commands: the same run, minutes shorter (absl takes
# a flag's last value).
SHORTER = {"--mode=finetune": ["--train_steps=2", "--seq_len=32", "--global_batch_size=2"]}
# What each block must leave behind, besides exiting with status 0.
PRODUCES = {
    "runs/medium": ["runs/medium/model.safetensors", "runs/medium/config.json"],
    "eval.json": ["eval.json"],
    "completions.jsonl": ["completions.jsonl", "completions.jsonl.run.json"],
    "--format=saved_model": ["serving/gpt2-medium/1/saved_model.pb"],
    "--format=tflite": ["artifacts/gpt2-medium.int8.tflite"],
    "--format=litertlm": ["artifacts/gpt2-medium.int8.litertlm"],
}
WIKITEXT = """
 = Lighthouses =

 A lighthouse is a tower , building , or other type of physical structure designed to emit light from a system of lamps and lenses . Lighthouses serve two purposes : as a navigational aid , and to warn boats of dangerous areas @-@ the rocks and reefs of a coast .

 = = History = =

 Before the development of clearly defined ports , mariners were guided by fires built on hilltops . Since raising the fire would improve the visibility , placing the fire on a platform became a practice that led to the development of the lighthouse .
"""


def marked_blocks(text: str):
    """(language, body) of each fenced block that follows the marker."""
    pattern = re.compile(re.escape(MARKER) + r"\s*\n```(\w*)\n(.*?)\n```", re.S)
    return [(match.group(1), match.group(2)) for match in pattern.finditer(text)]


def shell_commands(body: str):
    """The block's commands: continuation lines joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


BLOCKS = marked_blocks(README.read_text(encoding="utf-8"))


def block_id(block):
    language, body = block
    first = body.strip().splitlines()[0]
    return f"{language or 'sh'}: {first[:60]}"


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A fresh directory as the guides assume it: ./gpt2-medium (tiny, random,
    the real vocabulary), text files in data/, held_out.txt, prompts.txt,
    wikitext-2/."""
    from tfgpt2 import GPT2Config, GPT2LMHeadModel

    directory = tmp_path_factory.mktemp("user")
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128)
    GPT2LMHeadModel.from_config(config, seed=0).save_pretrained(directory / "gpt2-medium")
    (directory / "data").mkdir()
    paragraph = WIKITEXT.replace(" @-@ ", "-").replace(" ,", ",").replace(" .", ".")
    for i in range(3):
        (directory / "data" / f"part{i}.txt").write_text(paragraph * (i + 2), encoding="utf-8")
    (directory / "held_out.txt").write_text(paragraph, encoding="utf-8")
    (directory / "prompts.txt").write_text("The meaning of life is\nOnce upon a time\n",
                                           encoding="utf-8")
    (directory / "wikitext-2").mkdir()
    (directory / "wikitext-2" / "wiki.test.tokens").write_text(WIKITEXT, encoding="utf-8")
    return directory


def run(argv, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, (
        f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
        f"{result.stderr[-4000:]}")
    return result


def test_the_readme_has_two_set_up_commands_and_marked_guides():
    text = README.read_text(encoding="utf-8")
    set_up = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```\n(.*?)\n```", set_up, re.S)
    assert len(commands) == 2, commands
    assert commands[0].startswith("pip install -e . && python main.py --mode=")
    assert commands[1] == 'pip install -e ".[test]" && python -m pytest -n 2'
    languages = {language or "sh" for language, _ in BLOCKS}
    assert languages == {"sh", "python"}
    # Every mode of main.py has a guide that runs.
    modes = set(re.findall(r"--mode=(\w+)", " ".join(body for _, body in BLOCKS)))
    assert modes == {"generate", "finetune", "eval", "export"}, modes


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[block_id(b) for b in BLOCKS])
def test_readme_block_runs_as_written(block, user_dir):
    language, body = block
    if language == "python":
        result = run([sys.executable, "-c", body], user_dir)
        assert "Traceback" not in result.stderr
    else:
        for command in shell_commands(body):
            argv = shlex.split(command)
            assert argv[:2] == ["python", "main.py"], f"not a main.py command: {command}"
            extra = [flag for key, flags in SHORTER.items() if key in argv for flag in flags]
            result = run([sys.executable, str(ROOT / "main.py"), *argv[2:], *extra], user_dir)
            # Every mode ends by saying what it did; a generate prints text.
            assert result.stdout.strip(), command
    for key, paths in PRODUCES.items():
        if key in body:
            for path in paths:
                assert (user_dir / path).exists(), f"{path} missing after:\n{body}"


def test_what_the_guides_write_in_the_repository_is_ignored_by_git():
    """Every output the README's and export/README's commands write (output
    directories, reports, save_pretrained targets) is in .gitignore."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    text = README.read_text() + (ROOT / "export" / "README.md").read_text()
    outputs = set(re.findall(r"--(?:output_dir|report|output_file)=([\w./-]+)", text))
    outputs |= set(re.findall(r"save_pretrained\(\"([\w./-]+)\"\)", text))
    outputs |= {"gpt2-medium"}  # the offline copy users save next to the repository
    assert {"artifacts", "serving/gpt2-medium", "eval.json"} <= outputs
    for path in sorted(p for p in outputs if not p.startswith("/")):  # inside the repository
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} (written by a guide) is not in .gitignore"
