"""`finetune` in this process: it learns (a memorised passage comes back
by greedy decoding), its outputs load in keras-hub, accumulation equals a
larger batch, mixed precision trains float32 weights, and every failure is
a clear error that leaves the last good checkpoint in place."""

import errno
import math
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tfgpt2 import GPT2LMHeadModel
from tfgpt2.training import TrainingDivergedError, finetune, lm_dataset
from tfgpt2.training.checkpointing import CheckpointMismatchError, CheckpointWriteError
from tokenizer_support import tiktoken_gpt2
from training_support import (EOS, PASSAGE, max_weight_difference, save_tiny_model,
                              saved_weights, write_corpus)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def passage_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("passage")
    write_corpus(directory, [PASSAGE])
    return directory


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    write_corpus(directory)
    return directory


def brute_force_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[target], in float64 numpy."""
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    return log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]


def scalar_tags(log_dir) -> set:
    tags = set()
    for path in tf.io.gfile.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def _progress_lines(out: str, total: int) -> list[tuple[int, float | None]]:
    """(step, eval_loss shown or None) for each progress line Keras drew."""
    lines = []
    for frame in re.split(r"[\r\n]", out.replace("\b", "")):
        frame = re.sub(r"\x1b\[[0-9;]*m", "", frame)
        step = re.search(rf"(\d+)/{total} ", frame)
        if step:
            shown = re.search(r"eval_loss: (\S+)", frame)
            lines.append((int(step.group(1)), float(shown.group(1)) if shown else None))
    return lines


def test_loss_falls_and_the_passage_comes_back_by_greedy_decoding(tiny_dir, passage_dir, tmp_path,
                                                                   capsys, monkeypatch):
    import keras_hub

    from tfgpt2.training import trainer

    returned = {}  # step -> what the evaluation returned there
    evaluate = trainer._Run._evaluate  # noqa: SLF001
    monkeypatch.setattr(trainer._Run, "_evaluate",  # noqa: SLF001
                        lambda run: returned.setdefault(run.step, evaluate(run)))
    out = tmp_path / "run"
    result = finetune(train_files=str(passage_dir / "*.txt"), eval_files=str(passage_dir / "*.txt"),
                      output_dir=str(out), model=str(tiny_dir), global_batch_size=2, seq_len=32,
                      train_steps=40, learning_rate=1e-2, warmup_steps=5, eval_every=20,
                      checkpoint_every=20, verbose=True)
    # Every progress line shows the latest evaluation's loss (none before the
    # first); Keras draws at most every 0.05 s, but always the last line.
    lines = _progress_lines(capsys.readouterr().out, 40)
    assert sorted(returned) == [20, 40] and lines[-1][0] == 40
    for step, shown in lines:
        latest = max((s for s in returned if s <= step), default=None)
        want = None if latest is None else pytest.approx(returned[latest], abs=6e-5)  # 4 decimals
        assert shown == want, (step, shown, returned)
    losses = result.history["loss"]
    assert len(losses) == 40 and losses[0] > 10 and losses[-1] < 0.1 * losses[0]
    # Each step logs the rate it used: warmup (s + 1) / 5 of the peak, then cosine.
    assert result.history["learning_rate"][:2] == pytest.approx([2e-3, 4e-3])
    last = 1e-3 + 0.5 * 9e-3 * (1 + math.cos(math.pi * (39 - 5) / (40 - 5)))
    assert result.history["learning_rate"][-1] == pytest.approx(last, rel=1e-5)

    ids = tiktoken_gpt2().encode_ordinary(PASSAGE) + [EOS]
    model = GPT2LMHeadModel.from_pretrained(out)
    continuation = model.generate(np.array([ids[:4]]), max_new_tokens=len(ids) - 4,
                                  do_sample=False, eos_token_id=[])
    assert np.asarray(continuation)[0].tolist() == ids

    # The final eval loss is the mean next-token NLL of the eval text.
    logits = model(np.array([ids])).logits.numpy()
    expected = brute_force_nll(logits[0, :-1], np.array(ids[1:])).mean()
    assert result.history["eval_step"] == [20, 40]
    assert result.history["eval_loss"][-1] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert result.history["eval_perplexity"][-1] == pytest.approx(math.exp(expected), rel=1e-4)

    # keras-hub reads the saved directory and computes the same logits.
    backbone = keras_hub.models.GPT2Backbone.from_preset(str(out))
    hidden = backbone({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)))})
    np.testing.assert_allclose(backbone.token_embedding(hidden, reverse=True).numpy(), logits,
                               atol=1e-4)
    assert {"loss", "learning_rate", "grad_norm", "tokens_per_sec", "eval_loss",
            "eval_perplexity"} <= scalar_tags(out / "logs")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-00000020",
                                                                      "ckpt-00000040"]


def settings(corpus_dir, tiny_dir, out, **overrides):
    values = dict(train_files=str(corpus_dir / "*.txt"), output_dir=str(out), model=str(tiny_dir),
                  global_batch_size=4, seq_len=8, train_steps=3, learning_rate=1e-3,
                  warmup_steps=1, checkpoint_every=0, eval_every=0, verbose=False)
    values.update(overrides)
    return values


def test_gradient_accumulation_equals_one_larger_batch(corpus_dir, tiny_dir, tmp_path):
    finetune(**settings(corpus_dir, tiny_dir, tmp_path / "one"))
    finetune(**settings(corpus_dir, tiny_dir, tmp_path / "accum", grad_accum_steps=4))
    # AdamW moves a weight by ~lr = 1e-3 per step whatever the gradient's
    # scale; summing in another order may shift that by float rounding, and
    # for a near-zero gradient m/sqrt(v) magnifies it (0.7% of a step seen
    # on an AVX-512 CPU). A lost or doubled micro-batch costs whole steps.
    assert max_weight_difference(tmp_path / "one", tmp_path / "accum") < 0.02 * 1e-3
    # ... and training did move the weights, far more than that tolerance.
    assert max_weight_difference(tmp_path / "one", tiny_dir) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("precision,jit_compile", [
    ("bf16", None),  # on CPU: a plain-graph gradient (oneDNN bf16 kernels), an XLA update
    ("bf16", True),  # one XLA program, as on GPUs
    ("fp16", None),
])
def test_mixed_precision_trains_float32_weights(passage_dir, tiny_dir, tmp_path, precision,
                                                jit_compile):
    result = finetune(train_files=str(passage_dir / "*.txt"), output_dir=str(tmp_path),
                      model=str(tiny_dir), global_batch_size=2, seq_len=32, train_steps=12,
                      learning_rate=1e-2, warmup_steps=2, checkpoint_every=0, eval_every=0,
                      mixed_precision=precision, jit_compile=jit_compile, verbose=False)
    losses = result.history["loss"]
    assert losses[-1] < 0.6 * losses[0]
    compute = {"bf16": "bfloat16", "fp16": "float16"}[precision]
    assert result.model.blocks[0].mlp.c_fc.compute_dtype == compute
    assert {v.dtype for v in result.model.trainable_variables} == {"float32"}
    assert {a.dtype for a in saved_weights(tmp_path).values()} == {np.dtype("float32")}


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(corpus_dir, tiny_dir, tmp_path):
    # A learning rate of 1e30 puts weights near 1e30 after one step: the
    # next forward pass overflows float32.
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 2.*step 1\)"):
        finetune(**settings(corpus_dir, tiny_dir, tmp_path, learning_rate=1e30, warmup_steps=0,
                            clip_norm=0.0, checkpoint_every=1, train_steps=5))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-00000001"]
    assert not (tmp_path / "model.safetensors").exists()


def test_a_failed_checkpoint_write_keeps_the_previous_one(corpus_dir, tiny_dir, tmp_path,
                                                          monkeypatch):
    real_write = tf.train.Checkpoint.write
    calls = []

    def disk_full_on_second_write(self, prefix, *args, **kwargs):
        calls.append(prefix)
        if len(calls) == 2:  # half a checkpoint on disk, then the disk is full
            real_write(self, prefix, *args, **kwargs)
            os.remove(prefix + ".index")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, prefix, *args, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "write", disk_full_on_second_write)
    with pytest.raises(CheckpointWriteError,
                       match=r"step 4 .*No space left on device.*step 2\) is intact.*rerun"):
        finetune(**settings(corpus_dir, tiny_dir, tmp_path, checkpoint_every=2, train_steps=6))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-00000002"]
    monkeypatch.setattr(tf.train.Checkpoint, "write", real_write)
    resumed = finetune(**settings(corpus_dir, tiny_dir, tmp_path, checkpoint_every=2, train_steps=6))
    assert resumed.history["step"] == [3, 4, 5, 6]


def test_an_output_dir_of_another_model_or_run_is_refused(corpus_dir, tiny_dir, tmp_path):
    finetune(**settings(corpus_dir, tiny_dir, tmp_path / "run", train_steps=1))
    other_model = save_tiny_model(tmp_path / "other", n_layer=3)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)different run.*n_layer: checkpoint 2, now 3"
                                                      r".*new --output_dir"):
        finetune(**settings(corpus_dir, other_model, tmp_path / "run", train_steps=2))
    with pytest.raises(CheckpointMismatchError, match=r"settings.learning_rate: checkpoint 0.001"):
        finetune(**settings(corpus_dir, tiny_dir, tmp_path / "run", train_steps=2,
                            learning_rate=0.01))


def test_seq_len_above_the_context_is_refused(corpus_dir, tiny_dir, tmp_path):
    with pytest.raises(ValueError, match=r"seq_len=65 exceeds the model's context "
                                         r"\(n_positions=64\); use seq_len=64 or less"):
        finetune(**settings(corpus_dir, tiny_dir, tmp_path, seq_len=65))


def test_an_unwritable_output_dir_is_refused_before_training(corpus_dir, tiny_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(PermissionError, match="Cannot write to output_dir .*writable directory"):
        finetune(**settings(corpus_dir, tiny_dir, blocker / "run"))


def test_keras_compile_and_fit_on_token_ids(passage_dir, tiny_dir):
    import keras

    model = GPT2LMHeadModel.from_pretrained(tiny_dir)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2))  # default loss: causal LM
    dataset = lm_dataset(str(passage_dir / "*.txt"), seq_len=16, batch_size=2)
    batch = next(iter(dataset))
    logits = model(batch).logits.numpy()
    ids, mask = batch["input_ids"].numpy(), batch["attention_mask"].numpy()
    nll = brute_force_nll(logits[:, :-1], ids[:, 1:])
    weight = mask[:, 1:] * mask[:, :-1]
    expected = (nll * weight).sum() / weight.sum()
    assert model.evaluate(batch, verbose=0) == pytest.approx(expected, rel=1e-5)
    history = model.fit(dataset, steps_per_epoch=10, epochs=2, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]


def test_a_glob_that_matches_nothing_leaves_no_output_directory(tiny_dir, tmp_path):
    out = tmp_path / "runs" / "one"
    with pytest.raises(FileNotFoundError, match="No file matches"):
        finetune(train_files=str(tmp_path / "nothing" / "*.txt"), output_dir=str(out),
                 model=str(tiny_dir), verbose=False)
    assert not (tmp_path / "runs").exists()


def test_a_corpus_shorter_than_one_block_is_warned_about(tiny_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, ["Four tokens here."])
    finetune(**settings(corpus, tiny_dir, tmp_path / "out", seq_len=32, train_steps=1))
    err = capsys.readouterr().err
    assert "shorter than one block of seq_len=32" in err and "lower --seq_len" in err
