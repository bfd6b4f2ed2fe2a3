"""bfloat16 inference: `GPT2LMHeadModel.from_pretrained(name, dtype="bfloat16")`.

With the `"bfloat16"` Keras dtype policy every weight is stored in bf16
(half of fp32's memory) and the matmuls, LayerNorm inputs and activations
compute in bf16; attention's softmax, the logits and everything the
samplers do stay float32 (`layers.py`). `"mixed_bfloat16"` (fp32 weights,
bf16 compute: the training policy) decodes the same way, but casts every
weight to bf16 on each call.

Which runtime serves a bf16 model is decided here. On a CPU, XLA's bf16
dot is no faster than its fp32 one (much slower for mat-vecs), while
TensorFlow's plain-graph matmul calls oneDNN, whose bf16 GEMM uses the
CPU's AVX512-BF16 or AMX instructions. So on a CPU a bf16 model's decode
loops run as plain TF graphs (the prefill always does); on a GPU they stay
XLA programs. `bench/decode.py --peers=tfgpt2,tfgpt2_bf16` measures both
paths and the GEMM rates that bound them (docs/precision.md).
"""

from __future__ import annotations

import functools
import logging

import tensorflow as tf

# The CPU flags (/proc/cpuinfo) of instructions that compute bf16 products.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def computes_in_bfloat16(model) -> bool:
    """True when the model's blocks compute in bf16 (`"bfloat16"` or
    `"mixed_bfloat16"` policy)."""
    return model.embeddings.compute_dtype == "bfloat16"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_gpu() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def decodes_in_xla(model) -> bool:
    """Whether the model's decode loops should be XLA programs: yes, except
    for a bf16 model on a CPU (see the module docstring)."""
    return not computes_in_bfloat16(model) or has_gpu()


def warn_if_emulated(model) -> None:
    """Log a warning when a bf16 model runs on a CPU without bf16
    instructions: oneDNN then emulates bf16 products, slower than fp32."""
    if decodes_in_xla(model) or set(BF16_CPU_FLAGS) & cpu_flags():
        return
    logging.getLogger("tfgpt2").warning(
        "This model computes in bfloat16, but this CPU has no bf16 instructions (%s): "
        "its bf16 matmuls are emulated and run slower than float32. Load the model with "
        "dtype=\"float32\" (the default) for speed; bfloat16 still halves its memory.",
        " or ".join(BF16_CPU_FLAGS))
