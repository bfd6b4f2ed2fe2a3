"""`--mode=finetune`: fine-tune a checkpoint on text files; rerun the same
command to resume after an interruption."""

from __future__ import annotations

import sys

from absl import flags

from tfgpt2.cli import CliError, Mode
from tfgpt2.training.settings import LR_SCHEDULES, MIXED_PRECISION, FinetuneConfig

FLAGS = flags.FLAGS
_DEFAULTS = {field: getattr(FinetuneConfig, field, None) for field in FinetuneConfig.__annotations__}

flags.DEFINE_string("train_files", None, "Glob of UTF-8 text files to train on (comma-separated "
                    "globs allowed). Empty or whitespace-only files are skipped with a warning; "
                    "a file that is not UTF-8 is an error.")
flags.DEFINE_string("eval_files", None, "Glob of held-out text files: eval loss and perplexity "
                    "every --eval_every steps and at the end.")
flags.DEFINE_integer("global_batch_size", _DEFAULTS["global_batch_size"],
                     "Sequences per optimizer step, over all replicas and accumulation steps.")
flags.DEFINE_integer("seq_len", _DEFAULTS["seq_len"], "Tokens per sequence (<= the model's "
                     "n_positions, 1024 for GPT-2).")
flags.DEFINE_integer("train_steps", _DEFAULTS["train_steps"], "Optimizer steps in total.")
flags.DEFINE_float("learning_rate", _DEFAULTS["learning_rate"], "Peak learning rate (AdamW).")
flags.DEFINE_integer("warmup_steps", _DEFAULTS["warmup_steps"], "Linear warmup steps.")
flags.DEFINE_enum("lr_schedule", _DEFAULTS["lr_schedule"], list(LR_SCHEDULES),
                  "Learning rate after warmup: cosine or linear decay to --min_lr_ratio of the "
                  "peak at the last step, or constant.")
flags.DEFINE_float("min_lr_ratio", _DEFAULTS["min_lr_ratio"], "Final learning rate / peak.")
flags.DEFINE_float("weight_decay", _DEFAULTS["weight_decay"],
                   "AdamW decoupled weight decay on the weight matrices (not on biases, "
                   "LayerNorm or the position table).")
flags.DEFINE_float("clip_norm", _DEFAULTS["clip_norm"], "Clip the global gradient norm; 0 disables.")
flags.DEFINE_integer("grad_accum_steps", _DEFAULTS["grad_accum_steps"],
                     "Micro-batches accumulated per replica inside each step.")
flags.DEFINE_enum("mixed_precision", _DEFAULTS["mixed_precision"], list(MIXED_PRECISION),
                  "Compute dtype: none (float32), bf16, or fp16 with dynamic loss scaling; "
                  "weights stay float32.")
flags.DEFINE_integer("eval_every", _DEFAULTS["eval_every"], "Steps between evaluations "
                     "(0: at the end only).")
flags.DEFINE_integer("checkpoint_every", _DEFAULTS["checkpoint_every"],
                     "Steps between checkpoints (0: at the end only).")
flags.DEFINE_integer("keep_checkpoints", _DEFAULTS["keep_checkpoints"],
                     "How many of the latest checkpoints to keep.")
flags.DEFINE_float("dropout", None, "Dropout rate for residual, embedding and attention "
                   "dropout (default: the checkpoint's, 0.1 for the released GPT-2).")
flags.DEFINE_string("document_separator", _DEFAULTS["document_separator"],
                    "How files split into documents, each followed by <|endoftext|>: 'file' (one "
                    "document per file), 'blank_line', or a literal string (\\n escapes allowed).")
flags.DEFINE_string("cache_dir", None, "Where the tokenized corpus is cached "
                    "(default: OUTPUT_DIR/tokens).")


def config_from_flags() -> FinetuneConfig:
    for name in ("train_files", "output_dir"):
        if not FLAGS[name].value:
            raise CliError(f"--{name} is required for --mode=finetune "
                           f"(e.g. {MODE.example}).")
    return FinetuneConfig(
        train_files=FLAGS.train_files, eval_files=FLAGS.eval_files, output_dir=FLAGS.output_dir,
        model=FLAGS.model, strategy=FLAGS.strategy, global_batch_size=FLAGS.global_batch_size,
        seq_len=FLAGS.seq_len, train_steps=FLAGS.train_steps, learning_rate=FLAGS.learning_rate,
        warmup_steps=FLAGS.warmup_steps, lr_schedule=FLAGS.lr_schedule,
        min_lr_ratio=FLAGS.min_lr_ratio, weight_decay=FLAGS.weight_decay,
        clip_norm=FLAGS.clip_norm, grad_accum_steps=FLAGS.grad_accum_steps,
        mixed_precision=FLAGS.mixed_precision, eval_every=FLAGS.eval_every,
        checkpoint_every=FLAGS.checkpoint_every, keep_checkpoints=FLAGS.keep_checkpoints,
        seed=0 if FLAGS.seed is None else FLAGS.seed, dropout=FLAGS.dropout,
        document_separator=FLAGS.document_separator, cache_dir=FLAGS.cache_dir)


def run() -> None:
    config = config_from_flags()
    from tfgpt2.training import TrainingDivergedError, TrainingInterrupted, finetune

    try:
        finetune(config)
    except TrainingDivergedError as err:
        raise CliError(str(err)) from None
    except TrainingInterrupted as stop:  # one line, and the shell's exit status (130, 143)
        print(stop.message, file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)


MODE = Mode(
    name="finetune",
    summary="Fine-tune on text files under tf.distribute; rerun the command to resume.",
    example="python main.py --mode=finetune --train_files='data/*.txt' --model=gpt2-medium "
            "--output_dir=runs/medium",
    flags_module=__name__,
    run=run,
)
