"""`tfgpt2.files.atomic_path` and every writer that goes through it: files
end with the mode a plain `open` gives (0o666 minus the umask, not
mkstemp's 0600), and an error mid-write leaves the old file and no
temporary one."""

import contextlib
import json
import os
import sys
import types

import numpy as np
import pytest

from tfgpt2.files import atomic_path


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return path.stat().st_mode & 0o777


MASKS = [0o022, 0o077]


@pytest.mark.parametrize("mask", MASKS)
def test_the_file_gets_0666_minus_the_umask(tmp_path, mask):
    target = tmp_path / "out.bin"
    with umask(mask):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o666 & ~mask


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_error_mid_write_keeps_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the ne")
            raise error()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_the_temporary_is_beside_the_target_and_replaces_it(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and tmp != target
        assert target.read_text() == "old"  # untouched until the block ends
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


# --- each writer ------------------------------------------------------------------
@pytest.mark.parametrize("mask", MASKS)
def test_report_mode(tmp_path, mask):
    from tfgpt2.evaluation.report import TaskResult, write_report

    result = TaskResult(task="ptb", metric="perplexity", value=40.0, unit="word", num_units=100,
                        num_tokens=130, total_nll=311.4, stride=512, window=1024)
    with umask(mask):
        path = write_report(tmp_path / "reports" / "r.json", "gpt2", [result])
    assert json.loads(path.read_text())["model"] == "gpt2"
    assert mode(path) == 0o666 & ~mask


@pytest.mark.parametrize("mask", MASKS)
def test_downloaded_dataset_mode(tmp_path, monkeypatch, mask):
    from tfgpt2.evaluation import datasets

    fake = types.SimpleNamespace(load_dataset=lambda *a, **k: [{"sentence": "a b"}])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with umask(mask):
        path = datasets.download("ptb", tmp_path / "ptb")
    assert path.read_text() == " a b \n"
    assert mode(path) == 0o666 & ~mask


@pytest.mark.parametrize("mask", MASKS)
def test_training_token_cache_mode(tmp_path, mask):
    from tfgpt2.tokenizer import BytePairTokenizer
    from tfgpt2.training import data

    text = tmp_path / "doc.txt"
    text.write_text("Some text to tokenize.", encoding="utf-8")
    with umask(mask):
        data.token_stream([str(text)], BytePairTokenizer(), "file", str(tmp_path / "tokens"))
    (cache,) = (tmp_path / "tokens").iterdir()
    assert cache.suffix == ".npy" and np.load(cache).size > 1
    assert mode(cache) == 0o666 & ~mask


@pytest.mark.parametrize("mask", MASKS)
def test_tokenizer_table_cache_mode(tmp_path, monkeypatch, mask):
    from tfgpt2.tokenizer import table_cache, vocab

    monkeypatch.setenv("TFGPT2_CACHE_DIR", str(tmp_path))
    gpt2 = vocab.load_vocabulary()
    with umask(mask):
        table_cache.load_or_build(gpt2)
    path = table_cache.cache_path(gpt2)
    assert os.listdir(path.parent) == [path.name]
    assert mode(path) == 0o666 & ~mask


@pytest.mark.parametrize("mask", MASKS)
def test_save_pretrained_mode(tmp_path, mask):
    from model_support import small_config
    from tfgpt2 import GPT2Model

    model = GPT2Model.from_config(small_config(), seed=0)
    with umask(mask):
        model.save_pretrained(tmp_path / "one")
        model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    written = [p for d in ("one", "sharded") for p in (tmp_path / d).iterdir()]
    names = {p.name for p in written}
    assert {"model.safetensors", "model.safetensors.index.json", "config.json"} <= names
    assert any(name.startswith("model-0") for name in names)
    assert {p.name: mode(p) for p in written} == {p.name: 0o666 & ~mask for p in written}
