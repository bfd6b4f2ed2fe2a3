"""The first call is cheap: tables come from a disk cache that can only save
time (never change ids or raise), and tokenizers of one vocabulary share
their traced graphs. Oracle for ids: tiktoken.

No assertion here times anything (a loaded machine would fail it): the
first-call guard is `python tools/first_call.py --guard`."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tokenizer_support as support
from tfgpt2.tokenizer import BytePairTokenizer, GPT2Tokenizer, table_cache, tables, vocab

TEXT = "Hello world! It's 2024<|endoftext|>"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TFGPT2_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokenizer"


@pytest.fixture(scope="module")
def gpt2():
    return vocab.load_vocabulary()


def _same_tables(a: tables.BpeTables, b: tables.BpeTables) -> bool:
    left, right = tables.to_arrays(a), tables.to_arrays(b)
    return left.keys() == right.keys() and all(np.array_equal(left[k], right[k]) for k in left)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TFGPT2_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert table_cache.cache_dir() == tmp_path / "xdg" / "tfgpt2" / "tokenizer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert table_cache.cache_dir() == tmp_path / "home" / ".cache" / "tfgpt2" / "tokenizer"
    monkeypatch.setenv("TFGPT2_CACHE_DIR", str(tmp_path / "mine"))
    assert table_cache.cache_dir() == tmp_path / "mine" / "tokenizer"


def test_cached_tables_equal_built_ones_and_are_reused(cache_dir, gpt2, monkeypatch):
    built = table_cache.load_or_build(gpt2)
    files = list(cache_dir.glob("*.npz"))
    assert len(files) == 1 and not list(cache_dir.glob("*.tmp"))
    monkeypatch.setattr(tables, "build", lambda v: pytest.fail("rebuilt despite a valid cache"))
    assert _same_tables(table_cache.load_or_build(gpt2), built)


def test_key_depends_on_vocabulary_and_format(gpt2, monkeypatch):
    other = vocab.Vocabulary(gpt2.encoder, gpt2.merges[:-1], gpt2.special_tokens, "test")
    key = table_cache.cache_key(gpt2)
    assert table_cache.cache_key(other) != key
    monkeypatch.setattr(tables, "FORMAT_VERSION", tables.FORMAT_VERSION + 1)
    assert table_cache.cache_key(gpt2) != key


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key"])
def test_corrupt_or_stale_cache_is_rebuilt_silently(cache_dir, gpt2, damage):
    built = table_cache.load_or_build(gpt2)
    path = table_cache.cache_path(gpt2)
    data = path.read_bytes()
    assert data
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        arrays = tables.to_arrays(built)
        np.savez(path, **arrays, cache_key=np.array("some other vocabulary"))
    assert table_cache._read(path, table_cache.cache_key(gpt2)) is None  # noqa: SLF001
    again = table_cache.load_or_build(gpt2)
    assert _same_tables(again, built)
    # Rewritten: the next process reads it again.
    assert table_cache._read(path, table_cache.cache_key(gpt2)) is not None  # noqa: SLF001


def test_unwritable_cache_dir_just_skips_caching(tmp_path, monkeypatch, gpt2):
    blocker = tmp_path / "a file, not a directory"
    blocker.write_text("x")
    monkeypatch.setenv("TFGPT2_CACHE_DIR", str(blocker))
    assert _same_tables(table_cache.load_or_build(gpt2), tables.build(gpt2))


def test_instances_share_their_graphs():
    first = GPT2Tokenizer()
    assert first.encode(TEXT) == support.oracle_ids(TEXT)
    first.graph().encode_strings(["traced"])  # however the process used it before
    traces = first.graph().encode_strings.experimental_get_tracing_count()
    second = GPT2Tokenizer.from_pretrained("gpt2")
    assert second.graph().encode_strings is first.graph().encode_strings
    assert second.graph().encode_strings(["x"])[0].numpy().tolist() == support.oracle_ids("x")
    assert second.encode(TEXT) == support.oracle_ids(TEXT)
    assert second.graph().encode_strings.experimental_get_tracing_count() == traces
    # The other special-token mode is another graph, with its own ids.
    text_mode = BytePairTokenizer(special_tokens=False)
    assert text_mode.encode_strings is not first.graph().encode_strings
    assert text_mode.tokenize(TEXT).numpy().tolist() == support.oracle_ids(TEXT, False)


# Runs in a fresh process: from after `import tensorflow` and `import tfgpt2`
# (TensorFlow's own import time aside, however lazily tfgpt2 imports it) to
# the first ids, then a second instance. A warm-up process fills the cache.
_FIRST_CALL = textwrap.dedent("""
    import json, time
    import tensorflow
    import tfgpt2
    start = time.perf_counter()
    tok = tfgpt2.GPT2Tokenizer.from_pretrained("gpt2-medium")
    ids = tok("hello world")["input_ids"]
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = tfgpt2.GPT2Tokenizer.from_pretrained("gpt2-medium")("hello world")["input_ids"]
    second = time.perf_counter() - start
    # Long texts: right after the first call, then at new lengths through
    # the graph prepared in the background (loaded from the cache if any).
    import sys
    long_texts = json.load(open(sys.argv[1], encoding="utf-8"))
    long_ids = [tok.encode(long_texts[0])]
    ready = tok.graph().wait_for_graph()
    long_ids += [tok.encode(t) for t in long_texts[1:]]
    traces = tok.graph().encode_strings.experimental_get_tracing_count()
    print(json.dumps({"ids": ids, "again": again, "first": first, "second": second,
                      "long_ids": long_ids, "ready": ready, "traces": traces}))
