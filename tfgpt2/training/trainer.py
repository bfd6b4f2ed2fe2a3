"""`finetune`: one fine-tuning run, from text files to a saved model.

The same function runs `python main.py --mode=finetune` and a notebook cell.
It resumes by itself: when `output_dir` holds checkpoints of the same run,
training continues from the latest with the model, the optimizer, the step,
the data position and the dropout streams of that step, and ends with the
weights of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

from tfgpt2.training.console import say
from tfgpt2.training.settings import FinetuneConfig


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; nothing was saved after it."""


@dataclasses.dataclass
class FinetuneResult:
    """What a run returns.

    Attributes:
      model: the fine-tuned `GPT2LMHeadModel`.
      history: per-step lists, as Keras' `History.history`: `step`, `loss`,
        `learning_rate`, `grad_norm`, `tokens_per_sec`, and `eval_step`,
        `eval_loss`, `eval_perplexity` at each evaluation (this process's
        steps only, when resumed).
      output_dir: where the model (Hugging Face layout), the checkpoints and
        the TensorBoard logs are.
      step: the last step trained.
    """

    model: object
    history: dict
    output_dir: str
    step: int


def finetune(config: FinetuneConfig | None = None, *, callbacks=None, verbose: bool = True,
             strategy=None, **settings) -> FinetuneResult:
    """Fine-tune GPT-2 on text files under a `tf.distribute` strategy.

    Args:
      config: a `FinetuneConfig`, or None to build one from `**settings`
        (the same names as the `--mode=finetune` flags).
      callbacks: optional Keras callbacks; they get `on_train_batch_end`
        with `{"loss", "learning_rate", "grad_norm"}` and
        `on_test_end` with `{"eval_loss", "eval_perplexity"}`.
      verbose: show the progress bar.
      strategy: a `tf.distribute.Strategy` object to use instead of
        `config.strategy` (a strategy name here is taken as the setting).
      **settings: `FinetuneConfig` fields.

    Returns:
      A `FinetuneResult` (model, loss history, output directory, step).

    Example:
    >>> from tfgpt2.training import finetune
    >>> result = finetune(train_files="my_texts/*.txt", output_dir="runs/medium",
    ...                   model="gpt2-medium", global_batch_size=8, seq_len=512,
    ...                   train_steps=500, learning_rate=5e-5, mixed_precision="bf16")
    >>> result.history["loss"][-1], result.history["eval_perplexity"]
    >>> result.model.generate("Once upon a time", max_new_tokens=40)
    """
    if isinstance(strategy, str):  # the setting's name, not a strategy object
        settings["strategy"], strategy = strategy, None
    if config is None:
        config = FinetuneConfig(**settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    return _Run(config, callbacks, verbose, strategy).run()


class _Run:
    def __init__(self, config: FinetuneConfig, callbacks, verbose: bool, strategy):
        from tfgpt2.distribute.strategy import is_chief, make_strategy

        self.config, self.verbose = config, verbose
        # MultiWorkerMirroredStrategy must exist before other TF work.
        self.strategy = strategy or make_strategy(config.strategy)
        self.chief = is_chief(self.strategy)
        self.output_dir = Path(os.path.expanduser(config.output_dir))
        self.callbacks = callbacks

    # --- preparation (every check before any long work) -------------------------
    def _prepare_output_dir(self):
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise NotADirectoryError(f"output_dir {self.output_dir} is a file; give a directory.")
        if not self.chief:
            return
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            probe = self.output_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as err:
            raise PermissionError(f"Cannot write to output_dir {self.output_dir} ({err.strerror}); "
                                  "choose a writable directory.") from None

    def _model_config(self):
        from tfgpt2.config import GPT2Config

        gpt2_config = GPT2Config.from_pretrained(self.config.model)
        if self.config.dropout is not None:
            rate = self.config.dropout
            gpt2_config = dataclasses.replace(gpt2_config, resid_pdrop=rate, embd_pdrop=rate,
                                              attn_pdrop=rate)
        if self.config.seq_len > gpt2_config.n_positions:
            raise ValueError(
                f"seq_len={self.config.seq_len} exceeds the model's context "
                f"(n_positions={gpt2_config.n_positions}); use seq_len={gpt2_config.n_positions} "
                "or less.")
        return gpt2_config

    def _text_files(self):
        """The train and eval files, checked before the output directory is
        made: a glob that matches nothing leaves no empty directory behind."""
        from tfgpt2.training import data

        config = self.config
        self.train_paths = data.check_text_files(
            data.find_files(config.train_files, "train_files"), "train_files")
        self.eval_paths = None
        if config.eval_files:
            self.eval_paths = data.check_text_files(
                data.find_files(config.eval_files, "eval_files"), "eval_files")

    def _corpora(self, vocab_limit: int):
        from tfgpt2.tokenizer import GPT2Tokenizer
        from tfgpt2.training import data
        from tfgpt2.training.console import warn

        config = self.config
        train_paths, eval_paths = self.train_paths, self.eval_paths
        tokenizer = GPT2Tokenizer.from_pretrained(config.model).graph(split_special_tokens=False)
        cache_dir = config.cache_dir or os.fspath(self.output_dir / "tokens")
        separator = config.separator_text or config.document_separator

        def packed(paths, what):
            tokens = data.token_stream(paths, tokenizer, separator, cache_dir, what)
            if tokens.size and int(tokens.max()) >= vocab_limit:
                raise ValueError(
                    f"The tokenizer gives ids up to {int(tokens.max())} but the model's "
                    f"vocab_size is {vocab_limit}: the model and its vocabulary files disagree.")
            return data.PackedCorpus(tokens, config.seq_len, tokenizer.eos_token_id)

        self.train_corpus = packed(train_paths, "train")
        self.eval_corpus = packed(eval_paths, "eval") if eval_paths else None
        targets = self.train_corpus.num_targets
        if targets < config.seq_len:
            warn(f"the training text is {targets + 1} tokens, shorter than one block of "
                 f"seq_len={config.seq_len}: every step trains on the same {targets} target(s), "
                 "the rest padding. Add text, or lower --seq_len (e.g. "
                 f"--seq_len={max(1, targets)}).")

    def _manifest(self, gpt2_config) -> dict:
        model_config = gpt2_config.to_dict()
        for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            model_config.pop(key)  # dropout is a training setting, compared there
        return {"model_config": model_config, "settings": self.config.trajectory(),
                "train_data": {"num_tokens": int(self.train_corpus.tokens.size),
                               "num_blocks": self.train_corpus.num_blocks,
                               "num_files": len(self.train_paths)},
                "num_replicas": self.strategy.num_replicas_in_sync,
                "model": str(self.config.model)}

    # --- the run ---------------------------------------------------------------
    def run(self) -> FinetuneResult:
        self._build()
        self._loop()
        return self._finish()

    def _build(self):
        """Every check, then the data, the checkpoint store, the model (restored
        when resuming), the steps and the report."""
        import keras
        import tensorflow as tf

        from tfgpt2.modeling import GPT2LMHeadModel
        from tfgpt2.training import data
        from tfgpt2.training.checkpointing import CheckpointStore, check_compatible
        from tfgpt2.training.optimization import make_optimizer
        from tfgpt2.training.reporting import RunReport
        from tfgpt2.training.step import Steps
        from tfgpt2.distribute.strategy import replicas_on_cpu

        config, strategy = self.config, self.strategy
        replicas = strategy.num_replicas_in_sync
        self.layout = data.BatchLayout(config.global_batch_size, replicas, config.grad_accum_steps)
        self.eval_layout = None
        if config.eval_files:
            self.eval_layout = data.BatchLayout(
                config.eval_batch_size or config.global_batch_size // config.grad_accum_steps,
                replicas, what="eval_batch_size")
        self._text_files()
        gpt2_config = self._model_config()
        self._prepare_output_dir()
        self._corpora(gpt2_config.vocab_size)
        self.store = CheckpointStore(self.output_dir / "checkpoints", config.keep_checkpoints,
                                     writer=self.chief)
        self.store.clear_leftovers()
        self.manifest = self._manifest(gpt2_config)
        latest = self.store.latest()
        if latest is not None:
            check_compatible(latest[1], self.store.manifest(latest[1]), self.manifest)

        with strategy.scope():
            self.model = GPT2LMHeadModel.from_pretrained(
                config.model, config=gpt2_config, dtype=config.compute_dtype_policy)
            self.optimizer, self.schedule = make_optimizer(config, self.model)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.start, self.last_saved = 0, None
        if latest is not None:
            self.store.restore(self.checkpoint, latest[1])
            self.start = self.last_saved = latest[0]
            if self.chief:
                say(f"Resuming at step {self.start} of {config.train_steps} from {latest[1]}.")

        jit_compile = config.resolved_jit_compile(on_cpu=replicas_on_cpu(strategy))
        self.steps = Steps(self.model, self.optimizer, strategy,
                           grad_accum_steps=config.grad_accum_steps, clip_norm=config.clip_norm,
                           seed=config.seed, jit_compile=jit_compile)
        self.report = RunReport(self.output_dir / "logs" if self.chief else None,
                                config.train_steps, self.start, verbose=self.verbose and self.chief)
        self.callback_list = (keras.callbacks.CallbackList(self.callbacks, model=self.model)
                              if self.callbacks else None)

    def _loop(self):
        """Train from `start` to `train_steps`, evaluating and saving on the
        way; sets `step` and `loss` (the last ones)."""
        import tensorflow as tf

        from tfgpt2.training import data, interrupts

        config, callbacks = self.config, self.callback_list
        train_data = self.strategy.distribute_datasets_from_function(
            lambda ctx: data.train_dataset(self.train_corpus, self.layout, config.seed, self.start,
                                           config.train_steps, ctx))
        if callbacks:
            callbacks.on_train_begin()
        tokens_per_step = config.global_batch_size * config.seq_len
        self.loss, self.step = math.nan, self.start
        multi_worker = isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)
        with interrupts.StopRequests(enabled=not multi_worker) as stop:
            self._steps(train_data, tokens_per_step, stop)

    def _steps(self, train_data, tokens_per_step, stop):
        """The loop's body; `stop` (`StopRequests`) is checked after each step."""
        import tensorflow as tf

        config, callbacks = self.config, self.callback_list
        tick = time.perf_counter()
        for step_index, batch in zip(range(self.start, config.train_steps), train_data):
            loss_t, norm_t = self.steps.train_step(batch, tf.constant(step_index, tf.int64))
            loss, grad_norm, step = float(loss_t), float(norm_t), step_index + 1
            self.loss, self.step = loss, step
            if not math.isfinite(loss):
                self._diverged()
            now = time.perf_counter()
            speed = tokens_per_step / (now - tick)
            tick = now
            iteration = int(self.optimizer.iterations.value.numpy()) - 1
            lr = float(self.schedule(iteration))  # this step's rate
            last = step == config.train_steps
            evaluated = self.eval_corpus is not None and (
                last or bool(config.eval_every and step % config.eval_every == 0))
            # Evaluate before the step's progress line is drawn, so that the
            # line shows this evaluation, not the one before.
            eval_loss = self._evaluate() if evaluated else None
            perplexity = self.report.eval_result(step, eval_loss) if evaluated else None
            if self.chief:
                show = step % config.log_every == 0 or last or evaluated
                self.report.train_step(step, loss, lr, grad_norm, speed, show=show)
            if callbacks:
                callbacks.on_train_batch_end(step - 1, {"loss": loss, "learning_rate": lr,
                                                        "grad_norm": grad_norm})
                if evaluated:
                    callbacks.on_test_end({"eval_loss": eval_loss, "eval_perplexity": perplexity})
            if evaluated:
                tick = time.perf_counter()
            if last or (config.checkpoint_every and step % config.checkpoint_every == 0):
                self.store.save(step, self.checkpoint, self.manifest)
                self.last_saved = step
                tick = time.perf_counter()
            if stop.signum is not None and not last:
                self._interrupted(stop.signum)

    def _interrupted(self, signum):
        """Stop at this step: a checkpoint here, then `TrainingInterrupted`."""
        from tfgpt2.training.interrupts import TrainingInterrupted

        path = self.store.latest()[1] if self.last_saved == self.step else self.store.save(
            self.step, self.checkpoint, self.manifest)
        self.last_saved = self.step
        self.report.close()
        if self.callback_list:
            self.callback_list.on_train_end({"loss": self.loss})
        raise TrainingInterrupted(self.step, path, signum)

    def _diverged(self):
        self.report.close()
        kept = (f"the last good checkpoint (step {self.last_saved}) in "
                f"{self.store.directory} is intact" if self.last_saved is not None
                else "no checkpoint was written")
        raise TrainingDivergedError(
            f"The loss became {self.loss} at step {self.step}; training stopped and {kept}. "
            "Lower --learning_rate (or --warmup_steps longer, --clip_norm=1), or with "
            "--mixed_precision=fp16 try bf16, and start again in a new --output_dir.")

    def _finish(self) -> FinetuneResult:
        """Close the report, end the callbacks, save the model (the chief)."""
        self.report.close()
        if self.callback_list:
            self.callback_list.on_train_end({"loss": self.loss})
        if self.chief:
            self.model.save_pretrained(self.output_dir)
            if self.verbose:
                say(f"Fine-tuned model (step {self.step}) written to {self.output_dir} (Hugging "
                    f"Face layout; GPT2LMHeadModel.from_pretrained({str(self.output_dir)!r}) "
                    "loads it).")
        return FinetuneResult(model=self.model, history=self.report.history,
                              output_dir=os.fspath(self.output_dir), step=self.step)

    def _evaluate(self) -> float:
        from tfgpt2.training import data

        batches = self.strategy.distribute_datasets_from_function(
            lambda ctx: data.eval_dataset(self.eval_corpus, self.eval_layout, ctx)[0])
        total_nll, total_count = 0.0, 0.0
        for batch in batches:
            nll, count = self.steps.eval_step(batch)
            total_nll += float(nll)
            total_count += float(count)
        return total_nll / max(total_count, 1.0)
