"""The `.litertlm` bundle in the stock LiteRT-LM runtime: `litert_lm.Engine`
(the C++ runtime behind its Android and iOS SDKs) and `litert-lm serve`,
each run in a process of its own with neither TensorFlow nor tfgpt2.

The oracle is keras-hub: a GPT2Backbone written to disk by keras-hub's own
transformers exporter, loaded by tfgpt2 and exported; the runtime's greedy
text must be the text of a brute-force argmax over keras-hub's logits."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BLOCK_IMPORTS
from model_support import brute_force_greedy, export_keras_hub, louder_keras_hub_backbone
from tfgpt2 import GPT2Config
from tfgpt2.export import tflite
from tfgpt2.export.litert_runner import LiteRTRunner
from tokenizer_support import tiktoken_gpt2

pytestmark = pytest.mark.slow

NEW = 8
LONG = max(tflite.PREFILL_LENGTHS) + 20  # more than the largest prefill: several calls
PROMPTS = ["The quick brown fox jumps over", "Ünïcode ☃ → 日本語の文 🙂",
           # More tokens than the largest prefill takes, fewer than the cache.
           tiktoken_gpt2().decode(tiktoken_gpt2().encode(
               " ".join(f"word{i % 37} and" for i in range(400)))[:LONG - 4])]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """(keras-hub backbone, the tfgpt2 model loaded from keras-hub's files),
    with a context past the largest prefill length."""
    from tfgpt2 import GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=LONG + 2 * NEW,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    backbone = louder_keras_hub_backbone(config, seed=7)
    directory = tmp_path_factory.mktemp("keras_hub_gpt2")
    export_keras_hub(backbone, directory)
    return backbone, GPT2LMHeadModel.from_pretrained(directory)


@pytest.fixture(scope="module")
def bundles(oracle, tmp_path_factory):
    """{quantization: path} of the bundles, fp32 and int8."""
    _, model = oracle
    out = tmp_path_factory.mktemp("bundles")
    return {q: model.export(out / f"tiny.{q}.litertlm", format="litert", quantization=q,
                            verbose=False) for q in ("none", "int8")}


ENGINE_SCRIPT = BLOCK_IMPORTS + textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    path, requests = sys.argv[1], json.loads(sys.argv[2])
    engine = litert_lm.Engine(path, backend=litert_lm.Backend.CPU(), cache_dir=":nocache",
                              activation_data_type=litert_lm.ActivationDataType.FLOAT32)
    texts = []
    for r in requests:
        config = litert_lm.SamplerConfig(top_k=r["top_k"], top_p=1.0, temperature=1.0,
                                         seed=r["seed"])
        session = engine.create_session(apply_prompt_template=False, sampler_config=config,
                                        max_output_tokens=r["new"])
        session.run_prefill([r["prompt"]])
        texts.append(session.run_decode().texts[0])
        session.close()
    print(json.dumps(texts))
""")


def engine_texts(path, requests) -> list[str]:
    result = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(path), json.dumps(requests)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def greedy(prompt, new=NEW, seed=0):
    return dict(prompt=prompt, new=new, top_k=1, seed=seed)


def expected_text(backbone, prompt) -> str:
    enc = tiktoken_gpt2()
    ids = enc.encode(prompt)
    tokens = brute_force_greedy(backbone, ids, NEW)
    if 50256 in tokens:  # the runtime stops at the stop token
        tokens = tokens[:tokens.index(50256)]
    return enc.decode(tokens)


def test_greedy_text_in_the_stock_engine_equals_keras_hub(oracle, bundles):
    backbone, _ = oracle
    enc = tiktoken_gpt2()
    assert max(tflite.PREFILL_LENGTHS) < len(enc.encode(PROMPTS[-1])) <= LONG
    texts = engine_texts(bundles["none"], [greedy(p) for p in PROMPTS])
    for prompt, text in zip(PROMPTS, texts, strict=True):
        assert text == expected_text(backbone, prompt), prompt[:40]
    assert len(set(texts)) == len(texts)  # the oracle's text depends on the prompt


def _unpack(bundle, directory) -> Path:
    from litert_lm_builder import litertlm_builder  # the builder's own reader

    litertlm_builder.unpack(str(bundle), str(directory))
    return Path(directory)


