"""The .tflite in LiteRT with no custom op resolver: builtins only, the
tokenizer signatures equal tiktoken, the runner's greedy tokens equal
`model.generate`'s, bad input is a clear error."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tokenizer_support as support
from tfgpt2.export import tflite
from tfgpt2.export.litert_runner import LiteRTRunner
from tfgpt2 import GPT2Config

TEXTS = support.MULTILINGUAL[:4] + support.EMOJI[:1] + [
    "Hello world<|endoftext|>It's  a test\n\n  of   \xa0 tabs\tand 'LL 42x", "",
    "def f(x):\n    return x ** 2  # it's fine\n"]


@pytest.fixture(scope="module")
def tflite_path(tiny_model, tmp_path_factory):
    return tiny_model.export(tmp_path_factory.mktemp("lite") / "tiny.tflite", format="litert",
                              quantization="none")


@pytest.fixture(scope="module")
def runner(tflite_path):
    return LiteRTRunner(tflite_path)


def test_only_builtin_ops(tflite_path):
    import contextlib
    import io

    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        tf.lite.experimental.Analyzer.analyze(model_path=str(tflite_path))
    text = listing.getvalue()
    ops = {line.split()[1].split("(")[0] for line in text.splitlines()
           if line.strip().startswith("Op#")}
    assert ops and not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops


def test_signatures_and_metadata(runner, tiny_model):
    signatures = runner.interpreter.get_signature_list()
    assert set(signatures) == {"tokenize", "detokenize", "prefill", "decode", "metadata"}
    assert runner.n_layer == tiny_model.config.n_layer
    assert runner.cache_length == tiny_model.config.n_positions


def test_tokenizer_signatures_equal_tiktoken_and_round_trip(runner):
    enc = support.tiktoken_gpt2()
    for text in TEXTS + [d[:2000] for d in support.real_corpus()[:3]]:
        ids = runner.tokenize(text)
        assert ids == enc.encode(text, allowed_special="all")
        assert runner.detokenize(ids) == text
    # Bytes that are not UTF-8 encode losslessly and decode as errors="replace".
    raw = b"caf\xc3 \xff ok"
    ids = runner.interpreter.get_signature_runner("tokenize")(
        bytes=np.frombuffer(raw, np.uint8).astype(np.int32))["ids"].tolist()
    assert b"".join(enc.decode_single_token_bytes(i) for i in ids) == raw
    assert runner.detokenize(ids) == raw.decode("utf-8", "replace")


@pytest.mark.parametrize("prompt", ["Hello, I'm a language model,", "Ünïcode ☃ 🙂", ""])
def test_greedy_runner_equals_generate(runner, tiny_model, prompt):
    expected = tiny_model.generate(prompt, max_new_tokens=15, do_sample=False)
    assert runner.generate(prompt, max_new_tokens=15, do_sample=False) == expected
    ids = support.tiktoken_gpt2().encode(prompt) or [50256]
    want = tiny_model.generate(np.array([ids]), max_new_tokens=15, eos_token_id=[])
    assert runner.generate(ids, max_new_tokens=15, do_sample=False,
                           stop_token_ids=[]) == want[0, len(ids):].tolist()


def test_sampling_is_reproducible_per_seed(runner):
    a = runner.generate("Once upon", max_new_tokens=10, top_k=40, top_p=0.9, seed=3)
    b = runner.generate("Once upon", max_new_tokens=10, top_k=40, top_p=0.9, seed=3)
    c = runner.generate("Once upon", max_new_tokens=10, top_k=40, top_p=0.9, seed=4)
    assert a == b and a != c


def test_bad_input_is_a_clear_error(runner, tiny_model):
    with pytest.raises(ValueError, match="truncate_prompt=True"):
        runner.generate("word " * 200, max_new_tokens=8)
    kept = runner.generate("word " * 200, max_new_tokens=8, truncate_prompt=True,
                           do_sample=False)
    assert kept == tiny_model.generate("word " * 200, max_new_tokens=8, truncate_prompt=True,
                                       do_sample=False)
    with pytest.raises(ValueError, match="leaves no room for the prompt"):
        runner.generate("hi", max_new_tokens=runner.cache_length)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 50257\)"):
        runner.generate([1, 99999], max_new_tokens=2)
    runner.generate("hi", max_new_tokens=3)
    with pytest.raises(ValueError, match="past the cache"):
        runner._step(5, 10_000, seed=0, step=1)


def test_too_large_for_a_flatbuffer_names_what_fits():
    large = GPT2Config.from_preset("gpt2-large")
    tflite.check_fits(large, "int8")
    with pytest.raises(ValueError, match="over the 2 GiB limit.*--quantization=float16"):
        tflite.check_fits(large, "none", "gpt2-large")
    with pytest.raises(ValueError, match="--quantization=int8"):
        tflite.check_fits(GPT2Config.from_preset("gpt2-xl"), "float16")


def test_existing_file_is_kept_unless_overwrite(tiny_model, tflite_path):
    before = tflite_path.read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        tiny_model.export(tflite_path, format="litert", quantization="none")
    assert tflite_path.read_bytes() == before


def test_runner_needs_neither_tensorflow_nor_keras(tflite_path, tiny_model):
    """What an app has: NumPy and LiteRT. Importing TensorFlow fails here."""
    script = textwrap.dedent(f"""
        import json, sys
        for name in ("tensorflow", "keras", "keras_hub", "tf_keras", "tensorflow_text"):
            sys.modules[name] = None
        from tfgpt2.export.litert_runner import LiteRTRunner
        runner = LiteRTRunner({str(tflite_path)!r})
        print(json.dumps(runner.generate("Hello there", max_new_tokens=6, do_sample=False)))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = tiny_model.generate("Hello there", max_new_tokens=6, do_sample=False)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
