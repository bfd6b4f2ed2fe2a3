"""The SavedModel for TF Serving, loaded in a fresh process where tfgpt2,
keras and tensorflow_text cannot be imported: greedy text equals
`model.generate`'s, tokenize equals tiktoken, logits equal the model's.
(The server's own paths, batching and concurrency: test_serving.py.)"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tensorflow.core.protobuf import saved_model_pb2

from conftest import BLOCK_IMPORTS
from tokenizer_support import tiktoken_gpt2

PROMPTS = ["Hello, I'm a language model,", "Ünïcode ☃ and emoji 🙂 too, a longer prompt here",
           "", "short"]
NEW = 12


@pytest.fixture(params=[False, True], ids=["no_xla", "xla"])
def exported(request, served):
    return request.param, served[request.param]


def run_fresh(script: str) -> dict:
    result = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS + textwrap.dedent(script)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_greedy_text_equals_generate(exported, tiny_model):
    xla, path = exported
    assert path.name == "3" and (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert (path / "assets").is_dir()
    out = run_fresh(f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        serve = loaded.signatures["generate"]
        n = {len(PROMPTS)}
        result = serve(prompts=tf.constant({PROMPTS!r}), max_new_tokens=tf.fill([n], {NEW}),
                       temperature=tf.zeros([n]), top_k=tf.zeros([n], tf.int32),
                       top_p=tf.ones([n]), seed=tf.zeros([n], tf.int32))
        texts = [t.decode("utf-8") for t in result["generated_text"].numpy().tolist()]
        tokenized = loaded.signatures["tokenize"](texts=tf.constant({PROMPTS!r}))
        ids = [row[:n] for row, n in zip(tokenized["token_ids"].numpy().tolist(),
                                         tokenized["lengths"].numpy().tolist())]
        back = loaded.signatures["detokenize"](token_ids=tokenized["token_ids"],
                                              lengths=tokenized["lengths"])["texts"]
        print(json.dumps({{"texts": texts, "ids": ids,
                          "num_tokens": result["num_tokens"].numpy().tolist(),
                          "back": [t.decode("utf-8") for t in back.numpy().tolist()]}}))
    """)
    expected = tiny_model.generate(PROMPTS, max_new_tokens=NEW, do_sample=False)
    assert [p + t for p, t in zip(PROMPTS, out["texts"])] == expected
    enc = tiktoken_gpt2()
    assert out["ids"] == [enc.encode(p) for p in PROMPTS]
    assert out["back"] == PROMPTS
    # Each row's count: generate's new tokens before the first <|endoftext|>.
    for prompt, n in zip(PROMPTS, out["num_tokens"]):
        ids = enc.encode(prompt) or [50256]
        new = tiny_model.generate(np.array([ids]), max_new_tokens=NEW, do_sample=False,
                                  eos_token_id=[])[0, len(ids):].tolist()
        assert n == (new.index(50256) if 50256 in new else NEW)


def test_scoring_signature_equals_the_model(exported, tiny_model):
    _, path = exported
    ids = np.array([[464, 3290, 318, 257], [50256, 50256, 40, 716]], np.int32)
    mask = np.array([[1, 1, 1, 1], [0, 0, 1, 1]], np.int32)
    out = run_fresh(f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        logits = loaded.signatures["logits"](input_ids=tf.constant({ids.tolist()}),
                                             attention_mask=tf.constant({mask.tolist()}))
        print(json.dumps({{"logits": logits["logits"].numpy().tolist()}}))
    """)
    expected = tiny_model(ids, attention_mask=mask).logits.numpy()
    got = np.asarray(out["logits"])
    np.testing.assert_allclose(got[mask.astype(bool)], expected[mask.astype(bool)], atol=1e-4)


def test_sampling_is_reproducible_per_seed(exported):
    _, path = exported
    out = run_fresh(f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        serve = loaded.signatures["generate"]
        def run(seed):
            r = serve(prompts=tf.constant(["Once upon a time", "The"]),
                      max_new_tokens=tf.constant([10, 10]), temperature=tf.constant([0.8, 1.0]),
                      top_k=tf.constant([40, 0]), top_p=tf.constant([0.95, 1.0]),
                      seed=tf.constant([seed, seed]))
            return r["token_ids"].numpy().tolist()
        defaults = loaded.signatures["serving_default"](prompts=tf.constant(["The"] * 3))
        print(json.dumps({{"a": run(7), "b": run(7), "c": run(8),
                          "defaults": defaults["num_tokens"].numpy().tolist(),
                          "random": [r.decode() for r in
                                     defaults["generated_text"].numpy().tolist()]}}))
    """)
    assert out["a"] == out["b"] and out["a"] != out["c"]
    # serving_default: the model card's top-k sampling, 64 tokens, a fresh
    # random seed per row (three rows of one prompt do not all agree).
    assert all(n <= 64 for n in out["defaults"]) and len(set(out["random"])) > 1


