"""One command for a machine with GPUs: parity with the CPU, then decode,
eval and training speed, in under 5 minutes with GPT-2 Medium.

    pip install -e .                    # nothing else: no network, no peers
    python bench/gpu.py                 # seeded random GPT-2 Medium, gpu.json
    python bench/gpu.py --checkpoint_dir=medium/    # keep the random weights for reruns
    python bench/gpu.py --model=path/to/checkpoint  # real weights
    python bench/gpu.py --preset=tiny --quick       # a smoke run; what CI runs on a CPU

What it does, in order (progress on stderr, the table on stdout, the JSON
in --output):
1. Parity: the same checkpoint loaded on the CPU and on the accelerator.
   fp32 logits of one forward pass over a short prompt (TF32 matmuls off for
   this check), and greedy tokens of the accelerator's compiled decode loop
   against the CPU's argmax of full forward passes. Past --parity_rtol it
   stops with a message and exit status 1: speed numbers of a wrong result
   mean nothing.
2. Decode: `model.generate` with the model built under each Keras dtype
   policy of --precisions (fp32 `float32`, bf16 `mixed_bfloat16`, fp16
   `mixed_float16`; logits and sampling stay float32), at each batch of
   --decode_batches; an 8-token prompt per row, top-k 50 sampling (the
   command line's default), no stop token, so every row makes all the new
   tokens (--quick: greedy). tok/s counts new tokens over all rows per
   second, the median of the timed calls after a first call (compilation
   included, reported on its own). A precision `generate` cannot run is a
   row saying "unsupported" with the error. Each precision's row also gives
   its logits' largest difference from the CPU's fp32 logits.
3. Eval: `tfgpt2.score_tokens` over a few sliding windows (window =
   context, stride half of it) with each precision's model; scored tokens
   per second.
4. Training: tfgpt2's train step (`tfgpt2.training.step.Steps`, with the
   optimizer, batch rows and XLA choice `finetune` uses) under
   `MirroredStrategy` over every visible GPU (one GPU: the one-device
   strategy, as `finetune` picks there), on a synthetic corpus of random
   token ids; dropout as in the checkpoint, AdamW, gradient clipping; no
   checkpoints are written. tok/s is the global batch's tokens over the
   median step time after the first steps (compilation). MFU = tok/s x
   model FLOPs per token (6N + 12 L H Q T, BENCHMARKS.md) / (replicas x the
   device's peak FLOP/s for the precision): the peak comes from a table of
   known GPUs (gpu_support.PEAK_TFLOPS), or --peak_tflops, else MFU is
   "unknown". Out of memory, a row retries once at half the per-replica
   batch.

On a machine without a GPU everything runs on the CPU and every row says so
(device "CPU"); the CPU is split into two logical devices so that training
still runs MirroredStrategy with two replicas. That run proves the script
works; its numbers say nothing about GPUs. fp32 rows run with TensorFlow's
default TF32 matmuls on GPUs that have them (Ampere and newer); the table's
header says whether TF32 is on.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench_support import random_checkpoint, training_flops_per_token  # noqa: E402
from gpu_support import ParityError, judge, known_peak, require  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "medium", ["medium", "tiny"],
                  "Model size of the random checkpoint and the step counts: GPT-2 Medium, or a "
                  "1-layer model (n_embd 64, context 128, vocabulary 512) for a smoke run.")
flags.DEFINE_string("model", None, "A checkpoint directory or hub name to measure instead of "
                    "random weights (its own sizes; --preset still sets the step counts).")
flags.DEFINE_string("checkpoint_dir", None, "Where the seeded random checkpoint is written, and "
                    "reused if it is already there (default: a temporary directory).")
flags.DEFINE_bool("quick", False, "Fewer tokens, steps and repeats (a smoke run).")
flags.DEFINE_string("output", "gpu.json", "Where the JSON of every row goes.")
flags.DEFINE_list("precisions", ["auto"], "Decode and eval precisions: fp32, bf16, fp16; "
                  "auto = fp32 and bf16 (fp16 on GPUs older than Ampere, which lack bf16).")
flags.DEFINE_list("train_precisions", ["auto"], "Training precisions: fp32, bf16, fp16; auto = "
                  "bf16 (fp16 on GPUs older than Ampere), what GPU users train with.")
flags.DEFINE_list("tasks", ["decode", "eval", "train"], "What to measure after the parity "
                  "check (which always runs).")
flags.DEFINE_list("decode_batches", ["1", "32"], "Rows per generate call.")
flags.DEFINE_integer("train_batch_per_replica", None, lower_bound=1,
                     help="Sequences per replica per step (default 4, at seq 1024 for medium).")
flags.DEFINE_float("peak_tflops", None, lower_bound=0.0,
                   help="Peak dense TFLOP/s of one device for the training precision; "
                   "overrides the table of known GPUs for MFU.")
flags.DEFINE_float("parity_rtol", 1e-3, lower_bound=0.0,
                   help="Largest allowed max |logit difference| / max(1, max |logit|) between "
                   "the accelerator and the CPU in fp32.")

PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
TRAIN_PRECISIONS = {"fp32": "none", "bf16": "bf16", "fp16": "fp16"}  # FinetuneConfig's names
# A small vocabulary keeps the smoke run's compilations short; prompts are
# token ids, so no tokenizer has to match it.
TINY = dict(n_layer=1, n_embd=64, n_head=4, n_positions=128, vocab_size=512, bos_token_id=511,
            eos_token_id=511)
# Per preset: prompt and new tokens of decode, parity's greedy tokens,
# training's sequence and batch, steps (untimed first, then timed), timed
# calls per measurement. --quick decodes greedily as many tokens as parity
# did, so its batch-1 fp32 row reuses parity's compiled programs (built
# with TF32 off).
SETTINGS = {
    "medium": dict(prompt_tokens=8, new_tokens=64, parity_tokens=16, seq_len=1024,
                   batch_per_replica=4, warmup_steps=2, timed_steps=5, repeats=3),
    "tiny": dict(prompt_tokens=8, new_tokens=32, parity_tokens=8, seq_len=128,
                 batch_per_replica=4, warmup_steps=2, timed_steps=5, repeats=3),
}
QUICK = dict(new_tokens=8, parity_tokens=8, warmup_steps=1, timed_steps=2, repeats=1)
SAMPLING = dict(do_sample=True, top_k=50, seed=0)  # the command line's default
GREEDY = dict(do_sample=False)

START = time.perf_counter()


def say(message: str) -> None:
    """A progress line with the time since start (stderr; the table is stdout)."""
    print(f"[{time.perf_counter() - START:6.1f} s] {message}", file=sys.stderr, flush=True)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def error_text(err: BaseException) -> str:
    """The error in one line: its message's last line, where TensorFlow's
    traced errors ("in user code: ...") put the cause."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {(lines[-1] if lines else '')[:300]}"


