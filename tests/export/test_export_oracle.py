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
from model_support import (brute_force_greedy, export_keras_hub, keras_hub_outputs,
                           louder_keras_hub_backbone)
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
    backbone = louder_keras_hub_backbone(config, seed=5)
    directory = tmp_path_factory.mktemp("keras_hub_gpt2")
    export_keras_hub(backbone, directory)
    return backbone, GPT2LMHeadModel.from_pretrained(directory)


def test_saved_model_logits_and_greedy_tokens_equal_keras_hub(oracle, tmp_path):
    backbone, model = oracle
    ids = tiktoken_gpt2().encode(PROMPT)
    path = model.export(tmp_path / "served", format="tf_saved_model", verbose=False)
    script = BLOCK_IMPORTS + textwrap.dedent(f"""
        import json, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        ids = tf.constant([{ids!r}], tf.int32)
        logits = loaded.signatures["logits"](input_ids=ids, attention_mask=tf.ones_like(ids))
        out = loaded.signatures["generate"](
            prompts=tf.constant([{PROMPT!r}]), max_new_tokens=tf.constant([{NEW}]),
            temperature=tf.constant([0.0]), top_k=tf.constant([0]), top_p=tf.constant([1.0]),
            seed=tf.constant([0]))
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
    _, want_logits = keras_hub_outputs(backbone, np.array([ids], np.int32))
    np.testing.assert_allclose(runner.next_token_logits(ids), want_logits[0, -1], atol=2e-4,
                               rtol=1e-4)
    tokens = runner.generate(ids, max_new_tokens=NEW, do_sample=False, stop_token_ids=[])
    want = brute_force_greedy(backbone, ids, NEW)
    assert len(set(want)) > 1  # the oracle's tokens change with the context
    assert tokens == want
