"""Checkpoint IO: files written by other libraries load and match them; ours
load back exactly and in keras-hub; every bad checkpoint is a clear error."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from model_support import export_keras_hub, keras_hub_backbone, keras_hub_outputs, small_config
from tfgpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model
from tfgpt2.checkpoints.weights import CheckpointError

IDS = np.array([[3, 14, 15, 92, 65, 35, 89, 79]])


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """A small keras-hub model and its transformers export (HF layout with
    the `transformer.` prefix, written by keras-hub)."""
    config = small_config(n_layer=3, vocab_size=500)
    backbone = keras_hub_backbone(config, seed=11)
    directory = tmp_path_factory.mktemp("keras_hub_export")
    export_keras_hub(backbone, directory)
    return config, backbone, directory


def hf_tensors(directory):
    from safetensors.numpy import load_file

    return {k.removeprefix("transformer."): v
            for k, v in load_file(os.path.join(directory, "model.safetensors")).items()}


def assert_matches_keras_hub(model, backbone):
    ref_hidden, ref_logits = keras_hub_outputs(backbone, IDS)
    out = model(IDS)
    np.testing.assert_allclose(out.logits.numpy(), ref_logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.last_hidden_state.numpy(), ref_hidden, atol=1e-5, rtol=0)


def test_keras_hub_export_loads_and_matches(oracle):
    _, backbone, directory = oracle
    assert_matches_keras_hub(GPT2LMHeadModel.from_pretrained(directory), backbone)


def test_unprefixed_sharded_safetensors_with_buffers(oracle, tmp_path):
    """The layout of the hub's own GPT-2 files: no prefix, `attn.bias` /
    `attn.masked_bias` buffers present, here also split into shards with an
    index, all written with the safetensors library."""
    config, backbone, directory = oracle
    tensors = hf_tensors(directory)
    n_ctx = config.n_positions
    for i in range(config.n_layer):
        tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, n_ctx, n_ctx), np.float32))
        tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    names = sorted(tensors)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        filename = f"model-{i:05d}-of-00002.safetensors"
        save_file({n: tensors[n] for n in shard}, str(tmp_path / filename), metadata={"format": "pt"})
        weight_map.update({n: filename for n in shard})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config.save_pretrained(tmp_path)
    assert_matches_keras_hub(GPT2LMHeadModel.from_pretrained(tmp_path), backbone)


def test_openai_tf_checkpoint_loads_and_matches(oracle, tmp_path):
    """OpenAI's release layout (names and [1, in, out] conv weights), written
    with tf.compat.v1's Saver like their original code."""
    config, backbone, directory = oracle
    tensors = hf_tensors(directory)

    def openai_name(name):
        name = name.replace("h.", "h", 1) if name.startswith("h.") else name
        parts = name.split(".")
        suffix = {"weight": "w" if parts[-2].startswith("c_") else "g", "bias": "b"}[parts[-1]]
        if parts[0] in ("wte", "wpe"):
            return f"model/{parts[0]}"
        return "model/" + "/".join(parts[:-1]) + "/" + suffix

    graph = tf.Graph()
    with graph.as_default():
        variables = []
        for name, value in tensors.items():
            if name.split(".")[-2].startswith("c_") and name.endswith("weight"):
                value = value[None]  # OpenAI's conv1d kernels are [1, in, out]
            variables.append(tf.compat.v1.Variable(value, name=openai_name(name)))
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(tmp_path / "model.ckpt"))
    hparams = {"n_vocab": config.vocab_size, "n_ctx": config.n_positions, "n_embd": config.n_embd,
               "n_head": config.n_head, "n_layer": config.n_layer}
    (tmp_path / "hparams.json").write_text(json.dumps(hparams))
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert model.config.resid_pdrop == 0.0
    assert_matches_keras_hub(model, backbone)


