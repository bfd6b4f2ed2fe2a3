"""Vocabulary loading: both file layouts, the offline GPT-2 copy (sha256
checked, never the network), hub names, clear errors, and files keras-hub
reads. Oracles: tiktoken, and the raw files read with json."""

import json
import shutil

import numpy as np
import pytest

import tokenizer_support as support
from tfgpt2.checkpoints import hub
from tfgpt2.tokenizer import tables as bpe_tables, vocab
from tfgpt2.tokenizer import GPT2Tokenizer


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network must not be used for GPT-2 names")

    monkeypatch.setattr(hub, "resolve_directory", refuse)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


@pytest.fixture(scope="module")
def gpt2():
    return vocab.load_vocabulary()


@pytest.fixture
def openai_dir(tmp_path):
    source = vocab.offline_gpt2_directory()
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(source / name, tmp_path / name)
    return tmp_path


def test_offline_copy_matches_the_pinned_hashes_and_tiktoken(gpt2):
    assert gpt2.size == 50257 and len(gpt2.merges) == 50000
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    enc = support.tiktoken_gpt2()
    ranks = enc._mergeable_ranks  # noqa: SLF001 -- the oracle's table
    assert {t: i for i, t in enumerate(gpt2.token_bytes) if i != 50256} == ranks
    assert vocab.bytes_to_unicode()[32] == "Ġ" and len(set(vocab.bytes_to_unicode().values())) == 256


@pytest.mark.parametrize("name", sorted(vocab.GPT2_NAMES))
def test_gpt2_names_load_offline(name, no_network):
    assert vocab.load_vocabulary(name).source == str(vocab.offline_gpt2_directory())
    assert GPT2Tokenizer.from_pretrained(name).encode("Hi there") == support.oracle_ids("Hi there")


def test_other_hub_names_go_through_hub_resolution(monkeypatch, openai_dir):
    seen = {}

    def resolve(name, files):
        seen.update(name=name, files=files)
        return openai_dir

    monkeypatch.setattr(hub, "resolve_directory", resolve)
    v = vocab.load_vocabulary("someone/gpt2-finetuned")
    assert seen == {"name": "someone/gpt2-finetuned", "files": hub.TOKENIZER_FILES}
    assert v.encoder["Ġthe"] == 262


def test_openai_and_hugging_face_layouts_agree(openai_dir, tmp_path_factory, gpt2):
    from_openai = vocab.read_vocabulary(openai_dir)
    hf_dir = tmp_path_factory.mktemp("hf")
    vocab.write_hf_files(from_openai, hf_dir)
    from_hf = vocab.read_vocabulary(hf_dir)
    assert from_hf.encoder == from_openai.encoder == gpt2.encoder
    assert from_hf.merges == from_openai.merges == gpt2.merges
    raw = json.loads((openai_dir / "encoder.json").read_text(encoding="utf-8"))
    assert from_hf.encoder == raw
    lines = (openai_dir / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#version") and tuple(lines[1].split()) == gpt2.merges[0]


def test_sha256_mismatch_is_a_clear_error(monkeypatch, openai_dir):
    with open(openai_dir / "vocab.bpe", "a", encoding="utf-8") as f:
        f.write("\n")
    monkeypatch.setattr(vocab, "offline_gpt2_directory", lambda: openai_dir)
    vocab._load_offline_gpt2.cache_clear()  # noqa: SLF001
    try:
        with pytest.raises(ValueError, match=r"vocab\.bpe has sha256 .* not GPT-2's"):
            vocab.load_vocabulary("gpt2")
    finally:
        vocab._load_offline_gpt2.cache_clear()  # noqa: SLF001


def test_missing_and_corrupt_files_name_the_file(openai_dir, tmp_path_factory):
    (openai_dir / "vocab.bpe").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.bpe"):
        vocab.read_vocabulary(openai_dir)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        vocab.read_vocabulary(empty)
    bad = tmp_path_factory.mktemp("bad")
    (bad / "vocab.json").write_text("{not json", encoding="utf-8")
    (bad / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.json"):
        vocab.read_vocabulary(bad)
    (bad / "vocab.json").write_text(json.dumps({"a": 0}), encoding="utf-8")
    with pytest.raises(ValueError, match="single-byte tokens"):
        vocab.read_vocabulary(bad)
    good = dict(vocab.load_vocabulary().encoder)
    (bad / "vocab.json").write_text(json.dumps(good), encoding="utf-8")
    (bad / "merges.txt").write_text("#version: 0.2\nĠ t\nnot_a_merge\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges.txt, line 3"):
        vocab.read_vocabulary(bad)
    (bad / "merges.txt").write_text("#version: 0.2\nĠ zzzq\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.read_vocabulary(bad)
    with pytest.raises(FileNotFoundError, match="No directory"):
        vocab.load_vocabulary("./no/such/dir")


def _openai_bpe(symbols: list[str], ranks: dict) -> list[str]:
    """OpenAI encoder.py's bpe(): merge the lowest-rank listed pair, all
    occurrences left to right, until none is listed."""
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                out.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


def test_bpe_properties_the_vectorised_merges_rely_on(gpt2):
    # A merge's rank exceeds the ranks that created its parts (training
    # order), so new pairs never outrank the merge that made them.
    bpe_tables.check_training_order(gpt2)
    # Every token is its own BPE, so looking whole pieces (and sub-pieces)
    # up in the vocabulary gives what the merges would.
    ranks = {pair: i for i, pair in enumerate(gpt2.merges)}
    for token in list(gpt2.encoder)[256:50256:5]:
        assert _openai_bpe(list(token), ranks) == [token]


def test_out_of_order_merges_are_rejected(gpt2):
    swapped = list(gpt2.merges)
    late = next(i for i, (a, b) in enumerate(swapped) if len(a) > 1)
    maker = next(i for i, (a, b) in enumerate(swapped) if a + b == swapped[late][0])
    swapped[late], swapped[maker] = swapped[maker], swapped[late]
    bad = vocab.Vocabulary(gpt2.encoder, tuple(swapped), gpt2.special_tokens, "test")
    with pytest.raises(ValueError, match="not in training order"):
        bpe_tables.build(bad)


def test_saved_files_are_read_by_keras_hub(tmp_path):
    import keras_hub  # a test dependency: its absence is a failure, not a skip
    GPT2Tokenizer().save_pretrained(tmp_path)
    theirs = keras_hub.tokenizers.GPT2Tokenizer(vocabulary=str(tmp_path / "vocab.json"),
                                                merges=str(tmp_path / "merges.txt"))
    text = "Hello world, it's a test of the tokenizer."
    assert np.asarray(theirs(text)).tolist() == support.oracle_ids(text)