# --- the machine ------------------------------------------------------------------
def describe_machine(tf) -> dict:
    import keras

    import tfgpt2

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append({"name": details.get("device_name", device.name),
                     "compute_capability": list(details.get("compute_capability") or [])})
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"gpus": gpus, "accelerator": "GPU" if gpus else "CPU", "cpu": cpu,
            "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
            "tensorflow": tf.__version__, "keras": keras.__version__, "tfgpt2": tfgpt2.__version__,
            "cuda_build": tf.test.is_built_with_cuda(),
            "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()) and any(
                g["compute_capability"][:1] >= [8] for g in gpus),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def mixed_precision_for(machine) -> str:
    """bf16, unless a GPU predates Ampere (compute capability 8), which has
    no bf16 matmuls: then fp16."""
    old = any(g["compute_capability"][:1] < [8] for g in machine["gpus"])
    return "fp16" if old else "bf16"


def resolve_precisions(names, default) -> list[str]:
    """The flag's precisions (checked by `check_flags`), `auto` as `default`."""
    resolved = []
    for name in (n.strip().lower() for n in names):
        for precision in default if name == "auto" else [name]:
            if precision not in resolved:
                resolved.append(precision)
    return resolved


def peak_tflops(machine, precision: str) -> tuple[float | None, str]:
    """(peak TFLOP/s of one device for `precision`, where it came from)."""
    if FLAGS.peak_tflops:
        return FLAGS.peak_tflops, "--peak_tflops"
    if not machine["gpus"]:
        return None, "unknown: no GPU (pass --peak_tflops)"
    return known_peak(machine["gpus"][0]["name"], precision, machine["tf32"])


