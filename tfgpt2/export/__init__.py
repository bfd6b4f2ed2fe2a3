"""The deployable artifacts, each with the byte-level BPE tokenizer inside
the graph, behind one call that follows Keras 3's `Model.export`:

- `format="tf_saved_model"`: a SavedModel for the stock TF Serving, strings
  in and strings out (`tfgpt2.export.saved_model`);
- `format="litert"`: a builtins-only `.tflite` with static shapes, the
  tokenizer and a KV cache, for the stock LiteRT runtime and LiteRT.js
  (`tfgpt2.export.tflite`); run it with
  `tfgpt2.export.litert_runner.LiteRTRunner`. A path ending in `.litertlm`
  gets the bundle below instead;
- `format="litertlm"`: that `.tflite` packed with a `tokenizer.json` and its
  metadata as a `.litertlm` bundle for the stock LiteRT-LM runtime
  (`tfgpt2.export.litertlm`; needs `pip install "tfgpt2[litertlm]"`).

    model = tfgpt2.GPT2LMHeadModel.from_pretrained("gpt2-medium")
    model.export("serving/gpt2-medium", format="tf_saved_model", version=1)
    model.export("gpt2-medium.int8.tflite", format="litert", quantization="int8")
    model.export("gpt2-medium.int8.litertlm", format="litert")

Where they are deployed (TF Serving, apps) is described in the repository's
`export/README.md`.
"""

from __future__ import annotations

import importlib

# format -> (module, target class); modules load on first use, so importing
# this package does not import TensorFlow. (Not a function named `target`:
# importing the submodule `target` would replace it.)
_TARGETS = {
    "tf_saved_model": ("tfgpt2.export.saved_model", "SavedModelTarget"),
    "litert": ("tfgpt2.export.tflite", "LiteRTTarget"),
    "litertlm": ("tfgpt2.export.litertlm", "LiteRTLMTarget"),
}
FORMATS = tuple(_TARGETS)


def get_target(format: str):  # noqa: A002 -- Keras' argument name
    """The `ExportTarget` of `format`."""
    if format not in _TARGETS:
        raise ValueError(f"Unknown export format {format!r}; tfgpt2 exports "
                         f"{', '.join(map(repr, FORMATS))}.")
    module, name = _TARGETS[format]
    return getattr(importlib.import_module(module), name)()


def export(model, path, format: str = "tf_saved_model", *, overwrite: bool = False,  # noqa: A002
           **options):
    """Write `model`'s `format` artifact at `path`, atomically (a failed or
    interrupted export leaves nothing half-written) and never over an
    existing artifact unless `overwrite`. Returns the path written.

    Options: `tf_saved_model` takes `version` (write TF Serving's layout
    `path/<version>/`), `cache_length` (most tokens a generation may hold,
    default the model's context) and `xla` (compile the decode loop: for
    `tf.saved_model.load` and CPU servers started with
    `--xla_cpu_compilation_enabled=true`); `litert` and `litertlm` take
    `quantization` (`"int8"`, the default, `"float16"` or `"none"`) and
    `cache_length`. A model quantized in memory (`model.quantize`) is
    refused: export the float model, which `litert` quantizes itself.
    """
    from tfgpt2.modeling.quantization import refuse_if_quantized

    refuse_if_quantized(model, "export it", "the .tflite export quantizes the float model "
                        "itself (quantization=\"int8\")")
    return get_target(format).export(model, path, overwrite=overwrite, **options)