""")


def test_first_call_in_a_fresh_process_reads_the_cache_it_filled(tmp_path):
    """Also: 100k random digits and 100 KB of mixed text give tiktoken's ids
    right after the first call and, at lengths not seen before, through the
    graph the first process traced in the background and the second loaded."""
    rng = np.random.default_rng(7)
    long_texts = ["".join(rng.choice(list("0123456789"), 100_000)),
                  "".join(rng.choice(list("0123456789"), 100_003)),
                  support.mixed_text(99_991, seed=7)]
    (tmp_path / "long.json").write_text(json.dumps(long_texts), encoding="utf-8")
    env = dict(os.environ, TFGPT2_CACHE_DIR=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2")
    runs = []
    for _ in range(2):  # the first run fills the cache
        out = subprocess.run([sys.executable, "-c", _FIRST_CALL, str(tmp_path / "long.json")],
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    warm = runs[-1]
    assert warm["ids"] == warm["again"] == support.oracle_ids("hello world")
    assert list(tmp_path.glob("tokenizer/*.npz"))
    assert list(tmp_path.glob("tokenizer/encode-graph-*.pb"))
    want = [support.oracle_ids(t) for t in long_texts]
    assert [r["long_ids"] == want for r in runs] == [True, True]
    # Both ran the graph; the first traced it (in the background), the second did not.
    assert [(r["ready"], r["traces"]) for r in runs] == [(True, 1), (True, 0)]


@pytest.mark.parametrize("damage", [b"", b"\x00\x00\x00\x40garbage", "truncated"])
def test_a_corrupt_graph_cache_file_is_ignored(cache_dir, gpt2, damage):
    from tfgpt2.tokenizer import graph_cache

    programs = GPT2Tokenizer().graph()._programs  # noqa: SLF001
    cache = graph_cache.GraphCache(programs, gpt2, special_tokens=True)
    path = graph_cache.cache_path(cache.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "truncated":
        cache.save(programs.encode_strings.get_concrete_function())
        damage = path.read_bytes()[:-1000]
    path.write_bytes(damage)
    assert cache.exists() and cache.load() is None


def test_graph_cache_key_follows_tensorflow_vocabulary_mode_and_source(gpt2, monkeypatch):
    from tfgpt2.tokenizer import graph_cache

    other = vocab.Vocabulary(gpt2.encoder, gpt2.merges[:-1], gpt2.special_tokens, "test")
    key = graph_cache.cache_key(gpt2, True)
    assert len({key, graph_cache.cache_key(other, True), graph_cache.cache_key(gpt2, False)}) == 3
    monkeypatch.setattr(tf, "__version__", tf.__version__ + ".other")
    assert graph_cache.cache_key(gpt2, True) != key
    monkeypatch.undo()
    monkeypatch.setattr(graph_cache, "_source_digest", lambda: "edited source")
    assert graph_cache.cache_key(gpt2, True) != key


def test_eager_first_calls_then_the_graph_give_the_same_ids():
    from tfgpt2.tokenizer import graph

    texts = support.MULTILINGUAL[:4] + support.EMOJI[:1] + [TEXT, "", "  x'll 42"]
    want = [support.oracle_ids(t) for t in texts]
    tok = GPT2Tokenizer()
    encode = tok.graph().encode_strings.python_function
    ran = []

    def python_fn(texts):
        ran.append("eager" if tf.executing_eagerly() else "trace")
        return encode(texts)

    fresh_graph = tf.function(python_fn, input_signature=[tf.TensorSpec([None], tf.string)],
                              autograph=False)
    calls = graph.EagerFirst(python_fn, fresh_graph)
    data = tf.constant([t.encode("utf-8") for t in texts])

    def rows(out):
        ids, splits = out[0].numpy(), out[1].numpy()
        return [ids[a:b].tolist() for a, b in zip(splits[:-1], splits[1:])]

    assert rows(calls(data)) == want and ran == ["eager"]
    calls.eager_seconds = graph.EagerFirst.BUDGET_SECONDS  # budget spent: the graph from now on
    assert rows(calls(data)) == want and ran == ["eager", "trace"]
    assert rows(calls(data)) == want and ran == ["eager", "trace"]
    assert tok.batch_decode(want) == texts
