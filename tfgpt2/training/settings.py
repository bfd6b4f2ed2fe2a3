"""`FinetuneConfig`: every setting of a fine-tuning run, its defaults and its
checks. The command line's flags and the Python entry point share it.

Defaults suit GPT-2 Medium fine-tuned on a GPU: AdamW at 5e-5 (the usual
GPT-2 fine-tuning rate), a short warmup then cosine decay to a tenth of the
peak (nanoGPT), weight decay 0.1 on matrices only, gradient clipping at 1.0.
"""

from __future__ import annotations

import dataclasses

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
LR_SCHEDULES = ("cosine", "linear", "constant")
MIXED_PRECISION = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
SEPARATOR_WHOLE_FILE = "file"
SEPARATOR_BLANK_LINE = "blank_line"

# Settings that shape the trajectory of the weights: a checkpoint written
# with other values cannot be continued exactly, so resuming refuses it.
TRAJECTORY_FIELDS = (
    "global_batch_size", "seq_len", "learning_rate", "warmup_steps", "lr_schedule",
    "min_lr_ratio", "weight_decay", "clip_norm", "grad_accum_steps", "mixed_precision",
    "seed", "dropout", "document_separator", "adam_beta1", "adam_beta2", "adam_epsilon",
)


@dataclasses.dataclass
class FinetuneConfig:
    """The settings of one fine-tuning run (the `--mode=finetune` flags).

    Args:
      train_files: glob (or list of globs) of UTF-8 text files to train on.
      output_dir: where checkpoints, TensorBoard logs and the final model go.
      model: hub name or checkpoint directory to start from.
      eval_files: optional glob(s) of held-out text for eval loss/perplexity.
      strategy: `auto` (MultiWorkerMirrored when TF_CONFIG names several
        workers, Mirrored with several GPUs, else one device), `one_device`,
        `mirrored`, `multi_worker` or `tpu`.
      global_batch_size: sequences per optimizer step, over all replicas and
        accumulation micro-batches.
      seq_len: tokens per training sequence (at most the model's n_positions).
      train_steps: total optimizer steps (a resumed run continues to it).
      learning_rate: peak learning rate.
      warmup_steps: linear warmup from 0 to the peak.
      lr_schedule: `cosine`, `linear` (to `min_lr_ratio` of the peak at the
        last step) or `constant` (after warmup).
      min_lr_ratio: final learning rate as a fraction of the peak.
      weight_decay: AdamW's decoupled decay, applied to the weight matrices
        (linear kernels and the token embedding / tied head) only.
      clip_norm: clip the global gradient norm to this; 0 disables.
      grad_accum_steps: micro-batches per replica per step, accumulated
        inside the compiled step.
      mixed_precision: `none`, `bf16` or `fp16` (with dynamic loss scaling);
        the weights stay float32 either way.
      eval_every: evaluate every this many steps (0: only at the end).
      eval_batch_size: sequences per eval batch (default: the global batch).
      checkpoint_every: checkpoint every this many steps (0: only at the end).
      keep_checkpoints: how many of the latest checkpoints to keep.
      seed: seeds the data order, the dropout masks and a random init.
      dropout: overrides the model's resid/embd/attn dropout (None keeps it).
      document_separator: `file` (each file is one document), `blank_line`
        (documents are separated by one or more blank lines) or a literal
        string (`\\n` and `\\t` escapes understood) that separates documents.
      cache_dir: where the tokenized corpus is cached (default:
        `output_dir/tokens`).
      adam_beta1, adam_beta2, adam_epsilon: AdamW's moments (nanoGPT/GPT-3
        values).
      log_every: steps between TensorBoard and progress updates.
      jit_compile: XLA-compile each replica's whole step (True), or run
        its gradient as a plain TF graph with the update still one XLA
        program (False). None picks XLA on GPUs and TPUs and the plain-graph
        gradient on CPUs, whose oneDNN matmuls are faster there (see
        `resolved_jit_compile`).
    """

    train_files: str | list[str] = ""
    output_dir: str = ""
    model: str = "gpt2-medium"
    eval_files: str | list[str] | None = None
    strategy: str = "auto"
    global_batch_size: int = 8
    seq_len: int = 1024
    train_steps: int = 1000
    learning_rate: float = 5e-5
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    grad_accum_steps: int = 1
    mixed_precision: str = "none"
    eval_every: int = 200
    eval_batch_size: int | None = None
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    seed: int = 0
    dropout: float | None = None
    document_separator: str = SEPARATOR_WHOLE_FILE
    cache_dir: str | None = None
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    log_every: int = 1
    jit_compile: bool | None = None

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the first bad setting and what to do."""
        if not self.train_files:
            raise ValueError("train_files is required: a glob of UTF-8 text files, "
                             "e.g. train_files='data/*.txt'.")
        if not self.output_dir:
            raise ValueError("output_dir is required: the directory for checkpoints, logs "
                             "and the fine-tuned model.")
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("mixed_precision", self.mixed_precision, tuple(MIXED_PRECISION))
        for name in ("global_batch_size", "seq_len", "train_steps", "grad_accum_steps",
                     "keep_checkpoints", "log_every"):
            _positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}.")
        if self.weight_decay < 0 or self.clip_norm < 0:
            raise ValueError("weight_decay and clip_norm must be >= 0 (0 disables them).")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        BatchLayout(self.global_batch_size, 1, self.grad_accum_steps)  # the replicas come later
        if not self.document_separator:
            raise ValueError("document_separator is empty; use 'file', 'blank_line' or a string.")

    @property
    def separator_text(self) -> str | None:
        """The literal separator string, or None for the two named rules."""
        if self.document_separator in (SEPARATOR_WHOLE_FILE, SEPARATOR_BLANK_LINE):
            return None
        return self.document_separator.replace("\\n", "\n").replace("\\t", "\t")

    @property
    def compute_dtype_policy(self) -> str | None:
        return MIXED_PRECISION[self.mixed_precision]

    def resolved_jit_compile(self, on_cpu: bool) -> bool:
        """Whether the gradient is XLA-compiled: `jit_compile` if set, else
        yes on GPUs and TPUs and no on CPUs. On a CPU, TF's own oneDNN
        matmuls beat XLA's (fp32 ~10% faster; bf16 ~5x, using AMX /
        AVX512-BF16, which XLA's CPU backend does not), so the gradient runs
        as a plain TF graph and only the update (clipping, AdamW) is an XLA
        program: on the GPT-2 small config at seq 256 a step took 3.84 s
        instead of 4.02 in fp32, and 2.61 s instead of 4.47 in bf16
        (BENCHMARKS.md, 2-core Xeon).
        """
        if self.jit_compile is not None:
            return self.jit_compile
        return not on_cpu

    def trajectory(self) -> dict:
        """The settings a checkpoint must share to be continued exactly."""
        return {name: getattr(self, name) for name in TRAJECTORY_FIELDS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """How a global batch is cut: replicas, then accumulation micro-batches
    inside each replica's rows. The one home of the rule that the batch
    divides evenly; `what` names the setting in its error."""

    global_batch_size: int
    num_replicas: int
    grad_accum_steps: int = 1
    what: str = dataclasses.field(default="global_batch_size", compare=False)

    def __post_init__(self):
        per_step = self.num_replicas * self.grad_accum_steps
        if self.global_batch_size % per_step:
            parts = []
            if self.num_replicas > 1 or self.grad_accum_steps == 1:
                parts.append(f"{self.num_replicas} replica(s)")
            if self.grad_accum_steps > 1:
                parts.append(f"grad_accum_steps={self.grad_accum_steps} equal micro-batches "
                             "(each step accumulates them)")
            raise ValueError(f"{self.what}={self.global_batch_size} does not divide across "
                             f"{' x '.join(parts)}; use a multiple of {per_step}.")

    @property
    def per_replica(self) -> int:
        return self.global_batch_size // self.num_replicas


def _choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}.")


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
