"""The same ids from every way of running the graph tokenizer: eager call,
tf.function, a tf.data map, a SavedModel loaded in a fresh process that never
imports tfgpt2 (with tensorflow_text and keras unimportable), and a .tflite
converted with builtins only and run in LiteRT. Oracle: tiktoken."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tokenizer_support as support
from tfgpt2.tokenizer import run_tflite

TEXTS = support.MULTILINGUAL[:6] + support.EMOJI[:2] + [
    "Hello world<|endoftext|>It's  a test\n\n  of   \xa0 tabs\tand 'LL 42x",
    "", "<|endoftext|>", "def f(x):\n    return x ** 2  # it's fine\n",
] + [d[:3000] for d in support.real_corpus()[:6]]


@pytest.fixture(scope="module")
def expected():
    return [support.oracle_ids(t) for t in TEXTS]


@pytest.fixture(scope="module")
def tok():
    return support.graph_tokenizer()


def test_eager_call(tok, expected):
    ragged = tok.tokenize(tf.constant(TEXTS))
    assert isinstance(ragged, tf.RaggedTensor) and ragged.dtype == tf.int32
    assert ragged.to_list() == expected
    assert tok.tokenize(TEXTS[0]).numpy().tolist() == expected[0]  # scalar -> 1-D


def test_tf_function(tok, expected):
    @tf.function
    def f(texts):
        return tok.tokenize(texts)

    assert f(tf.constant(TEXTS)).to_list() == expected
    assert f(tf.constant(TEXTS[::-1])).to_list() == expected[::-1]


def test_tf_data_map(tok, expected):
    ds = tf.data.Dataset.from_tensor_slices(TEXTS).map(tok.tokenize)
    assert [x.numpy().tolist() for x in ds] == expected
    batched = tf.data.Dataset.from_tensor_slices(TEXTS).batch(5).map(tok.tokenize)
    assert [row for batch in batched for row in batch.to_list()] == expected


def test_python_api_never_retraces():
    from tfgpt2.tokenizer import GPT2Tokenizer

    api = GPT2Tokenizer()
    graph = api.graph()
    # Past the first (eager) calls, every call goes through one graph: for
    # encoding, the one prepared in the background (traced or loaded).
    api("warm")
    assert graph.wait_for_graph()
    graph._programs.decode_strings_eager.eager_seconds = 1e9  # noqa: SLF001
    api.decode([1])
    encodes = graph.encode_strings.experimental_get_tracing_count()
    decodes = graph.decode_strings.experimental_get_tracing_count()
    assert decodes >= 1
    for text in ["a", "bb bb", ["x", "yy", "zzz"], "é" * 50, "7" * 1000]:
        assert api(text)["input_ids"] == (support.oracle_ids(text) if isinstance(text, str)
                                          else [support.oracle_ids(t) for t in text])
    api.batch_decode([[1, 2], [3]])
    api.decode([5, 6, 7])
    assert graph.encode_strings.experimental_get_tracing_count() == encodes
    assert graph.decode_strings.experimental_get_tracing_count() == decodes


# A None entry in sys.modules makes `import name` fail and find_spec(name)
# return None, which TensorFlow's own keras probing accepts.
_BLOCKER = textwrap.dedent("""
    import sys
    for name in ("tensorflow_text", "keras", "keras_hub", "tf_keras", "tfgpt2"):
        sys.modules[name] = None
""")


def test_saved_model_in_fresh_process_without_tfgpt2_keras_or_tf_text(tok, expected, tmp_path):
    class Export(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def tokenize(self, text):
            ids = self.tokenizer.tokenize(text)
            return {"ids": ids.values, "row_splits": ids.row_splits}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                      tf.TensorSpec([None], tf.int64)])
        def detokenize(self, ids, row_splits):
            return {"text": self.tokenizer.detokenize(tf.RaggedTensor.from_row_splits(ids, row_splits))}

    module = Export(tok)
    path = str(tmp_path / "tokenizer")
    tf.saved_model.save(module, path, signatures={"tokenize": module.tokenize,
                                                  "detokenize": module.detokenize})
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
    script = _BLOCKER + textwrap.dedent(f"""
        import json
        import tensorflow as tf
        texts = json.load(open({str(tmp_path / "texts.json")!r}))
        loaded = tf.saved_model.load({path!r})
        out = loaded.signatures["tokenize"](text=tf.constant(texts))
        ids, splits = out["ids"].numpy().tolist(), out["row_splits"].numpy().tolist()
        back = loaded.signatures["detokenize"](ids=out["ids"], row_splits=out["row_splits"])
        import sys
        imported = [m for m in sys.modules if m.split(".")[0] in ("tensorflow_text", "keras", "tfgpt2")
                    and sys.modules[m] is not None]
        for name in ("tensorflow_text", "keras", "tfgpt2"):
            try:
                __import__(name)
                imported.append(name + " (importable!)")
            except ImportError:
                pass
        print(json.dumps({{"ids": [ids[splits[i]:splits[i + 1]] for i in range(len(texts))],
                          "text": [t.decode("utf-8") for t in back["text"].numpy().tolist()],
                          "imported": imported}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["imported"] == []
    assert result["ids"] == expected
    assert result["text"] == TEXTS


@pytest.fixture(scope="module")
def interpreter(tok):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=tok.to_tflite())


def test_tflite_builtins_only_in_litert(interpreter, expected):
    data = [t.encode("utf-8") for t in TEXTS]
    flat = np.frombuffer(b"".join(data), np.uint8)
    splits = np.cumsum([0] + [len(d) for d in data])
    out = run_tflite(interpreter, "encode", bytes=flat, row_splits=splits)
    ids, id_splits = out["ids"].tolist(), out["row_splits"].tolist()
    assert [ids[id_splits[i]:id_splits[i + 1]] for i in range(len(TEXTS))] == expected
    # One row at a time too (the interpreter resizes its inputs).
    for text, want in zip(TEXTS[:4], expected[:4]):
        b = np.frombuffer(text.encode("utf-8"), np.uint8)
        assert run_tflite(interpreter, "encode", bytes=b, row_splits=[0, len(b)])["ids"].tolist() == want
    back = run_tflite(interpreter, "decode", ids=out["ids"], row_splits=out["row_splits"])
    text = bytes(back["bytes"].astype(np.uint8))
    rows = back["row_splits"]
    assert [text[rows[i]:rows[i + 1]].decode("utf-8") for i in range(len(TEXTS))] == TEXTS


def test_tflite_decode_replaces_invalid_utf8(interpreter, tok):
    ids = [tok.vocabulary.byte_ids[b] for b in b"ok \xe0\xa0 \xff!"]
    back = run_tflite(interpreter, "decode", ids=ids, row_splits=[0, len(ids)])
    assert bytes(back["bytes"].astype(np.uint8)) == "ok \ufffd \ufffd!".encode("utf-8")


def test_tflite_model_has_only_builtin_ops(tok):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tok.to_tflite(), 0))
    custom = [op.customCode for op in model.operatorCodes if op.customCode]
    assert custom == []