# --- the model ----------------------------------------------------------------------
def checkpoint_path(workdir: str) -> tuple[str, str]:
    """(the checkpoint to measure, a description)."""
    from tfgpt2 import GPT2Config

    if FLAGS.model:
        return FLAGS.model, f"checkpoint {FLAGS.model}"
    directory = FLAGS.checkpoint_dir or os.path.join(workdir, FLAGS.preset)
    if FLAGS.preset == "medium":
        config, what = GPT2Config.from_preset("gpt2-medium"), "GPT-2 Medium"
    else:
        config, what = GPT2Config(**TINY), "tiny GPT-2 (1 x 64, context 128, vocabulary 512)"
    return random_checkpoint(directory, config, what), f"seeded random {what}"


def load(path: str, precision: str = "fp32"):
    from tfgpt2 import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(path, dtype=PRECISIONS[precision])


def prompt_rows(batch: int, length: int, vocab_size: int) -> np.ndarray:
    """Seeded random token ids (never the stop token, the vocabulary's last)."""
    rng = np.random.default_rng(batch)
    return rng.integers(0, vocab_size - 1, size=(batch, length)).astype(np.int32)


# --- 1. parity ----------------------------------------------------------------------
def parity(tf, path: str, model, settings) -> dict:
    """Judge the accelerator's fp32 logits and greedy tokens against a CPU
    copy of the same checkpoint (see gpu_support)."""
    ids = prompt_rows(1, settings["prompt_tokens"], model.config.vocab_size)
    new = settings["parity_tokens"]
    say(f"parity: CPU reference, {ids.shape[1]}-token prompt, {new} greedy tokens by full "
        "forward passes")
    with tf.device("/CPU:0"):
        reference = load(path)
        ref_logits = reference(ids)["logits"].numpy()[0]
        sequence, ref_tokens, step_logits = ids, [], []
        for _ in range(new):
            last = reference(sequence)["logits"].numpy()[0, -1]
            ref_tokens.append(int(np.argmax(last)))
            step_logits.append(last)
            sequence = np.concatenate([sequence, [[ref_tokens[-1]]]], axis=1).astype(np.int32)
    del reference
    gc.collect()
    say("parity: accelerator forward pass and compiled greedy decode (TF32 off)")
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        acc_logits = model(ids)["logits"].numpy()[0]
        out = model.generate(ids, max_new_tokens=new, eos_token_id=[], **GREEDY)
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
    verdict = judge(ref_logits, acc_logits, ref_tokens, np.asarray(out)[0, ids.shape[1]:],
                    step_logits, FLAGS.parity_rtol)
    verdict["reference_logits"] = ref_logits  # kept for the other precisions' drift, not in JSON
    verdict["prompt_ids"] = ids
    return verdict


