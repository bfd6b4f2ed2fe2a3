"""The learning-rate schedule against nanoGPT's formula written out here,
which weights AdamW decays, and when the step is XLA-compiled."""

import math

import numpy as np
import pytest

from tfgpt2 import GPT2LMHeadModel
from tfgpt2.training.optimization import WarmupDecay, decayed
from tfgpt2.training.settings import FinetuneConfig
from training_support import tiny_config


def brute_force_lr(step, peak, warmup, total, kind, min_ratio):
    floor = peak * min_ratio
    if step < warmup:
        return peak * (step + 1) / warmup
    if kind == "constant":
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))
    return peak - (peak - floor) * progress


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("warmup", [0, 1, 7])
def test_schedule_matches_the_formula(kind, warmup):
    schedule = WarmupDecay(3e-4, warmup, 50, kind, 0.1)
    for step in range(0, 60):
        expected = brute_force_lr(step, 3e-4, warmup, 50, kind, 0.1)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5), step


def test_weight_decay_goes_to_matrices_but_not_positions_biases_or_layernorm():
    model = GPT2LMHeadModel.from_config(tiny_config(), seed=0)
    chosen = {v.path for v in model.trainable_variables if decayed(v)}
    assert chosen == {v.path for v in model.trainable_variables
                      if v.path.endswith(("wte", "kernel"))}
    assert len(chosen) == 1 + 4 * model.config.n_layer
    assert not any(p.endswith(("wpe", "bias", "gamma", "beta")) for p in chosen)
    assert np.all([len(v.shape) == 2 for v in model.trainable_variables if decayed(v)])


@pytest.mark.parametrize("on_cpu,chosen,expected", [
    (True, None, False),   # CPUs: oneDNN's matmuls beat XLA's, the gradient is a plain graph
    (False, None, True),   # GPUs and TPUs: one XLA program
    (True, True, True),    # an explicit choice always wins
    (False, False, False),
])
def test_the_gradient_is_xla_compiled_except_on_cpus(on_cpu, chosen, expected):
    config = FinetuneConfig(train_files="x", output_dir="y", jit_compile=chosen)
    assert config.resolved_jit_compile(on_cpu=on_cpu) is expected