def test_every_input_is_batchable_and_none_needs_a_default(exported):
    """TF Serving's batching concatenates every input along dimension 0 and
    refuses 0-d ones; servers before 2.14 do not fill SignatureDef.defaults."""
    xla, path = exported
    listing = subprocess.run(["saved_model_cli", "show", "--dir", str(path), "--all"],
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr[-2000:]
    for name in ("serving_default", "generate", "tokenize", "detokenize", "logits"):
        assert f"signature_def['{name}']" in listing.stdout
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0]
    signatures = graph.signature_def
    assert set(signatures["serving_default"].inputs) == {"prompts"}
    assert set(signatures["generate"].inputs) == {
        "prompts", "max_new_tokens", "temperature", "top_k", "top_p", "seed"}
    for name in ("serving_default", "generate", "tokenize", "detokenize", "logits"):
        signature = signatures[name]
        assert not signature.defaults, name
        for key, spec in [*signature.inputs.items(), *signature.outputs.items()]:
            dims = [d.size for d in spec.tensor_shape.dim]
            assert dims and dims[0] == -1, (name, key, dims)
    functions = graph.graph_def.library.function
    must_compile = [f.signature.name for f in functions
                    if f.attr.get("_XlaMustCompile") and f.attr["_XlaMustCompile"].b]
    xla_ops = {node.op for f in functions for node in f.node_def if node.op.startswith("Xla")}
    if xla:
        assert must_compile
    else:
        assert not must_compile and not xla_ops, (must_compile, xla_ops)


def test_long_prompts_and_bytes_that_are_not_utf8(exported, tiny_model):
    _, path = exported
    out = run_fresh(f"""
        import json, tensorflow as tf
        serve = tf.saved_model.load({str(path)!r}).signatures["generate"]
        def call(prompt, max_new_tokens=8, **settings):
            args = dict(temperature=0.0, top_k=0, top_p=1.0, seed=0)
            args.update(settings)
            try:
                r = serve(prompts=tf.constant([prompt]),
                          max_new_tokens=tf.constant([max_new_tokens]),
                          **{{k: tf.constant([v]) for k, v in args.items()}})
                return r["generated_text"].numpy()[0].decode("utf-8", "replace")
            except tf.errors.InvalidArgumentError as err:
                return "ERROR: " + err.message
        print(json.dumps({{
            "long": call("word " * 200),
            "invalid_utf8": call(b"caf\\xc3 \\xff ok"),
        }}))
    """)
    # A long prompt keeps its last tokens, as generate's truncate_prompt does.
    long = tiny_model.generate("word " * 200, max_new_tokens=8, truncate_prompt=True,
                               do_sample=False)
    assert out["long"] == long[len("word " * 200):]
    # Bytes that are not UTF-8 are tokenized losslessly (tiktoken's byte-level
    # encoder is the oracle) and continued like those ids.
    ids = tiktoken_gpt2()._encode_bytes(b"caf\xc3 \xff ok")
    new = tiny_model.generate(np.array([ids]), max_new_tokens=8, do_sample=False)[0, len(ids):]
    text = tiny_model.tokenizer.decode(new.tolist())
    assert out["invalid_utf8"] == text.split("<|endoftext|>")[0]


def test_existing_artifact_is_not_overwritten_unless_asked(tiny_model, tmp_path):
    first = tiny_model.export(tmp_path, format="tf_saved_model", version=1)
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tiny_model.export(tmp_path, format="tf_saved_model", version=1)
    assert (first / "saved_model.pb").stat().st_mtime_ns == stamp
    tiny_model.export(tmp_path, format="tf_saved_model", version=1, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]  # no temporary leftovers