# --- 2. and 3. decode and eval ---------------------------------------------------------
def decode_row(model, precision: str, batch: int, settings, device: str) -> dict:
    choice = GREEDY if FLAGS.quick else SAMPLING
    row = {"task": "decode", "precision": precision, "batch": batch, "device": device,
           "setting": f"{'greedy' if FLAGS.quick else 'top-k 50'}, "
                      f"{settings['prompt_tokens']}-token prompt, {settings['new_tokens']} new "
                      "tokens"}
    ids = prompt_rows(batch, settings["prompt_tokens"], model.config.vocab_size)
    new = settings["new_tokens"]

    def call():
        out = model.generate(ids, max_new_tokens=new, eos_token_id=[], **choice)
        assert np.asarray(out).shape == (batch, ids.shape[1] + new)

    say(f"decode {precision} batch {batch}: first call (compiles, unless parity did)")
    row["first_call_s"], _ = timed(call)
    times = [timed(call)[0] for _ in range(settings["repeats"])]
    row["seconds"] = statistics.median(times)
    row["tokens_per_sec"] = batch * new / row["seconds"]
    row["tokens_per_sec_per_sequence"] = new / row["seconds"]
    say(f"decode {precision} batch {batch}: {row['tokens_per_sec']:.1f} tok/s")
    return row


def eval_row(model, precision: str, settings, device: str) -> dict:
    from tfgpt2.evaluation import score_tokens
    from tfgpt2.evaluation.scoring import default_window_batch

    window = model.config.n_positions
    stride = window // 2
    per_pass = default_window_batch()
    windows = 1 + per_pass * (1 if FLAGS.quick else 2)
    ids = prompt_rows(1, window + (windows - 1) * stride, model.config.vocab_size)[0]
    row = {"task": "eval", "precision": precision, "batch": per_pass, "device": device,
           "setting": f"score_tokens, {windows} windows of {window}, stride {stride}, "
                      f"{per_pass} per pass"}

    def call():
        return score_tokens(model, ids, window=window, stride=stride)

    say(f"eval {precision}: first run (traces)")
    row["first_call_s"], result = timed(call)
    if not np.isfinite(result.total_nll):
        raise FloatingPointError(f"the total NLL is {result.total_nll}")
    times = [timed(call)[0] for _ in range(settings["repeats"])]
    row["seconds"] = statistics.median(times)
    row["tokens_per_sec"] = result.num_scored / row["seconds"]
    row["mean_nll"] = result.total_nll / result.num_scored
    say(f"eval {precision}: {row['tokens_per_sec']:.1f} tok/s")
    return row


def guarded(row_fn, base: dict) -> dict:
    """`row_fn()`, or `base` marked with why it could not run."""
    import tensorflow as tf

    try:
        return row_fn()
    except tf.errors.ResourceExhaustedError as err:
        status = "out of memory"
        error = err
    except Exception as err:  # noqa: BLE001 -- every failure becomes a row, shown
        status = "unsupported" if base["task"] == "decode" else "failed"
        error = err
    say(f"{base['task']} {base['precision']}: {status}: {error_text(error)}")
    return {**base, "status": status, "error": error_text(error)}


def inference_rows(path, fp32_model, precisions, batches, settings, verdict, device):
    """The decode and eval rows of every precision (one model each)."""
    rows = []
    batches = batches if "decode" in FLAGS.tasks else []
    for precision in precisions if {"decode", "eval"} & set(FLAGS.tasks) else []:
        base = {"precision": precision, "device": device}
        try:
            model = fp32_model if precision == "fp32" else load(path, precision)
            # How far this precision's logits are from the CPU's fp32 ones.
            drift = float(np.max(np.abs(model(verdict["prompt_ids"])["logits"].numpy()[0]
                                        - verdict["reference_logits"])))
        except Exception as err:  # noqa: BLE001 -- the precision's rows say why
            say(f"{precision}: the model does not build or run: {error_text(err)}")
            failed = {**base, "error": error_text(err)}
            rows += [{**failed, "task": "decode", "batch": b, "status": "unsupported"}
                     for b in batches]
            if "eval" in FLAGS.tasks:
                rows.append({**failed, "task": "eval", "batch": None, "status": "failed"})
            continue
        for batch in batches:
            row = guarded(lambda: decode_row(model, precision, batch, settings, device),
                          {**base, "task": "decode", "batch": batch})
            rows.append({"status": "ok", "max_abs_logits_diff_vs_cpu_fp32": drift, **row})
        if "eval" in FLAGS.tasks:
            row = guarded(lambda: eval_row(model, precision, settings, device),
                          {**base, "task": "eval", "batch": None})
            rows.append({"status": "ok", "max_abs_logits_diff_vs_cpu_fp32": drift, **row})
        del model
        gc.collect()
    return rows


