"""The input pipeline against tiktoken: the packed blocks are exactly the
ids of the files joined by <|endoftext|>, each block once per epoch across
replicas, workers and steps; and every bad input is a clear error."""

import numpy as np
import pytest

from tfgpt2.tokenizer import BytePairTokenizer
from tokenizer_support import tiktoken_gpt2
from tfgpt2.training import FinetuneConfig, data
from training_support import DOCUMENTS, EOS, write_corpus

ENC = tiktoken_gpt2()  # tiktoken over the same vocabulary files, offline


@pytest.fixture(scope="module")
def tokenizer():
    return BytePairTokenizer()


def oracle_stream(documents):
    ids = []
    for doc in documents:
        ids += ENC.encode_ordinary(doc) + [EOS]
    return np.array(ids)


@pytest.mark.parametrize("separator,split", [
    ("file", lambda text: [text]),
    ("blank_line", lambda text: [d for d in __import__("re").split(r"\n[ \t]*\n(?:[ \t]*\n)*", text)
                                 if d.strip()]),
    ("<doc>", lambda text: [d for d in text.split("<doc>") if d.strip()]),
])
def test_token_stream_is_tiktoken_ids_joined_by_endoftext(tmp_path, tokenizer, separator, split):
    texts = ["First para.\n\nSecond para,\n \n\nthird<doc>fourth.", "Another file.\n\n\n",
             "  \n<doc>only after a separator"]
    paths = write_corpus(tmp_path, texts)
    tokens = data.token_stream([str(p) for p in paths], tokenizer, separator, None)
    expected = oracle_stream([doc for text in texts for doc in split(text)])
    np.testing.assert_array_equal(tokens, expected)


def test_blocks_cover_every_target_once_per_epoch_across_replicas_and_steps(tmp_path, tokenizer):
    paths = [str(p) for p in write_corpus(tmp_path)]
    stream = oracle_stream(DOCUMENTS)
    corpus = data.PackedCorpus(data.token_stream(paths, tokenizer, "file", None), seq_len=7,
                               pad_id=EOS)
    np.testing.assert_array_equal(corpus.tokens, stream)
    # 4 replicas in 2 workers (input pipelines), 2 micro-batches each.
    layout = data.BatchLayout(global_batch_size=8, num_replicas=4, grad_accum_steps=2)
    n = corpus.num_blocks
    steps = -(-3 * n // 8)  # a little over three epochs

    class Context:
        num_input_pipelines = 2

        def __init__(self, i):
            self.input_pipeline_id = i

    rows = {}  # (step, replica) -> tokens, masks
    for worker in range(2):
        dataset = data.train_dataset(corpus, layout, seed=3, start_step=0, end_step=steps,
                                     input_context=Context(worker))
        for i, batch in enumerate(dataset.as_numpy_iterator()):
            step, slot = divmod(i, 2)
            rows[step, worker * 2 + slot] = batch
            assert batch["tokens"].shape == (2, 8)
    assert len(rows) == steps * 4
    ordered = [rows[s, r] for s in range(steps) for r in range(4)]
    tokens = np.concatenate([b["tokens"] for b in ordered])
    masks = np.concatenate([b["mask"] for b in ordered])
    # Map every row back to its block: blocks are distinct slices of the stream.
    blocks = [tuple(t[m == 1]) for t, m in zip(tokens, masks)]
    expected = [tuple(stream[i * 7:i * 7 + 8]) for i in range(n)]
    for epoch in range(3):
        epoch_rows = blocks[epoch * n:(epoch + 1) * n]
        assert sorted(epoch_rows) == sorted(expected)  # each block exactly once
    assert blocks[:n] != expected  # shuffled
    # Stitched in block order (one token of overlap), the blocks are the stream.
    stitched = np.concatenate([expected[0]] + [b[1:] for b in expected[1:]])
    np.testing.assert_array_equal(stitched, stream)
    # Every global batch is divided by the targets of the whole global batch.
    for s in range(steps):
        total = sum(int(rows[s, r]["mask"][:, 1:].sum()) for r in range(4))
        for r in range(4):
            assert set(rows[s, r]["denominator"].tolist()) == {float(total)}


def test_resuming_the_dataset_at_a_step_gives_the_same_batches(tmp_path, tokenizer):
    paths = [str(p) for p in write_corpus(tmp_path)]
    corpus = data.PackedCorpus(data.token_stream(paths, tokenizer, "file", None), 5, EOS)
    layout = data.BatchLayout(4, 1)
    whole = list(data.train_dataset(corpus, layout, 0, 0, 12).as_numpy_iterator())
    tail = list(data.train_dataset(corpus, layout, 0, 7, 12).as_numpy_iterator())
    for a, b in zip(whole[7:], tail, strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])


def test_eval_dataset_reads_every_block_once_padded_to_whole_batches(tmp_path, tokenizer):
    paths = [str(p) for p in write_corpus(tmp_path)]
    corpus = data.PackedCorpus(data.token_stream(paths, tokenizer, "file", None), 6, EOS)
    dataset, steps = data.eval_dataset(corpus, data.BatchLayout(4, 1))
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == steps
    targets = sum(int(b["mask"][:, 1:].sum()) for b in batches)
    assert targets == corpus.tokens.size - 1


def test_token_cache_is_written_once_and_reused(tmp_path, tokenizer, monkeypatch):
    paths = [str(p) for p in write_corpus(tmp_path / "text")]
    first = data.token_stream(paths, tokenizer, "file", str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    monkeypatch.setattr(data, "tokenize_files", lambda *a: pytest.fail("tokenized again"))
    again = data.token_stream(paths, tokenizer, "file", str(tmp_path / "cache"))
    np.testing.assert_array_equal(first, again)


def test_no_matching_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No file matches the train_files glob .*quote"):
        data.find_files(str(tmp_path / "*.txt"))


def test_non_utf8_file_is_refused_with_its_byte_offset(tmp_path):
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text \(byte 3.*iconv"):
        data.check_text_files(data.find_files(str(tmp_path / "*.txt")))


def test_empty_files_are_skipped_with_a_warning(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("text", encoding="utf-8")
    (tmp_path / "b.txt").write_text("", encoding="utf-8")
    (tmp_path / "c.txt").write_text(" \n\t\n", encoding="utf-8")
    kept = data.check_text_files(data.find_files(str(tmp_path / "*.txt")))
    assert [p.rsplit("/", 1)[1] for p in kept] == ["a.txt"]
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [f"warning: skipping {tmp_path / name}: it is empty or holds only "
                        "whitespace." for name in ("b.txt", "c.txt")]
    (tmp_path / "a.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="Every file of train_files is empty"):
        data.check_text_files(data.find_files(str(tmp_path / "*.txt")))


def test_global_batch_that_does_not_divide_is_a_clear_error():
    with pytest.raises(ValueError, match="does not divide across 2 replica.*multiple of 4"):
        data.BatchLayout(global_batch_size=6, num_replicas=2, grad_accum_steps=2)
    with pytest.raises(ValueError, match="eval_batch_size=6 does not divide across 4 replica"):
        data.BatchLayout(6, 4, what="eval_batch_size")
    # The settings check the same rule before any replica is known.
    with pytest.raises(ValueError, match="global_batch_size=10 does not divide across "
                                         "grad_accum_steps=3 equal micro-batches.*multiple of 3"):
        FinetuneConfig(train_files="x", output_dir="y", global_batch_size=10, grad_accum_steps=3)
