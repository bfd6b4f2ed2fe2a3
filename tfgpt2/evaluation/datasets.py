"""Finding and reading each benchmark's test data in its standard layout,
and `--download` through the `datasets` library.

Every reader takes a file or a directory holding one of the expected files
(`DATA_FILES`), and raises `DataError` with the expected file names when it
cannot find them or they are not in the expected format.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path

from tfgpt2.files import atomic_path


TASK_NAMES = ("lambada", "cbt-cn", "cbt-ne", "wikitext2", "wikitext103", "ptb", "1bw", "enwik8",
              "text8", "text", "bias")

# What --max_examples counts, per task.
_EXAMPLE_UNITS = {"lambada": "passages", "cbt-cn": "questions", "cbt-ne": "questions",
                  "bias": "templates", "text8": "words (text8 is one line)"}


def example_unit(task: str) -> str:
    return _EXAMPLE_UNITS.get(task, "lines")


class DataError(ValueError):
    """A data file is missing, empty or not in the expected format."""


@dataclasses.dataclass(frozen=True)
class DataFiles:
    """The test files a task reads, first the preferred one, and where they
    come from (for `--help` and error messages)."""

    names: tuple[str, ...]
    source: str


DATA_FILES = {
    "lambada": DataFiles(
        ("lambada_test.jsonl", "lambada_test_plain_text.txt"),
        "OpenAI's de-tokenized LAMBADA test set (lambada_test.jsonl, one {\"text\": ...} per "
        "line; the version the GPT-2 paper used) or the original release's "
        "lambada_test_plain_text.txt (one tokenized passage per line)"),
    "cbt-cn": DataFiles(("cbtest_CN_test_2500ex.txt",),
                        "the Children's Book Test, CBTest/data/cbtest_CN_test_2500ex.txt"),
    "cbt-ne": DataFiles(("cbtest_NE_test_2500ex.txt",),
                        "the Children's Book Test, CBTest/data/cbtest_NE_test_2500ex.txt"),
    "wikitext2": DataFiles(("wiki.test.tokens", "wiki.test.raw"),
                           "WikiText-2 v1: wikitext-2/wiki.test.tokens (or the raw release's "
                           "wikitext-2-raw/wiki.test.raw)"),
    "wikitext103": DataFiles(("wiki.test.tokens", "wiki.test.raw"),
                             "WikiText-103 v1: wikitext-103/wiki.test.tokens (or "
                             "wikitext-103-raw/wiki.test.raw)"),
    "ptb": DataFiles(("ptb.test.txt",), "Mikolov's Penn Treebank, simple-examples/data/ptb.test.txt"),
    "1bw": DataFiles(("news.en.heldout-00000-of-00050",),
                     "the One Billion Word benchmark's test set, heldout-monolingual.tokenized."
                     "shuffled/news.en.heldout-00000-of-00050"),
    "enwik8": DataFiles(("enwik8", "enwik8.zip"),
                        "the Hutter Prize's enwik8 (100,000,000 bytes; the test split is the "
                        "last 5,000,000), plain or zipped"),
    "text8": DataFiles(("text8", "text8.zip"),
                       "text8 (100,000,000 characters; the test split is the last 5,000,000), "
                       "plain or zipped"),
}

# enwik8 and text8: 90M / 5M / 5M train / valid / test, the standard split.
HUTTER_SIZE = 100_000_000
HUTTER_TEST_SIZE = 5_000_000


def expected_files(task: str) -> str:
    files = DATA_FILES[task]
    return f"{' or '.join(files.names)} ({files.source})"


def find_data_file(task: str, path: str | os.PathLike | None) -> Path:
    """The data file for `task`: `path` itself if it is a file, else the
    first expected file found in the directory `path`."""
    if path is None or str(path) == "":
        raise DataError(f"--task={task} needs --data: the path of {expected_files(task)}, "
                        "or a directory holding it.")
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in DATA_FILES[task].names:
            for candidate in (path / name, *sorted(path.glob(f"*/{name}"))):
                if candidate.is_file():
                    return candidate
        raise DataError(f"{path} holds no {' or '.join(DATA_FILES[task].names)}; --task={task} "
                        f"expects {expected_files(task)}.")
    raise DataError(f"{path} does not exist; --task={task} expects {expected_files(task)}.")


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a .zip holding one file is read through."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise DataError(f"{path} holds {len(members)} files; expected the one "
                                    "data file.")
                data = archive.read(members[0])
        except zipfile.BadZipFile as err:
            raise DataError(f"{path} is not a valid zip archive ({err}).") from err
    else:
        data = path.read_bytes()
    if not data.strip():
        raise DataError(f"{path} is empty: nothing to evaluate.")
    return data


def decode_utf8(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {err.start}); "
                        "pass a text file.") from err


def read_text(path: Path) -> str:
    text = decode_utf8(read_bytes(path), path)
    return text.replace("\r\n", "\n")


def hutter_test_split(data: bytes, path: Path, name: str) -> bytes:
    """The last 5,000,000 bytes of the full 100,000,000-byte file; any other
    file is taken as the test split itself."""
    if len(data) == HUTTER_SIZE:
        return data[-HUTTER_TEST_SIZE:]
    if path.name in (name, f"{name}.zip"):
        raise DataError(f"{path} has {len(data):,} bytes; the full {name} has "
                        f"{HUTTER_SIZE:,}. Pass the complete file (the test split is its "
                        "last 5,000,000 bytes) or a file holding the test split alone.")
    return data


def first_lines(text: str, count: int | None) -> str:
    """The first `count` lines, each with its line break (all if None)."""
    if count is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[:count])


def first_words(text: str, count: int | None) -> str:
    """text8's examples: its first `count` space-separated words."""
    if count is None:
        return text
    return " ".join(text.split(" ")[:count])