# --- 4. training ---------------------------------------------------------------------
def split_cpu(tf) -> None:
    """Without a GPU, two logical CPU devices, so that the smoke run trains
    under MirroredStrategy with two replicas (all-reduce included), as on
    several GPUs. Must run before TensorFlow initialises its devices."""
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def training_strategy(tf, machine):
    """MirroredStrategy over every GPU when there are several. One GPU: the
    one-device strategy, what `finetune` picks there (a one-replica
    MirroredStrategy cannot run tfgpt2's step). No GPU: MirroredStrategy
    over the two logical CPUs of `split_cpu`."""
    from tfgpt2.training.strategy import make_strategy

    if len(machine["gpus"]) == 1:
        return make_strategy("one_device")
    if machine["gpus"]:
        return make_strategy("mirrored")
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def step_kind(replicas: int, jit_compile: bool) -> str:
    """How `Steps` runs the step (see tfgpt2/training/step.py)."""
    gradient = "XLA gradient" if jit_compile else "plain-graph gradient (the CPU default)"
    if replicas > 1:
        return f"{gradient} per replica, all-reduce, update"
    return "one XLA program" if jit_compile else f"{gradient}, XLA update"


def train_row(tf, path: str, precision: str, batch_per_replica: int, settings, machine) -> dict:
    from tfgpt2.config import GPT2Config
    from tfgpt2.modeling import GPT2LMHeadModel
    from tfgpt2.training import data
    from tfgpt2.training.optimization import make_optimizer
    from tfgpt2.training.settings import FinetuneConfig
    from tfgpt2.training.step import Steps
    from tfgpt2.training.strategy import replicas_on_cpu

    strategy = training_strategy(tf, machine)
    replicas = strategy.num_replicas_in_sync
    config = GPT2Config.from_pretrained(path)
    seq = min(settings["seq_len"], config.n_positions)
    steps = settings["warmup_steps"] + settings["timed_steps"]
    run = FinetuneConfig(train_files="-", output_dir="-", model=path, strategy="mirrored",
                         global_batch_size=batch_per_replica * replicas, seq_len=seq,
                         train_steps=steps, warmup_steps=0, lr_schedule="constant",
                         learning_rate=1e-5, mixed_precision=TRAIN_PRECISIONS[precision])
    jit_compile = run.resolved_jit_compile(on_cpu=replicas_on_cpu(strategy))
    devices = [tf.DeviceSpec.from_string(d).device_type for d in strategy.extended.worker_devices]
    kind = type(strategy).__name__
    row = {"task": "train", "precision": precision, "batch": run.global_batch_size,
           "device": f"{kind}, {replicas} x {devices[0]}",
           "setting": f"seq {seq}, {batch_per_replica} per replica, AdamW, "
                      + step_kind(replicas, jit_compile)}
    say(f"train {precision}: building the model and optimizer on {replicas} replica(s)")
    with strategy.scope():
        model = GPT2LMHeadModel.from_pretrained(path, dtype=run.compute_dtype_policy)
        optimizer, _ = make_optimizer(run, model)
    train = Steps(model, optimizer, strategy, clip_norm=run.clip_norm, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, config.vocab_size - 1, size=steps * run.global_batch_size * seq + 1)
    corpus = data.PackedCorpus(tokens.astype(np.int32), seq, config.eos_token_id)
    layout = data.BatchLayout(run.global_batch_size, replicas)

    def rows(step, ctx):  # finetune's rows of this replica at this step
        found = data.train_rows(corpus, layout, run.seed, step, ctx.replica_id_in_sync_group)
        return {name: tf.constant(value) for name, value in found.items()}

    # Every step's rows on their devices before the clock starts, as
    # finetune's prefetching input pipeline would have them.
    batches = [strategy.experimental_distribute_values_from_function(
        lambda ctx, step=step: rows(step, ctx)) for step in range(steps)]
    times = []
    for step, batch in enumerate(batches):
        seconds, loss = timed(
            lambda: float(train.train_step(batch, tf.constant(step, tf.int64))[0]))
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {step + 1}")
        times.append(seconds)
        say(f"train {precision}: step {step + 1}/{steps} {seconds:.2f} s, loss {loss:.3f}")
    row["first_call_s"] = sum(times[:settings["warmup_steps"]])
    row["seconds"] = statistics.median(times[settings["warmup_steps"]:])
    row["tokens_per_sec"] = run.global_batch_size * seq / row["seconds"]
    flops = training_flops_per_token(model.count_params(), config.n_layer, config.n_embd, seq)
    row["flops_per_token"] = flops
    peak, source = peak_tflops(machine, precision)
    row["peak_tflops_per_device"], row["peak_source"] = peak, source
    row["mfu"] = row["tokens_per_sec"] * flops / (peak * 1e12 * replicas) if peak else None
    return row


