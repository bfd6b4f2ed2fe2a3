"""The SavedModel the way TF Serving runs it: loaded into a TF1 Session as
the server loads it (the batching invariant that `--enable_batching` relies
on, concurrent calls), and through the server's own Predict path in C++,
built against the TensorFlow wheel's headers and libraries."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import BLOCK_IMPORTS
from tokenizer_support import tiktoken_gpt2

HERE = os.path.dirname(os.path.abspath(__file__))

# Prepended to each fresh process's script: the session helper (which
# needs TensorFlow alone), and what a client keeps of each row.
SESSION = textwrap.dedent(f"""
    import json, sys
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, {HERE!r})
    from serving_session import Served, request

    def rows(result):
        # What a client keeps of each row: its text, its count, its tokens.
        return [[t.decode("utf-8", "replace"), int(n), ids[:n].tolist()] for t, n, ids in
                zip(result["generated_text"], result["num_tokens"], result["token_ids"])]
""")

# Requests that differ in every setting and in prompt length: greedy,
# top-k, top-p, the wide top-k path (k > 256), an empty prompt, a prompt
# longer than its budget leaves room for.
REQUESTS = [
    dict(prompts=["Hello"], max_new_tokens=[5], temperature=[0.0], top_k=[0], top_p=[1.0],
         seed=[0]),
    dict(prompts=["Once upon a time, in a land far away, there lived", "word " * 120],
         max_new_tokens=[12, 7], temperature=[0.8, 1.0], top_k=[40, 50], top_p=[0.9, 1.0],
         seed=[3, 4]),
    dict(prompts=["", "The meaning of life is", "Ünïcode ☃ 🙂"], max_new_tokens=[9, 3, 16],
         temperature=[1.2, 0.0, 0.7], top_k=[300, 0, 0], top_p=[1.0, 1.0, 0.8], seed=[5, 6, 7]),
]


def run_fresh(script: str, timeout=600) -> dict:
    result = subprocess.run([sys.executable, "-c", BLOCK_IMPORTS + SESSION
                             + textwrap.dedent(script)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_batched_requests_get_what_each_gets_alone_in_both_variants(served):
    """What BatchingSession does: concatenate the requests' inputs along
    dimension 0, run once, split the outputs back. And the XLA and XLA-free
    loops run the same sampler on the same seeds: the same tokens."""
    out = run_fresh(f"""
        requests = {REQUESTS!r}
        merged = {{k: sum((r[k] for r in requests), []) for k in requests[0]}}
        results = {{}}
        for xla, path in {({str(k): str(v) for k, v in served.items()})!r}.items():
            served = Served(path)
            alone = [rows(served.run("generate", **request(**r))) for r in requests]
            together = rows(served.run("generate", **request(**merged)))
            results[xla] = {{"alone": sum(alone, []), "together": together}}
        print(json.dumps(results))
    """)
    for variant in out.values():
        assert variant["together"] == variant["alone"]
    assert out["True"]["alone"] == out["False"]["alone"]
    # Each row kept its own budget (a stop token may end it sooner).
    budgets = sum((r["max_new_tokens"] for r in REQUESTS), [])
    rows_alone = out["False"]["alone"]
    assert all(n <= b for (_, n, _), b in zip(rows_alone, budgets))
    assert any(n == b for (_, n, _), b in zip(rows_alone, budgets))


def test_scoring_requests_padded_by_the_batcher_keep_their_logits(served, tiny_model):
    """`pad_variable_length_inputs` pads each input on the right with its own
    first element; causal attention keeps every request's own positions."""
    short = np.array([[464, 3290, 318]], np.int32)
    long = np.array([[40, 716, 257, 1310, 1110, 13]], np.int32)
    out = run_fresh(f"""
        served = Served({str(served[False])!r})
        def pad(x, width):
            x = np.asarray(x, np.int32)
            return np.concatenate([x, np.full([len(x), width - x.shape[1]], x[0, 0])], 1)
        short, long = np.array({short.tolist()}), np.array({long.tolist()})
        ids = np.concatenate([pad(short, 6), long])
        mask = np.concatenate([pad(np.ones_like(short), 6), np.ones_like(long)])
        logits = served.run("logits", input_ids=ids, attention_mask=mask)["logits"]
        print(json.dumps({{"short": logits[0, :3].tolist(), "long": logits[1].tolist()}}))
    """)
    for ids, key in ((short, "short"), (long, "long")):
        expected = tiny_model(ids, attention_mask=np.ones_like(ids)).logits.numpy()[0]
        np.testing.assert_allclose(np.asarray(out[key]), expected, atol=1e-4)


def test_concurrent_calls_equal_sequential_ones_and_memory_stays_flat(served):
    """Each Session::Run of the XLA-free loop writes its own cache buffer in
    place: 8 threads of mixed requests must not see each other's writes."""
    out = run_fresh(f"""
        import concurrent.futures, resource
        served = Served({str(served[False])!r})
        requests = [request(**r) for r in {REQUESTS!r}]
        calls = [requests[i % len(requests)] for i in range(8 * 20)]
        def call(r):
            return rows(served.run("generate", **r))
        def rss_mb():
            with open("/proc/self/status") as f:
                line = next(l for l in f if l.startswith("VmRSS"))
            return int(line.split()[1]) / 1024
        sequential = [call(r) for r in calls]
        passes, rss = [], []
        for _ in range(2):
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                passes.append(list(pool.map(call, calls)))
            rss.append(rss_mb())
        print(json.dumps({{"same": [p == sequential for p in passes], "rss": rss}}))
    """)
    assert out["same"] == [True, True]
    first, second = out["rss"]
    assert second - first < 64, out["rss"]  # MB: no growth per call


