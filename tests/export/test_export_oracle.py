"""Both artifacts against an independent implementation: a keras-hub
GPT2Backbone, written to disk by keras-hub's own transformers exporter and
loaded by tfgpt2 before exporting. The SavedModel (in a process without
tfgpt2 or Keras) and the `.tflite` (in LiteRT) must give keras-hub's logits,
and greedy tokens equal to a brute-force argmax over keras-hub's logits.
The other export tests compare with `generate`, which shares their code;
this one does not."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import BLOCK_IMPORTS
from model_support import export_keras_hub, keras_hub_backbone, keras_hub_outputs
from tfgpt2 import GPT2Config
from tfgpt2.export.litert_runner import LiteRTRunner
from tokenizer_support import tiktoken_gpt2

pytestmark = pytest.mark.slow

PROMPT = "The quick brown fox jumps over"
NEW = 8


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """(keras-hub backbone, the tfgpt2 model loaded from keras-hub's files)."""
    from tfgpt2 import GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    backbone = keras_hub_backbone(config, seed=5)
    # A larger embedding and louder blocks (model_support.louder_small_model's
    # recipe), so greedy tokens depend on the context instead of repeating one.
    louder = [v for v in backbone.weights
              if v.path.endswith(("feedforward_output_dense/kernel", "attention_output/kernel"))]
    assert len(louder) == 2 * config.n_layer
    for variable in louder:
        variable.assign(variable.numpy() * 60.0)
    backbone.token_embedding.embeddings.assign(backbone.token_embedding.embeddings.numpy() * 12.0)
    directory = tmp_path_factory.mktemp("keras_hub_gpt2")
    export_keras_hub(backbone, directory)
    return backbone, GPT2LMHeadModel.from_pretrained(directory)


def brute_force_greedy(backbone, ids, new):
    """Greedy by calling keras-hub on the whole sequence for every token."""
    ids = list(ids)
    for _ in range(new):
        _, logits = keras_hub_outputs(backbone, np.array([ids], np.int32))
        ids.append(int(np.argmax(logits[0, -1])))
    return ids[-new:]


def test_saved_model_logits_and_greedy_tokens_equal_keras_hub(oracle, tmp_path):
    backbone, model = oracle
    ids = tiktoken_gpt2().encode(PROMPT)
    path = model.export(tmp_path / "served", format="tf_saved_model", verbose=False)
    script = BLOCK_IMPORTS + textwrap.dedent(f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        ids = tf.constant([{ids!r}], tf.int32)
        logits = loaded.signatures["logits"](input_ids=ids, attention_mask=tf.ones_like(ids))
        out = loaded.signatures["serving_default"](
            prompts=tf.constant([{PROMPT!r}]), max_new_tokens=tf.constant({NEW}),
            temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
            seed=tf.constant(0))
        print(json.dumps({{"logits": logits["logits"].numpy()[0].tolist(),
                          "tokens": out["token_ids"].numpy()[0].tolist(),
                          "num_tokens": int(out["num_tokens"][0])}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    _, want_logits = keras_hub_outputs(backbone, np.array([ids], np.int32))
    np.testing.assert_allclose(np.array(served["logits"]), want_logits[0], atol=2e-4, rtol=1e-4)
    want_tokens = brute_force_greedy(backbone, ids, NEW)
    stop = want_tokens.index(50256) + 1 if 50256 in want_tokens else NEW
    assert served["tokens"][:stop] == want_tokens[:stop]


def test_tflite_logits_and_greedy_tokens_equal_keras_hub(oracle, tmp_path):
    backbone, model = oracle
    ids = tiktoken_gpt2().encode(PROMPT)
    path = model.export(tmp_path / "tiny.tflite", format="litert", quantization="none",
                        verbose=False)
    runner = LiteRTRunner(path, num_threads=1)
    prefill = runner.interpreter.get_signature_runner("prefill")(
        ids=np.array([ids], np.int32), temperature=np.float32(0), top_k=np.int32(0),
        top_p=np.float32(1), seed=np.array([0, 0], np.int32))
    _, want_logits = keras_hub_outputs(backbone, np.array([ids], np.int32))
    np.testing.assert_allclose(prefill["logits"][0], want_logits[0, -1], atol=2e-4, rtol=1e-4)
    tokens = runner.generate(ids, max_new_tokens=NEW, do_sample=False, stop_token_ids=[])
    want = brute_force_greedy(backbone, ids, NEW)
    assert len(set(want)) > 1  # the oracle's tokens change with the context
    assert tokens == want
