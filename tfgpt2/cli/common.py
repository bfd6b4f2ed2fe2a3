"""Flags more than one mode takes. `USED_BY` says which: a flag given to a
mode that does not use it is refused, as a flag of another mode is."""

from absl import flags

from tfgpt2.training.settings import STRATEGIES

flags.DEFINE_string(
    "model", "gpt2-medium",
    "Hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, org/name) or a checkpoint directory "
    "(Hugging Face model.safetensors + config.json, or OpenAI model.ckpt + hparams.json).")
flags.DEFINE_bool(
    "tf_logs", False,
    "Show TensorFlow's C++ start-up log lines (hidden by default; setting "
    "TF_CPP_MIN_LOG_LEVEL in the environment also keeps them).")
flags.DEFINE_integer(
    "seed", None,
    "Seed: of the sampling in generate (default: unseeded), of the data order and dropout "
    "in finetune (default: 0).")
flags.DEFINE_string(
    "output_dir", None,
    "finetune: checkpoints, TensorBoard logs (logs/) and the fine-tuned model (Hugging Face "
    "layout); rerunning with the same directory resumes from its latest checkpoint. "
    "export: where the artifact is written (created if missing).")
flags.DEFINE_enum(
    "strategy", "auto", list(STRATEGIES),
    "tf.distribute strategy: auto (MultiWorkerMirrored when TF_CONFIG names several workers, "
    "Mirrored with several GPUs, else one device), one_device, mirrored, multi_worker, tpu "
    "(finetune). generate takes it with --prompts_file.")
flags.DEFINE_integer(
    "batch_size", None,
    "eval: windows per forward pass for the language-modelling tasks and text (default 1 on "
    "a CPU, where one 1024-token window keeps all cores busy; 8 on a GPU), or passages "
    "(lambada, default 8) or rows (bias, default 16); cbt-* runs one question per pass (its "
    "context once, its 10 candidates together). generate --prompts_file: prompts per decode "
    "call on each replica (default 8; a call runs at least 8 rows, so fewer saves nothing).")

flags.DEFINE_enum(
    "quantization", None, ["none", "float16", "int8"],
    "generate and eval: int8 quantizes the loaded model's weights in memory "
    "(model.quantize(\"int8\"): int8 weights with a scale per output channel; default none). "
    "export, tflite and litertlm only: the file's weights, int8 (the default; dynamic-range "
    "int8, 4x smaller and ~3x faster on phone CPUs than none, fp32, at a small drift) or "
    "float16 (half the size of fp32, float math).")

# The modes each shared flag means something to (all modes when absent).
USED_BY = {
    "seed": ("generate", "finetune"),
    "output_dir": ("finetune", "export"),
    "strategy": ("finetune", "generate", "eval"),
    "batch_size": ("generate", "eval"),
    "quantization": ("generate", "eval", "export"),
}


def quantize_as(model, quantization: str | None):
    """Apply --quantization (None or "none": nothing) to a model loaded by
    generate or eval."""
    from tfgpt2.cli import CliError

    if quantization in (None, "none"):
        return model
    if quantization != "int8":
        raise CliError(f"--quantization={quantization} is a file format of --mode=export; "
                       "generate and eval take --quantization=int8 (or none).")
    model.quantize("int8")
    return model