def test_bad_requests_fail_with_invalid_argument_naming_the_input(served):
    out = run_fresh(f"""
        served = Served({str(served[False])!r})
        good = dict(prompts=["hi", "there"], max_new_tokens=[4, 4], temperature=[0.0, 0.5],
                    top_k=[0, 5], top_p=[1.0, 1.0], seed=[0, 1])
        cases = dict(
            empty_batch=dict(good, prompts=[], max_new_tokens=[], temperature=[], top_k=[],
                             top_p=[], seed=[]),
            batch_sizes_disagree=dict(good, top_k=[0, 5, 7]),
            nan_top_p=dict(good, top_p=[1.0, float("nan")]),
            nan_temperature=dict(good, temperature=[float("nan"), 0.5]),
            past_the_cache=dict(good, max_new_tokens=[4, 96]),
            top_p_above_one=dict(good, top_p=[1.5, 1.0]),
            negative_top_k=dict(good, top_k=[-1, 0]))
        errors = {{}}
        for name, case in cases.items():
            try:
                served.run("generate", **request(**case))
                errors[name] = None
            except tf.errors.InvalidArgumentError as err:
                errors[name] = err.message
        try:
            served.run("serving_default", prompts=np.asarray([], object))
        except tf.errors.InvalidArgumentError as err:
            errors["empty_default"] = err.message
        print(json.dumps(errors))
    """)
    expected = dict(empty_batch="prompts is empty", batch_sizes_disagree="top_k must have one "
                    "value per prompt", nan_top_p="top_p must be in (0, 1]",
                    nan_temperature="temperature must be a number >= 0",
                    past_the_cache="max_new_tokens must be in [1, 96)",
                    top_p_above_one="top_p must be in (0, 1]", negative_top_k="top_k must be >= 0",
                    empty_default="prompts is empty")
    for name, words in expected.items():
        assert out[name] is not None and words in out[name], (name, out[name])


# --- TF Serving's Predict path, in C++ ---------------------------------------------------


@pytest.fixture(scope="session")
def predict_client(tmp_path_factory):
    """tests/export/predict_client.cc built against the TF wheel (~40 s)."""
    binary = tmp_path_factory.mktemp("predict") / "predict_client"
    library = tf.sysconfig.get_lib()
    command = ["g++", "-std=c++17", "-O1", os.path.join(HERE, "predict_client.cc"),
               "-o", str(binary), *tf.sysconfig.get_compile_flags(),
               "-Wl,--no-as-needed", f"-L{library}", "-l:libtensorflow_cc.so.2",
               "-l:libtensorflow_framework.so.2", f"-Wl,-rpath,{library}"]
    build = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-4000:]
    return binary


def predict(client, path, signature, tmp_path, **inputs):
    """A Predict call: each input as a TensorProto, as a PredictRequest holds it."""
    args = []
    for name, value in inputs.items():
        file = tmp_path / f"in_{name}.pb"
        file.write_bytes(tf.make_tensor_proto(value).SerializeToString())
        args.append(f"{name}={file}")
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    result = subprocess.run([str(client), str(path), signature, str(out_dir), *args],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if result.returncode:  # the client's "<CODE>: <message>", which may span lines
        codes = [m.start() for m in re.finditer(r"^[A-Z_]+: ", result.stderr, re.MULTILINE)]
        return result.stderr[codes[-1]:] if codes else result.stderr
    outputs = {}
    for file in out_dir.glob("*.pb"):
        proto = tf.make_tensor_proto(0)
        proto.ParseFromString(file.read_bytes())
        outputs[file.stem] = tf.make_ndarray(proto)
        file.unlink()
    return outputs


def test_predict_path_answers_prompts_only_and_per_row_requests(predict_client, served,
                                                                tiny_model, tmp_path):
    path = served[False]
    prompts = np.array([b"Hello, I'm a language model,", b"The"], object)
    defaults = predict(predict_client, path, "serving_default", tmp_path, prompts=prompts)
    assert isinstance(defaults, dict), defaults
    enc = tiktoken_gpt2()
    for text, n, ids in zip(defaults["generated_text"], defaults["num_tokens"],
                            defaults["token_ids"]):
        assert 1 <= n <= 64 and text.decode("utf-8", "replace") == enc.decode(ids[:n].tolist())
    greedy = predict(predict_client, path, "generate", tmp_path, prompts=prompts,
                     max_new_tokens=np.array([6, 10], np.int32),
                     temperature=np.zeros(2, np.float32), top_k=np.zeros(2, np.int32),
                     top_p=np.ones(2, np.float32), seed=np.zeros(2, np.int32))
    for prompt, budget, text in zip(prompts, (6, 10), greedy["generated_text"]):
        expected = tiny_model.generate(prompt.decode(), max_new_tokens=budget, do_sample=False)
        assert prompt.decode() + text.decode() == expected


def test_predict_path_errors_name_what_was_wrong(predict_client, served, tmp_path):
    path = served[False]
    empty = predict(predict_client, path, "serving_default", tmp_path,
                    prompts=np.array([], object))
    assert empty.startswith("INVALID_ARGUMENT") and "prompts is empty" in empty
    missing = predict(predict_client, path, "generate", tmp_path,
                      prompts=np.array([b"hi"], object))
    assert missing.startswith("INVALID_ARGUMENT") and "input size does not match" in missing
