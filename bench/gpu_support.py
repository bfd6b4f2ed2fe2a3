"""bench/gpu.py's judgements, pure Python and numpy so that they are tested
without a model or a GPU: the parity verdict, and the peak FLOP/s of known
GPUs that MFU divides by.

Parity: does the accelerator compute what the CPU computes on the same
weights? Two checks, fp32 on both sides:
- logits of one forward pass over the prompt: the largest absolute
  difference, relative to the largest reference logit (real GPT-2 logits
  reach ~100s, a random model's ~1), must be at most `rtol`;
- greedy tokens: the accelerator's compiled decode loop against the CPU's
  argmax of full forward passes, token by token. Where they part, the CPU's
  two candidates must have been within the logits tolerance of each other
  (a near tie that rounding may break either way); otherwise it fails.
"""

from __future__ import annotations

import re

import numpy as np

# Peak dense TFLOP/s per device (NVIDIA's data sheets, without sparsity),
# matched against the device name in this order. "tf32" is fp32 matmuls on
# tensor cores, TensorFlow's default for fp32 on Ampere and newer.
PEAK_TFLOPS = [
    (r"H100.*PCIE", {"bf16": 756, "fp16": 756, "tf32": 378, "fp32": 51.2}),
    (r"H100.*NVL", {"bf16": 835, "fp16": 835, "tf32": 418, "fp32": 60}),
    (r"H100|H200", {"bf16": 989, "fp16": 989, "tf32": 495, "fp32": 67}),
    (r"A100", {"bf16": 312, "fp16": 312, "tf32": 156, "fp32": 19.5}),
    (r"L40S", {"bf16": 362, "fp16": 362, "tf32": 183, "fp32": 91.6}),
    (r"\bL4\b", {"bf16": 121, "fp16": 121, "tf32": 60, "fp32": 30.3}),
    (r"\bA10\b", {"bf16": 125, "fp16": 125, "tf32": 62.5, "fp32": 31.2}),
    (r"V100.*PCIE", {"fp16": 112, "fp32": 14}),
    (r"V100", {"fp16": 125, "fp32": 15.7}),
    (r"\bT4\b", {"fp16": 65, "fp32": 8.1}),
]


def known_peak(device_name: str, precision: str, tf32: bool) -> tuple[float | None, str]:
    """(peak dense TFLOP/s of one `device_name` GPU for `precision` -- fp32
    counts as tf32 when `tf32` is on -- or None, and where it came from)."""
    key = "tf32" if precision == "fp32" and tf32 else precision
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name.upper()):
            if key in peaks:
                return float(peaks[key]), f"{device_name} {key} peak (table)"
            return None, f"unknown: no {key} peak for {device_name} (pass --peak_tflops)"
    return None, f"unknown: {device_name} is not in the table (pass --peak_tflops)"


class ParityError(RuntimeError):
    """The accelerator's results differ from the CPU's beyond the tolerance."""


def judge(reference_logits, accelerator_logits, reference_tokens, accelerator_tokens,
          reference_step_logits, rtol: float) -> dict:
    """The parity verdict as a JSON-ready dict (`passed`, `problem`, the numbers).

    Args:
      reference_logits, accelerator_logits: float [T, V], the prompt's logits.
      reference_tokens, accelerator_tokens: int [n], the greedy new tokens.
      reference_step_logits: float [n, V], the CPU's logits that chose each
        of its greedy tokens.
      rtol: the largest allowed max |difference| / max(1, max |reference|).
    """
    reference = np.asarray(reference_logits, np.float64)
    accelerator = np.asarray(accelerator_logits, np.float64)
    if reference.shape != accelerator.shape:
        raise ValueError(f"logits shapes differ: {reference.shape} vs {accelerator.shape}")
    max_diff = float(np.max(np.abs(reference - accelerator)))
    scale = max(1.0, float(np.max(np.abs(reference))))
    allowed = rtol * scale
    ref_tokens = [int(t) for t in reference_tokens]
    acc_tokens = [int(t) for t in accelerator_tokens]
    result = {"max_abs_logits_diff": max_diff, "max_abs_reference_logit": scale,
              "relative_diff": max_diff / scale, "rtol": rtol,
              "greedy_tokens": len(ref_tokens),
              "greedy_tokens_equal": sum(a == b for a, b in zip(ref_tokens, acc_tokens)),
              "first_difference": None, "note": "", "problem": ""}
    problems = []
    if not np.isfinite(max_diff) or max_diff > allowed:
        problems.append(f"max |logit difference| {max_diff:.3g} exceeds the tolerance "
                        f"{allowed:.3g} (rtol {rtol:g} x max |logit| {scale:.3g})")
    if len(acc_tokens) != len(ref_tokens):
        problems.append(f"the accelerator made {len(acc_tokens)} greedy tokens, the CPU "
                        f"{len(ref_tokens)}")
    parted = next((i for i, (a, b) in enumerate(zip(ref_tokens, acc_tokens)) if a != b), None)
    if parted is not None:
        step = np.asarray(reference_step_logits[parted], np.float64)
        margin = float(step[ref_tokens[parted]] - step[acc_tokens[parted]])
        result["first_difference"] = {"index": parted, "cpu_token": ref_tokens[parted],
                                      "accelerator_token": acc_tokens[parted],
                                      "cpu_logit_margin": margin}
        if margin <= 2 * allowed:
            result["note"] = (f"greedy tokens part at new token {parted} on a near tie (the "
                              f"CPU's two candidates {margin:.3g} apart); later tokens differ "
                              "as a consequence")
        else:
            problems.append(
                f"greedy token {parted} differs: CPU {ref_tokens[parted]}, accelerator "
                f"{acc_tokens[parted]}, though the CPU's logit for its token is {margin:.3g} "
                f"higher (more than twice the tolerance {allowed:.3g})")
    result["problem"] = "; ".join(problems)
    result["passed"] = not problems
    return result


def require(result: dict) -> None:
    """Raise `ParityError` saying what differs if the verdict failed."""
    if not result["passed"]:
        raise ParityError(
            f"PARITY FAILED: the accelerator's fp32 results differ from the CPU's on the same "
            f"weights: {result['problem']}. Speed numbers of wrong results mean nothing, so "
            "none were measured. Check the TensorFlow and CUDA install (versions, driver); "
            "if this difference is acceptable to you, rerun with a larger --parity_rtol.")
