"""What a run shows while it trains: a Keras progress bar (loss, tokens/s,
learning rate), TensorBoard scalars, and the history returned to Python."""

from __future__ import annotations

import math
import os

import keras


class RunReport:
    """Progress bar + TensorBoard + history, for the chief task.

    Args:
      log_dir: TensorBoard directory (`output_dir/logs`), or None.
      total_steps: the run's last step.
      start_step: where this (possibly resumed) run starts.
      verbose: show the progress bar.
    """

    def __init__(self, log_dir: str | None, total_steps: int, start_step: int, verbose: bool = True):
        import tensorflow as tf

        self.history: dict[str, list] = {key: [] for key in (
            "step", "loss", "learning_rate", "grad_norm", "tokens_per_sec",
            "eval_step", "eval_loss", "eval_perplexity")}
        self._writer = (tf.summary.create_file_writer(os.fspath(log_dir)) if log_dir
                        else tf.summary.create_noop_writer())
        self._bar = keras.utils.Progbar(
            total_steps, verbose=1 if verbose else 0, unit_name="step",
            stateful_metrics=["loss", "lr", "tok/s", "grad_norm", "eval_loss", "ppl"])
        if start_step:
            self._bar.update(start_step)
        # An evaluation's values wait for the next progress line: drawn in a
        # second update of the same step, they could be skipped (Progbar
        # draws at most every 0.05 s) and the line show the previous eval.
        self._eval_values: list[tuple[str, float]] = []

    def train_step(self, step: int, loss: float, lr: float, grad_norm: float,
                   tokens_per_sec: float | None, show: bool = True) -> None:
        import tensorflow as tf

        for key, value in (("step", step), ("loss", loss), ("learning_rate", lr),
                           ("grad_norm", grad_norm), ("tokens_per_sec", tokens_per_sec)):
            self.history[key].append(value)
        with self._writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", lr)
            tf.summary.scalar("grad_norm", grad_norm)
            if tokens_per_sec is not None:
                tf.summary.scalar("tokens_per_sec", tokens_per_sec)
        if show:
            values = [("loss", loss), ("lr", lr), ("grad_norm", grad_norm)]
            if tokens_per_sec is not None:
                values.append(("tok/s", tokens_per_sec))
            self._bar.update(step, values=values + self._eval_values)
            self._eval_values = []

    def eval_result(self, step: int, loss: float) -> float:
        """Records an evaluation; the progress bar shows it with the next
        `train_step(..., show=True)` (call that one after this)."""
        import tensorflow as tf

        perplexity = math.exp(loss) if loss < 700 else math.inf
        self.history["eval_step"].append(step)
        self.history["eval_loss"].append(loss)
        self.history["eval_perplexity"].append(perplexity)
        with self._writer.as_default(step=step):
            tf.summary.scalar("eval_loss", loss)
            tf.summary.scalar("eval_perplexity", perplexity)
        self._eval_values = [("eval_loss", loss), ("ppl", perplexity)]
        return perplexity

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
