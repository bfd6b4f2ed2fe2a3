"""The optimizer: AdamW with weight decay on matrices only, a warmup +
cosine/linear/constant learning-rate schedule, and fp16 loss scaling.

Weight decay goes to the linear kernels and the token embedding (which is
also the tied LM head, a matrix like the others; nanoGPT decays every 2-D
tensor). LayerNorm gains and biases, every bias, and the position table (an
additive per-position offset, a bias in all but name; minGPT spares it) are
not decayed.
"""

from __future__ import annotations

import math

import keras

from tfgpt2.training.settings import FinetuneConfig


@keras.saving.register_keras_serializable(package="tfgpt2")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak` over `warmup_steps`, then `cosine`, `linear`
    or `constant` down to `peak * min_ratio` at `total_steps`.

    Step s (0-based, the optimizer's iteration count) of the warmup uses
    `peak * (s + 1) / warmup_steps`, so the first step already learns.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, kind: str = "cosine",
                 min_ratio: float = 0.1):
        self.peak, self.warmup_steps, self.total_steps = float(peak), int(warmup_steps), int(total_steps)
        self.kind, self.min_ratio = kind, float(min_ratio)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        peak, warmup = self.peak, float(self.warmup_steps)
        floor = peak * self.min_ratio
        warm = peak * (step + 1.0) / max(warmup, 1.0)
        decay_steps = max(float(self.total_steps - self.warmup_steps), 1.0)
        progress = keras.ops.clip((step - warmup) / decay_steps, 0.0, 1.0)
        if self.kind == "cosine":
            after = floor + 0.5 * (peak - floor) * (1.0 + keras.ops.cos(math.pi * progress))
        elif self.kind == "linear":
            after = peak - (peak - floor) * progress
        else:
            after = keras.ops.convert_to_tensor(peak)
        return keras.ops.where(step < warmup, warm, after)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "kind": self.kind, "min_ratio": self.min_ratio}


def decayed(variable) -> bool:
    """Whether AdamW decays this weight: the matrices, except the positions."""
    return len(variable.shape) >= 2 and not variable.path.endswith("wpe")


def make_optimizer(config: FinetuneConfig, model):
    """AdamW (wrapped in a LossScaleOptimizer for fp16), built on the model's
    trainable weights, and its learning-rate schedule. Gradient clipping is
    done by the train step on the all-reduced gradient (Keras would clip
    each replica's part).

    Returns:
      `(optimizer, schedule)`.
    """
    schedule = WarmupDecay(config.learning_rate, config.warmup_steps, config.train_steps,
                           config.lr_schedule, config.min_lr_ratio)
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=config.weight_decay or None,
        beta_1=config.adam_beta1, beta_2=config.adam_beta2, epsilon=config.adam_epsilon)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if not decayed(v)])
    if config.mixed_precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer, schedule