def test_the_bundle_holds_the_model_the_tokenizer_and_the_metadata(bundles, oracle, tmp_path):
    import zlib

    from google.protobuf import text_format
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    from tfgpt2.tokenizer.tokenizer_json import tokenizer_json

    _, model = oracle
    parts = _unpack(bundles["none"], tmp_path)
    toml = (parts / "model.toml").read_text()
    assert 'model_type = "prefill_decode"' in toml and "HF_Tokenizer" in toml
    tokenizer = next(parts.glob("*HF_Tokenizer*"))
    data = tokenizer.read_bytes()
    text = zlib.decompress(data[8:]) if int.from_bytes(data[:8], "little") else zlib.decompress(data)
    assert json.loads(text) == json.loads(json.dumps(tokenizer_json(model.tokenizer.vocabulary)))
    meta = text_format.Parse((parts / "LlmMetadataProto.pbtext").read_text(),
                             llm_metadata_pb2.LlmMetadata())
    assert [list(t.token_ids.ids) for t in meta.stop_tokens] == [[50256]]
    assert not meta.HasField("start_token")  # prompts go in as they are (module docstring)
    assert meta.max_num_tokens == model.config.n_positions


def test_seeded_sampling_is_reproducible(bundles):
    prompt = PROMPTS[0]
    requests = [dict(prompt=prompt, new=12, top_k=40, seed=s) for s in (3, 3, 4)]
    first, again, other = engine_texts(bundles["none"], requests)
    assert first == again and first != other


def test_int8_bundle_runs_and_matches_our_runner_on_the_same_file(bundles, tmp_path):
    """One .tflite, two runtimes: LiteRT-LM's greedy text equals our
    runner's on the int8 file it carries (its drift from fp32 is in
    BENCHMARKS.md, from bench/export.py)."""
    model_file = next(_unpack(bundles["int8"], tmp_path).glob("*.tflite"))
    runner = LiteRTRunner(model_file, num_threads=1)
    prompts = PROMPTS[:2]
    texts = engine_texts(bundles["int8"], [greedy(p) for p in prompts])
    for prompt, text in zip(prompts, texts, strict=True):
        ours = runner.generate(prompt, max_new_tokens=NEW, do_sample=False)
        assert prompt + text == ours


def test_our_runner_on_the_bundled_file_equals_keras_hub_across_decode_windows(
        oracle, bundles, tmp_path):
    """The runner reads the cache through decode_128, _256, _512 and then
    `decode` as the position grows; every switch keeps keras-hub's tokens."""
    backbone, _ = oracle
    runner = LiteRTRunner(next(_unpack(bundles["none"], tmp_path).glob("*.tflite")),
                          num_threads=1)
    assert runner.decode_windows == tuple(w for w in tflite.DECODE_WINDOWS
                                          if w < runner.cache_length)
    enc = tiktoken_gpt2()
    long_ids = enc.encode(PROMPTS[-1])
    for start in (120, 250, 505, len(long_ids)):  # each crosses a window's end
        ids = long_ids[:start]
        got = runner.generate(ids, max_new_tokens=NEW, do_sample=False, stop_token_ids=[])
        assert got == brute_force_greedy(backbone, ids, NEW), start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_litert_lm_serve_answers_a_chat_completion(oracle, bundles, tmp_path):
    backbone, _ = oracle
    cli = Path(sys.executable).with_name("litert-lm")
    assert cli.exists(), "litert-lm (the CLI) is installed with the test extra"
    env = dict(os.environ, HOME=str(tmp_path))  # its model store lives under ~/.litert-lm
    done = subprocess.run([str(cli), "import", str(bundles["none"]), "gpt2-tiny"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    port = _free_port()
    server = subprocess.Popen([str(cli), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=5) as reply:
                    models = json.load(reply)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()[-2000:]
                assert time.monotonic() < deadline, "litert-lm serve did not start"
                time.sleep(0.5)
        assert "gpt2-tiny" in json.dumps(models)
        body = {"model": "gpt2-tiny", "messages": [{"role": "user", "content": PROMPTS[0]}],
                "max_completion_tokens": NEW, "top_k": 1}
        request = urllib.request.Request(f"{base}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as reply:
            answer = json.load(reply)
        content = answer["choices"][0]["message"]["content"]
        # No chat template in the bundle: the message is the prompt as it is.
        assert content == engine_texts(bundles["none"], [greedy(PROMPTS[0])])[0]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_an_existing_bundle_is_kept_unless_overwrite(oracle, bundles):
    _, model = oracle
    path = bundles["int8"]
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.export(path, format="litertlm", verbose=False)
    assert path.read_bytes() == before


def test_a_cache_past_the_context_is_refused_before_converting(oracle, tmp_path):
    _, model = oracle
    with pytest.raises(ValueError, match=r"cache_length must be in \[2, "):
        model.export(tmp_path / "x.litertlm", format="litertlm",
                     cache_length=model.config.n_positions + 1)
    assert not any(tmp_path.iterdir())


def test_a_missing_builder_names_the_extra():
    script = textwrap.dedent("""
        import sys
        sys.modules["litert_lm_builder"] = None
        from tfgpt2.export.litertlm import builder_module
        try:
            builder_module()
        except ImportError as error:
            print(error)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert "pip install 'tfgpt2[litertlm]'" in result.stdout, result.stderr[-2000:]
