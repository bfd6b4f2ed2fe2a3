"""Flags every mode takes."""

from absl import flags

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