def test_save_pretrained_round_trip_is_exact(tmp_path):
    model = GPT2LMHeadModel.from_config(small_config(), seed=21)
    model.save_pretrained(tmp_path)
    assert {"model.safetensors", "config.json", "vocab.json", "merges.txt"} <= set(os.listdir(tmp_path))
    restored = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert restored.config == model.config
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(restored(IDS).logits.numpy(), model(IDS).logits.numpy())
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_saved_files_are_readable_by_other_users(tmp_path):
    """Saved files get the usual permissions (0666 minus the umask), so a
    serving container running as another user can read them."""
    old = os.umask(0o022)
    try:
        GPT2LMHeadModel.from_config(small_config(), seed=21).save_pretrained(tmp_path)
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json", "vocab.json", "merges.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_sharded_save_round_trip(tmp_path):
    model = GPT2Model.from_config(small_config(), seed=22)
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    shards = sorted(f for f in os.listdir(tmp_path) if f.startswith("model-"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    restored = GPT2Model.from_pretrained(tmp_path)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_saved_checkpoint_loads_in_keras_hub(tmp_path):
    import keras_hub

    model = GPT2LMHeadModel.from_config(small_config(vocab_size=50257), seed=23)
    model.save_pretrained(tmp_path)
    backbone = keras_hub.models.GPT2Backbone.from_preset(str(tmp_path))
    assert_matches_keras_hub(model, backbone)
    tokenizer = keras_hub.models.GPT2Tokenizer.from_preset(str(tmp_path))
    assert tokenizer.vocabulary_size() == 50257


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = GPT2LMHeadModel.from_config(small_config(), seed=24)
    model.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    other = GPT2LMHeadModel.from_config(small_config(), seed=25)

    def fail(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.numpy.save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        other.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_a_save_that_fails_late_writes_nothing(tmp_path, monkeypatch):
    """The vocabulary is written last: failing there must not leave weights
    and a config without it (a checkpoint that cannot load)."""
    model = GPT2LMHeadModel.from_config(small_config(), seed=26)

    def fail(self, directory):
        raise OSError("disk full")

    monkeypatch.setattr("tfgpt2.tokenizer.hf_api.GPT2Tokenizer.save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path) == []


def test_save_into_a_directory_named_like_a_hub_model(tmp_path, monkeypatch):
    """The guides save for offline use into `gpt2-medium/`; a model with no
    checkpoint of its own must not look for its vocabulary there."""
    from tokenizer_support import tiktoken_gpt2

    monkeypatch.chdir(tmp_path)
    GPT2LMHeadModel.from_config(small_config(), seed=27).save_pretrained("gpt2-medium")
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(
        os.listdir("gpt2-medium"))
    loaded = GPT2LMHeadModel.from_pretrained("gpt2-medium")
    text = "Offline, from a directory named like the hub's model."
    assert loaded.tokenizer.encode(text) == tiktoken_gpt2().encode(text)


def test_a_single_file_save_removes_an_earlier_saves_shards(tmp_path):
    GPT2Model.from_config(small_config(), seed=28).save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model = GPT2Model.from_config(small_config(), seed=29)
    model.save_pretrained(tmp_path)
    assert sorted(f.name for f in tmp_path.glob("model*")) == ["model.safetensors"]
    loaded = GPT2Model.from_pretrained(tmp_path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# --- bad checkpoints -----------------------------------------------------------


@pytest.fixture()
def saved(tmp_path):
    model = GPT2LMHeadModel.from_config(small_config(), seed=26)
    model.save_pretrained(tmp_path)
    return tmp_path


def test_pytorch_bin_only_explains_safetensors(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    small_config().save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="pytorch_model.bin.*model.safetensors"):
        GPT2LMHeadModel.from_pretrained(tmp_path)


def test_empty_and_missing_directories(tmp_path):
    with pytest.raises(CheckpointError, match="No GPT-2 weights"):
        GPT2LMHeadModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="No directory at"):
        GPT2LMHeadModel.from_pretrained(str(tmp_path / "nope" / "deeper"))


def test_truncated_safetensors_names_the_file(saved):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        GPT2LMHeadModel.from_pretrained(saved)


def test_garbage_safetensors_names_the_file(saved):
    (saved / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        GPT2LMHeadModel.from_pretrained(saved)


def test_missing_shard_names_the_file(tmp_path):
    GPT2Model.from_config(small_config(), seed=1).save_pretrained(tmp_path, max_shard_size="100KB")
    victim = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=victim.name):
        GPT2Model.from_pretrained(tmp_path)


def test_config_with_more_layers_lists_missing_tensors(saved):
    config = json.loads((saved / "config.json").read_text())
    config["n_layer"] = 3
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing tensors .*h\.2\.attn\.c_attn\.bias"):
        GPT2LMHeadModel.from_pretrained(saved)


def test_config_with_fewer_layers_lists_unexpected_tensors(saved):
    with pytest.raises(CheckpointError, match=r"unexpected tensors .*h\.1\."):
        GPT2LMHeadModel.from_pretrained(saved, config=small_config(n_layer=1))


def test_shape_mismatch_names_tensor_and_shapes(saved):
    with pytest.raises(CheckpointError,
                       match=r"transformer\.wte\.weight: expected \(400, 64\), found \(320, 64\)"):
        GPT2LMHeadModel.from_pretrained(saved, config=small_config(vocab_size=400))
    with pytest.raises(CheckpointError, match=r"c_attn\.weight: expected \(128, 384\), found \(64, 192\)"):
        GPT2LMHeadModel.from_pretrained(saved, config=small_config(n_embd=128))


def test_untied_head_is_refused(saved):
    from safetensors.numpy import load_file

    tensors = load_file(str(saved / "model.safetensors"))
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1.0
    save_file(tensors, str(saved / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lm_head.weight that differs from wte.weight"):
        GPT2LMHeadModel.from_pretrained(saved)


def test_bad_config_json_names_the_file(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        GPT2LMHeadModel.from_pretrained(saved)


def test_corrupt_openai_checkpoint_names_it(tmp_path):
    (tmp_path / "hparams.json").write_text(json.dumps(
        {"n_vocab": 10, "n_ctx": 8, "n_embd": 8, "n_head": 2, "n_layer": 1}))
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    (tmp_path / "model.ckpt.index").write_bytes(b"garbage")
    (tmp_path / "model.ckpt.data-00000-of-00001").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.ckpt files may be truncated or corrupt"):
        GPT2LMHeadModel.from_pretrained(tmp_path)


def test_offline_hub_name_says_how_to_pass_a_directory(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(OSError) as caught:
        GPT2LMHeadModel.from_pretrained("gpt2-medium")
    message = str(caught.value)
    assert "hf download openai-community/gpt2-medium" in message  # a CLI that exists
    assert str(tmp_path) in message  # where the hub cache lives
    assert "instead of the name" in message
    with pytest.raises(OSError, match="some-org/some-gpt2"):
        GPT2Config.from_pretrained("some-org/some-gpt2")


def test_config_and_hub_import_one_way():
    """config -> checkpoints.hub -> names, never back (they used to import
    each other): a fresh process importing the hub loads no config."""
    import subprocess
    import sys

    code = ("import sys, tfgpt2.checkpoints.hub; "
            "assert 'tfgpt2.config' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hub_names_download_only_safetensors_config_and_tokenizer(monkeypatch, saved):
    """A hub name goes through huggingface_hub.snapshot_download (faked
    here: no network), restricted to the files we read."""
    import fnmatch

    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, list(allow_patterns)))
        return str(saved)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = GPT2LMHeadModel.from_pretrained("gpt2-medium")
    repo_id, patterns = calls[0]
    assert repo_id == "openai-community/gpt2-medium"
    wanted = ["model.safetensors", "model-00001-of-00002.safetensors",
              "model.safetensors.index.json", "config.json", "vocab.json", "merges.txt"]
    unwanted = ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot"]
    assert all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in wanted)
    assert not any(fnmatch.fnmatch(f, p) for f in unwanted for p in patterns)
    assert model.tokenizer.vocabulary.source == str(saved)
    GPT2LMHeadModel.from_pretrained("some-org/a-gpt2")
    assert calls[-1][0] == "some-org/a-gpt2"
