"""`--mode=export`: write the SavedModel for TF Serving, the `.tflite` for
LiteRT or the `.litertlm` bundle for LiteRT-LM through `tfgpt2.export` (the
repository's export/README.md says how to serve and deploy them)."""

from __future__ import annotations

import logging

from absl import flags

from tfgpt2.cli import CliError, Mode

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "litertlm"],
                  "saved_model: TF Serving's layout, strings in and out; tflite: one .tflite "
                  "file for LiteRT and LiteRT.js (builtins only, static shapes); litertlm: "
                  "that .tflite bundled for the LiteRT-LM runtime (Android, iOS, "
                  "`litert-lm run`/`serve`; needs pip install 'tfgpt2[litertlm]').")
flags.DEFINE_integer("cache_length", None,
                     "Most tokens a generation may hold, prompt included (default: the "
                     "model's context, 1024 for GPT-2).")
flags.DEFINE_bool("xla", False,
                  "saved_model only. Compile the decode loop with XLA: faster on CPU servers "
                  "started with --xla_cpu_compilation_enabled=true, and for "
                  "tf.saved_model.load; stock servers refuse it (off by default).")
flags.DEFINE_integer("version", 1, "saved_model only. The TF Serving version directory.")
flags.DEFINE_bool("overwrite", False, "Replace an artifact already at the destination.")

_SAVED_MODEL_ONLY = ("xla", "version")
_TFLITE_ONLY = ("quantization",)


def run() -> None:
    if not FLAGS.output_dir:
        raise CliError("--output_dir is required: where to write the artifact.")
    if FLAGS.format in ("tflite", "litertlm"):
        given = [f"--{name}" for name in _SAVED_MODEL_ONLY if FLAGS[name].present]
    else:
        given = [f"--{name}" for name in _TFLITE_ONLY if FLAGS[name].present]
    if given:
        raise CliError(f"{', '.join(given)} does not apply to --format={FLAGS.format}.")
    quantization = FLAGS.quantization or "int8"  # the shared flag's default for files
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from pathlib import Path

    import tfgpt2
    from tfgpt2.config import GPT2Config
    from tfgpt2.export import export, writing

    if FLAGS.format == "litertlm":  # a missing builder, before loading anything
        from tfgpt2.export.litertlm import builder_module

        builder_module()
    if FLAGS.format != "saved_model":  # refuse a file over 2 GiB before loading anything
        from tfgpt2.export.tflite import check_fits

        check_fits(GPT2Config.from_pretrained(FLAGS.model), quantization, FLAGS.model)
    logging.info("Loading %s ...", FLAGS.model)
    model = tfgpt2.GPT2LMHeadModel.from_pretrained(FLAGS.model)
    if FLAGS.format == "saved_model":
        path = export(model, FLAGS.output_dir, "tf_saved_model", version=FLAGS.version,
                      cache_length=FLAGS.cache_length, xla=FLAGS.xla, overwrite=FLAGS.overwrite)
        what = f"SavedModel ({'XLA decode loop' if FLAGS.xla else 'no XLA'})"
    else:
        name = Path(str(FLAGS.model).rstrip("/")).name or "gpt2"
        path = export(model, Path(FLAGS.output_dir) / f"{name}.{quantization}.{FLAGS.format}",
                      "litert", quantization=quantization,
                      cache_length=FLAGS.cache_length, overwrite=FLAGS.overwrite)
        what = f".{FLAGS.format} ({quantization})"
    print(f"Wrote {what} to {path} ({writing.human_size(writing.directory_size(path))}).")


MODE = Mode(
    name="export",
    summary="Write a SavedModel for TF Serving, a .tflite for LiteRT or a .litertlm for "
            "LiteRT-LM, tokenizer inside.",
    example="python main.py --mode=export --format=tflite --model=gpt2-medium "
            "--output_dir=artifacts",
    flags_module=__name__,
    run=run,
)
