"""The .tflite in LiteRT with no custom op resolver: builtins only, static
shapes, the cache written in place, the tokenizer signatures equal tiktoken,
the runner's greedy tokens equal `model.generate`'s, bad input is a clear
error."""

import json
import os
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
def tflite_path(tiny_tflite):
    return tiny_tflite


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
    signatures = runner.model.get_signature_list()
    context = tiny_model.config.n_positions
    prefills = {f"prefill_{min(t, context)}" for t in tflite.PREFILL_LENGTHS}
    windows = {f"decode_{w}" for w in tflite.DECODE_WINDOWS if w < context}
    assert set(signatures) == {"tokenize", "detokenize", "decode", "sample", "metadata",
                               *prefills, *windows}
    assert runner.n_layer == tiny_model.config.n_layer
    assert runner.cache_length == context
    assert runner.max_token_bytes == max(map(len, tiny_model.tokenizer.vocabulary.token_bytes))


def _signatures(path):
    """{signature: (inputs, outputs, producer)} from the FlatBuffer itself:
    name -> shape signature, and output tensor -> (op, its input tensors)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = {}
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        graph = model.Subgraphs(sig.SubgraphIndex())

        def shape(t):
            tensor = graph.Tensors(t)
            if tensor.ShapeSignatureLength():
                return tensor.ShapeSignatureAsNumpy().tolist()
            return tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []

        inputs = {sig.Inputs(i).Name().decode(): sig.Inputs(i).TensorIndex()
                  for i in range(sig.InputsLength())}
        outputs = {sig.Outputs(i).Name().decode(): sig.Outputs(i).TensorIndex()
                   for i in range(sig.OutputsLength())}
        producer = {}
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            for j in range(op.OutputsLength()):
                producer[op.Outputs(j)] = (name, [op.Inputs(k) for k in range(op.InputsLength())])
        found[sig.SignatureKey().decode()] = (
            {n: shape(t) for n, t in inputs.items()}, {n: shape(t) for n, t in outputs.items()},
            {n: (producer.get(t), inputs) for n, t in outputs.items()})
    return found


def test_every_signature_has_static_shapes(tflite_path):
    """LiteRT.js and GPU delegates refuse a dynamic dimension (-1)."""
    for name, (inputs, outputs, _) in _signatures(tflite_path).items():
        for tensor, shape in {**inputs, **outputs}.items():
            assert -1 not in shape, (name, tensor, shape)


def test_the_cache_goes_straight_from_input_to_output(tflite_path, tiny_model):
    """LiteRT-LM's contract, and what keeps a bound buffer in place: each
    cache output is one DYNAMIC_UPDATE_SLICE of the input of its name."""
    cfg = tiny_model.config
    for name, (inputs, outputs, producers) in _signatures(tflite_path).items():
        if not name.startswith(("decode", "prefill_")):
            continue
        cache = sorted(n for n in inputs if n.startswith("kv_cache_"))
        assert len(cache) == 2 * cfg.n_layer and set(cache) <= set(outputs), name
        for n in cache:
            assert inputs[n] == [1, cfg.n_head, cfg.n_positions, cfg.head_dim]
            (op, op_inputs), tensor_of_input = producers[n]
            assert op == "DYNAMIC_UPDATE_SLICE" and op_inputs[0] == tensor_of_input[n], (name, n)
        assert inputs["tokens"][0] == 1 and inputs["input_pos"] == inputs["tokens"][1:]
    assert _signatures(tflite_path)["decode"][1]["logits"] == [1, 1, cfg.vocab_size]


def test_tokenizer_signatures_equal_tiktoken_and_round_trip(runner):
    enc = support.tiktoken_gpt2()
    for text in TEXTS + [d[:2000] for d in support.real_corpus()[:3]]:
        ids = runner.tokenize(text)
        assert ids == enc.encode(text, allowed_special="all")
        assert runner.detokenize(ids) == text
    # Bytes that are not UTF-8 encode losslessly and decode as errors="replace".
    raw = b"caf\xc3 \xff ok"
    ids = runner.encode_bytes(raw)
    assert b"".join(enc.decode_single_token_bytes(i) for i in ids) == raw
    assert runner.decode_bytes(ids) == raw
    assert runner.detokenize(ids) == raw.decode("utf-8", "replace")
    # The longest input, and ids over several detokenize calls.
    text = ("Ünïcode ☃ 🙂 and words, " * 400)[:runner.tokenize_bytes - 5]
    text = text.encode()[:runner.tokenize_bytes].decode("utf-8", "ignore")
    ids = runner.tokenize(text)
    assert ids == enc.encode(text) and len(ids) > runner.detokenize_ids
    assert runner.detokenize(ids) == text


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
    with pytest.raises(ValueError, match=r"token ids must be ints in \[0, 50257\)"):
        runner.generate([1, 99999], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"token ids must be ints in \[0, 50257\)"):
        runner.detokenize([-1])
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-2)):
        with pytest.raises(ValueError, match="temperature must be >= 0"):
            runner.generate("hi", max_new_tokens=3, **bad)
    with pytest.raises(ValueError, match="tokenizes at most 8192"):
        runner.tokenize("x" * 9000)
    assert len(runner.tokenize("a b " * 3000, truncate=True)) > 1000
    runner.generate("hi", max_new_tokens=3)
    with pytest.raises(ValueError, match="past the cache"):
        runner._next_token(5, 10_000, 0, 1, {"temperature": 0.0})


def test_too_large_for_a_flatbuffer_names_what_fits():
    large = GPT2Config.from_preset("gpt2-large")
    tflite.check_fits(large, "int8")
    with pytest.raises(ValueError, match="over the 2 GiB limit.*--quantization=float16"):
        tflite.check_fits(large, "none", "gpt2-large")
    with pytest.raises(ValueError, match="--quantization=int8"):
        tflite.check_fits(GPT2Config.from_preset("gpt2-xl"), "float16")


def test_existing_file_is_kept_unless_overwrite(tiny_model, tflite_path):
    before = tflite_path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
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


NOISE = ("failed call to cuInit", "cudart_stub", "oneDNN custom operations",
         "To enable the following instructions", "XNNPACK delegate", "accelerator_registry",
         "absl::InitializeLog")


def test_python_and_notebooks_see_no_start_up_log_lines(tflite_path, tiny_checkpoint):
    """`import tfgpt2` hides TensorFlow's and LiteRT's C++ start-up lines as
    the command line does, and keeps them when the user chose a level."""
    script = textwrap.dedent(f"""
        import sys
        import tfgpt2
        import tensorflow as tf
        from tfgpt2.export.litert_runner import LiteRTRunner
        model = tfgpt2.GPT2LMHeadModel.from_pretrained({str(tiny_checkpoint)!r})
        model.generate("Hi", max_new_tokens=2, do_sample=False)
        LiteRTRunner({str(tflite_path)!r}).generate("Hi", max_new_tokens=2, do_sample=False)
        print("a line of the user's own", file=sys.stderr)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=600, env=env)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "a line of the user's own" in quiet.stderr
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr[-3000:]
    chosen = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600, env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert chosen.returncode == 0 and "oneDNN custom operations" in chosen.stderr
