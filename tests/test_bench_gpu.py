"""bench/gpu.py, the one command for GPU machines: its CPU smoke run
completes with every row and a passed parity check, and its judgements
(parity, peak FLOP/s) fail loudly or name their source as they should."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench_module(name: str):
    """A bench/ module by its path (bench/ is not put on sys.path: its
    `train.py`, `export.py`, ... would shadow other imports)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_support = _bench_module("gpu_support")
ParityError, judge, known_peak, require = (gpu_support.ParityError, gpu_support.judge,
                                           gpu_support.known_peak, gpu_support.require)


def tiny_parameter_count(n_layer=1, n_embd=64, n_positions=128, vocab=512) -> int:
    """GPT-2's parameters counted by hand: embeddings, then per block two
    LayerNorms, attention (qkv, projection) and MLP (4x up, down), then ln_f."""
    block = (2 * 2 * n_embd + n_embd * 3 * n_embd + 3 * n_embd + n_embd * n_embd + n_embd
             + n_embd * 4 * n_embd + 4 * n_embd + 4 * n_embd * n_embd + n_embd)
    return vocab * n_embd + n_positions * n_embd + n_layer * block + 2 * n_embd


@pytest.mark.slow
def test_quick_cpu_run_has_every_row_and_passes_parity(tmp_path):
    # fp32 generate runs in the parity check; the rows run bf16, the mixed
    # precision path (batch 1 only: each batch compiles its own programs).
    output = tmp_path / "gpu.json"
    run = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--preset=tiny", "--quick", "--precisions=bf16",
         "--decode_batches=1", "--peak_tflops=1", f"--checkpoint_dir={tmp_path / 'tiny'}",
         f"--output={output}"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(output.read_text())
    assert report["parity"]["passed"], report["parity"]
    assert report["parity"]["greedy_tokens_equal"] == report["parity"]["greedy_tokens"] == 8
    rows = {(r["task"], r["precision"]): r for r in report["rows"]}
    assert sorted(rows) == [("decode", "bf16"), ("eval", "bf16"), ("train", "bf16")]
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["tokens_per_sec"] > 0
    decode = rows[("decode", "bf16")]
    assert decode["device"] == "CPU" and decode["batch"] == 1
    assert 0 < decode["max_abs_logits_diff_vs_cpu_fp32"] < 0.05  # bf16 rounding, no more
    train = rows[("train", "bf16")]
    assert train["device"] == "MirroredStrategy, 2 x CPU"
    flops = 6 * tiny_parameter_count() + 12 * 1 * 64 * 128
    assert train["flops_per_token"] == flops
    assert train["mfu"] == pytest.approx(train["tokens_per_sec"] * flops / (2 * 1e12))
    assert "NO GPU visible" in run.stdout and "| train | bf16 |" in run.stdout


def test_parity_fails_loudly_past_the_tolerance_and_forgives_a_near_tie():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 50))
    steps = rng.normal(size=(3, 50))
    tokens = steps.argmax(-1)
    assert judge(logits, logits + 1e-6, tokens, tokens, steps, 1e-3)["passed"]

    off = judge(logits, logits + 0.5, tokens, tokens, steps, 1e-3)
    with pytest.raises(ParityError, match=r"PARITY FAILED.*logit difference\| 0\.5 exceeds"):
        require(off)

    wrong = tokens.copy()
    wrong[1] = np.argsort(steps[1])[0]  # the CPU's least likely token: no tie
    with pytest.raises(ParityError, match="greedy token 1 differs"):
        require(judge(logits, logits, tokens, wrong, steps, 1e-3))

    tied = steps.copy()
    runner_up = np.argsort(tied[1])[-2]
    tied[1, runner_up] = tied[1, tokens[1]] - 1e-4  # within the logits tolerance
    verdict = judge(logits, logits, tokens, np.where(np.arange(3) == 1, runner_up, tokens),
                    tied, 1e-3)
    assert verdict["passed"] and "near tie" in verdict["note"]


def test_peak_flops_table_tells_similar_names_apart():
    assert known_peak("NVIDIA A100-SXM4-80GB", "bf16", tf32=True)[0] == 312
    assert known_peak("NVIDIA A100-SXM4-80GB", "fp32", tf32=True)[0] == 156  # TF32 matmuls
    assert known_peak("NVIDIA A100-SXM4-80GB", "fp32", tf32=False)[0] == 19.5
    assert known_peak("NVIDIA L4", "bf16", tf32=True)[0] == 121
    assert known_peak("NVIDIA L40S", "bf16", tf32=True)[0] == 362
    assert known_peak("NVIDIA H100 PCIe", "bf16", tf32=True)[0] == 756
    assert known_peak("NVIDIA H100 80GB HBM3", "bf16", tf32=True)[0] == 989
    peak, source = known_peak("Tesla T4", "bf16", tf32=False)  # no bf16 on Turing
    assert peak is None and source.startswith("unknown")
    assert known_peak("NVIDIA A10G", "bf16", tf32=True)[0] is None  # not the A10's peaks
