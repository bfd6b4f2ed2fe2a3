"""Ctrl-C (SIGINT) and SIGTERM during `--mode=finetune`: the step finishes,
a checkpoint is written at it, the process exits at once with 130 or 143 and
one line saying what to do, and the rerun resumes there and ends with the
weights of an uninterrupted run. A second signal quits at once and leaves
the last checkpoint intact."""

import os
import signal
import subprocess
import time

import pytest

from training_support import REPO, main_py, max_weight_difference, save_tiny_model, write_corpus

pytestmark = pytest.mark.slow
STEPS = 200


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    write_corpus(root / "text")
    save_tiny_model(root / "init")
    return root


def command(root, out):
    settings = dict(train_files=str(root / "text" / "*.txt"), model=str(root / "init"),
                    output_dir=str(out), global_batch_size=4, seq_len=8, train_steps=STEPS,
                    learning_rate=3e-3, warmup_steps=1, checkpoint_every=5, eval_every=0,
                    dropout=0.1)
    return main_py(*[f"--{k}={v}" for k, v in settings.items()])


def latest_step(out):
    steps = [int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("ckpt-*")]
    return max(steps, default=0)


def start(root, out):
    return subprocess.Popen(command(root, out), cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def signal_after_progress(process, out, signals, past):
    """Send `signals` once a checkpoint past step `past` exists (so at
    least 5 steps ran in this process); returns (exit code, stdout,
    stderr, seconds from the first signal to the exit)."""
    deadline = time.time() + 300
    while latest_step(out) <= past:
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.02)
    sent = time.time()
    for number in signals:
        process.send_signal(number)
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr, time.time() - sent


def test_signals_save_the_step_and_the_rerun_ends_like_an_uninterrupted_run(setup):
    reference = start(setup, setup / "whole")
    out = setup / "stopped"
    resumed_at = 0
    for number in (signal.SIGINT, signal.SIGTERM):
        code, stdout, stderr, seconds = signal_after_progress(start(setup, out), out, [number],
                                                              past=resumed_at + 4)
        # 30 s: the exit deadline the interrupt must keep (a tiny step and
        # checkpoint take ~1 s); a liveness bound, not a speed measurement.
        assert code == 128 + number and seconds < 30, (code, seconds, stderr[-3000:])
        lines = stderr.strip().splitlines()
        step = latest_step(out)
        assert lines[-1] == (f"Interrupted at step {step}; checkpoint written to "
                             f"{out / 'checkpoints' / f'ckpt-{step:08d}'}; rerun the same "
                             "command to resume."), stderr[-2000:]
        assert "Traceback" not in stderr and step > resumed_at + 4
        if resumed_at:
            assert f"Resuming at step {resumed_at} of {STEPS}" in stdout
        resumed_at = step
        assert not (out / "model.safetensors").exists()
    # A second Ctrl-C quits at once, before any checkpoint of its own.
    code, stdout, _, seconds = signal_after_progress(start(setup, out), out,
                                                     [signal.SIGINT, signal.SIGINT],
                                                     past=resumed_at + 4)
    assert code == -signal.SIGINT and seconds < 30, (code, seconds)
    done = subprocess.run(command(setup, out), cwd=REPO, text=True, capture_output=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Fine-tuned model (step {STEPS}) written to" in done.stdout
    assert "Resuming at step" in done.stdout
    assert reference.wait(timeout=600) == 0
    assert max_weight_difference(setup / "whole", out) == 0.0