def first_byte_lines(data: bytes, count: int | None) -> bytes:
    if count is None:
        return data
    return b"".join(data.splitlines(keepends=True)[:count])


# ----------------------------------------------------------------------------
# Format checks: a wrong file fails here with what was expected
# ----------------------------------------------------------------------------


def check_wikitext(text: str, path: Path) -> None:
    """WikiText lines start with a space (blank lines are a lone space) and
    the file has ` = Title = ` headings."""
    for number, line in enumerate(text.split("\n"), 1):
        if line and not line.startswith(" "):
            raise DataError(f"{path} line {number} does not start with a space, as every line "
                            f"of WikiText's wiki.test.tokens does: is it WikiText? Got "
                            f"{line[:60]!r}.")
    if " = " not in text:
        raise DataError(f"{path} has no ' = Title = ' heading: is it WikiText's "
                        "wiki.test.tokens?")


def check_ptb(text: str, path: Path) -> None:
    """Mikolov's PTB: lower case, no digits (numbers are N)."""
    for number, line in enumerate(text.split("\n"), 1):
        words = line.split()
        bad = [w for w in words if w != "N" and (w != w.lower() or any(c.isdigit() for c in w))]
        if bad:
            raise DataError(f"{path} line {number} has {bad[0]!r}: Mikolov's ptb.test.txt is "
                            "lower case with every number written N. Is it that file?")


# ----------------------------------------------------------------------------
# --download through the `datasets` library
# ----------------------------------------------------------------------------

# Task -> (dataset, config, split) on the Hugging Face hub.
HUB_DATASETS = {
    "lambada": ("EleutherAI/lambada_openai", "default", "test"),
    "cbt-cn": ("cam-cst/cbt", "CN", "test"),
    "cbt-ne": ("cam-cst/cbt", "NE", "test"),
    "wikitext2": ("Salesforce/wikitext", "wikitext-2-v1", "test"),
    "wikitext103": ("Salesforce/wikitext", "wikitext-103-v1", "test"),
    "ptb": ("ptb-text-only/ptb_text_only", "penn_treebank", "test"),
}


def _rows_to_file(task: str, rows) -> bytes:
    """The hub rows written back in the task's standard file format."""
    out = io.StringIO()
    if task == "lambada":
        for row in rows:
            out.write(json.dumps({"text": row["text"]}) + "\n")
    elif task.startswith("cbt"):
        for row in rows:
            for i, sentence in enumerate(row["sentences"], 1):
                out.write(f"{i} {sentence}\n")
            out.write(f"21 {row['question']}\t{row['answer']}\t\t{'|'.join(row['options'])}\n\n")
    elif task.startswith("wikitext"):
        for row in rows:
            line = row["text"]
            out.write(line if line.endswith("\n") else (line or " ") + "\n")
    elif task == "ptb":
        for row in rows:
            out.write(f" {row['sentence']} \n")
    return out.getvalue().encode("utf-8")


def download(task: str, directory: str | os.PathLike) -> Path:
    """Fetch `task`'s test set with the `datasets` library and write it into
    `directory` as the task's standard file (atomically). Returns its path.

    Raises DataError with a one-line reason when `datasets` is missing, the
    hub cannot be reached, or the task has no hub source."""
    if task not in HUB_DATASETS:
        raise DataError(f"--download does not cover --task={task}; download "
                        f"{expected_files(task)} by hand and pass --data.")
    try:
        import datasets
    except ImportError:
        raise DataError("--download needs the `datasets` library (pip install datasets); or "
                        f"download {expected_files(task)} by hand and pass --data.") from None
    name, config, split = HUB_DATASETS[task]
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # offline, hub errors, missing configs alike
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"--download could not fetch {name} ({config}) for --task={task}: "
                        f"{reason[:200]}. Are you online? Or download "
                        f"{expected_files(task)} by hand and pass --data.") from err
    path = Path(directory).expanduser() / DATA_FILES[task].names[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_rows_to_file(task, rows))
    return path