def train_rows(tf, path, precisions, settings, machine) -> list[dict]:
    rows = []
    for precision in precisions:
        batch = FLAGS.train_batch_per_replica or settings["batch_per_replica"]
        for attempt in range(2):
            base = {"task": "train", "precision": precision, "batch": batch}
            row = guarded(lambda: train_row(tf, path, precision, batch, settings, machine), base)
            gc.collect()
            if row.get("status") != "out of memory" or batch == 1 or attempt:
                break
            say(f"train {precision}: out of memory at {batch} per replica; retrying at "
                f"{batch // 2}")
            batch //= 2
        rows.append({"status": "ok", **row})
    return rows


# --- the report ------------------------------------------------------------------------
def number(value, digits=1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table(machine, description, verdict, rows) -> str:
    gpus = machine["gpus"]
    devices = (f"{len(gpus)} x {gpus[0]['name']} (compute capability "
               f"{'.'.join(map(str, gpus[0]['compute_capability']))})" if gpus
               else f"NO GPU visible: every row ran on the CPU ({machine['cpu']}); a smoke run, "
                    "its numbers say nothing about GPUs")
    lines = [
        f"tfgpt2 GPU check, {machine['date_utc']}: {description}",
        f"Devices: {devices}. TensorFlow {machine['tensorflow']} (CUDA build: "
        f"{machine['cuda_build']}), Keras {machine['keras']}, TF32 for fp32: "
        f"{'on' if machine['tf32'] else 'off'}. Load at start "
        f"{machine['load_average_at_start']:.2f}.",
        f"Parity (fp32, TF32 off) vs the CPU: max |logit difference| "
        f"{verdict['max_abs_logits_diff']:.3g} (relative {verdict['relative_diff']:.2g}, "
        f"tolerance {verdict['rtol']:g}); greedy tokens equal {verdict['greedy_tokens_equal']}/"
        f"{verdict['greedy_tokens']}: {'PASSED' if verdict['passed'] else 'FAILED'}"
        + (f" ({verdict['note']})" if verdict["note"] else ""),
    ]
    if not rows:
        return "\n".join(lines)
    lines += [
        "",
        "| task | precision | batch | device | tok/s | first call/steps (s) | s per call/step "
        "| MFU | max logit diff vs CPU fp32 | setting / status |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        status = row.get("setting", "") if row["status"] == "ok" else \
            f"**{row['status']}**: {row['error']}"
        mfu = row.get("mfu")
        mfu_text = f"{100 * mfu:.1f}%" if mfu is not None else (
            "unknown" if row["task"] == "train" else "")
        lines.append(
            f"| {row['task']} | {row['precision']} | {row.get('batch') or ''} | "
            f"{row.get('device', '')} | {number(row.get('tokens_per_sec'))} | "
            f"{number(row.get('first_call_s'))} | {number(row.get('seconds'), 3)} | {mfu_text} | "
            f"{number(row.get('max_abs_logits_diff_vs_cpu_fp32'), 4)} | {status} |")
    peaks = {r.get("peak_source") for r in rows if r["task"] == "train" and r.get("peak_source")}
    if peaks:
        lines.append(f"\nMFU peak: {'; '.join(sorted(peaks))}.")
    return "\n".join(lines)


def write_json(path: str, report: dict) -> None:
    from tfgpt2.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


def check_flags() -> list[int]:
    """Every flag checked before minutes of work; returns the decode batches."""
    unknown = sorted(set(FLAGS.tasks) - {"decode", "eval", "train"})
    if unknown:
        raise app.UsageError(f"unknown task(s) {unknown}; use decode, eval, train.")
    for name in ("precisions", "train_precisions"):
        unknown = sorted({n.strip().lower() for n in getattr(FLAGS, name)} - {*PRECISIONS, "auto"})
        if unknown:
            raise app.UsageError(f"--{name}: unknown {unknown}; use fp32, bf16, fp16 or auto.")
    if not all(b.strip().isdigit() and int(b) > 0 for b in FLAGS.decode_batches):
        raise app.UsageError(f"--decode_batches={','.join(FLAGS.decode_batches)}: give positive "
                             "integers, e.g. 1,32.")
    directory = os.path.dirname(os.path.abspath(FLAGS.output))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise app.UsageError(f"--output={FLAGS.output}: cannot create {directory} "
                             f"({err.strerror}).") from None
    if not os.access(directory, os.W_OK):
        raise app.UsageError(f"--output={FLAGS.output}: {directory} is not writable; choose "
                             "another path.")
    return [int(b) for b in FLAGS.decode_batches]


def main(argv):
    del argv
    batches = check_flags()
    settings = dict(SETTINGS[FLAGS.preset], **(QUICK if FLAGS.quick else {}))
    import tensorflow as tf

    machine = describe_machine(tf)
    if not machine["gpus"]:
        split_cpu(tf)
        if FLAGS.preset == "medium" or FLAGS.model:
            say("warning: no GPU visible, so everything runs on the CPU, where GPT-2 Medium "
                "takes tens of minutes; `--preset=tiny --quick` is the smoke run.")
    device = "GPU:0" if machine["gpus"] else "CPU"
    say(f"devices: {[g['name'] for g in machine['gpus']] or 'no GPU, the CPU only'}; "
        f"TensorFlow {machine['tensorflow']}")
    precisions = resolve_precisions(FLAGS.precisions, ["fp32", mixed_precision_for(machine)])
    train_precisions = resolve_precisions(FLAGS.train_precisions, [mixed_precision_for(machine)])
    report = {"machine": machine, "settings": {"preset": FLAGS.preset, "quick": FLAGS.quick,
                                               **settings}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="tfgpt2-gpu-bench-") as workdir:
        path, description = checkpoint_path(workdir)
        report["model"] = description
        model = load(path)
        verdict = parity(tf, path, model, settings)
        report["parity"] = {k: v for k, v in verdict.items()
                            if k not in ("reference_logits", "prompt_ids")}
        try:
            require(verdict)
        except ParityError as err:
            print(table(machine, description, verdict, []))
            write_json(FLAGS.output, report)
            raise SystemExit(str(err)) from None
        say(f"parity passed: max |logit difference| {verdict['max_abs_logits_diff']:.3g}")
        report["rows"] += inference_rows(path, model, precisions, batches, settings, verdict,
                                         device)
        del model
        gc.collect()
        if "train" in FLAGS.tasks:
            report["rows"] += train_rows(tf, path, train_precisions, settings, machine)
    report["elapsed_seconds"] = time.perf_counter() - START
    print(table(machine, description, verdict, report["rows"]))
    print(f"\nTotal {report['elapsed_seconds']:.0f} s. JSON: {FLAGS.output}")
    write_json(FLAGS.output, report)


if __name__ == "__main__":
    app.run(main)
