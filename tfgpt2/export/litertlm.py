"""The `.litertlm` bundle for LiteRT-LM, Google's on-device LLM runtime (its
Android and iOS SDKs, `litert-lm run`, `litert-lm serve`): our `.tflite`
(`tfgpt2.export.tflite`, whose prefill/decode signatures are LiteRT-LM's
contract), the vocabulary as a Hugging Face `tokenizer.json`, and the
LlmMetadata the runtime reads, packed by `litert-lm-builder`.

The metadata:
- stop token `<|endoftext|>` (50256), GPT-2's only special token;
- no start token: the runtime then feeds the prompt's ids as they are, the
  way transformers and `GPT2LMHeadModel.generate` continue a prompt, so the
  same prompt gives the same greedy text. For text from nothing, start the
  prompt with `<|endoftext|>` (the runtime reads it as id 50256);
- `max_num_tokens`: the cache length (prompt and new tokens together);
- the default sampler: top-k 50 at temperature 1, what GPT-2's model card
  samples with; an app sets its own per session (top_k=1 is greedy).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tfgpt2.export import tflite, writing
from tfgpt2.export.target import ExportTarget, log, resolve_cache_length
from tfgpt2.files import atomic_path
from tfgpt2.tokenizer.tokenizer_json import write_tokenizer_json

DEFAULT_TOP_K = 50
EXTRA = "litertlm"  # pip install "tfgpt2[litertlm]"


def builder_module():
    try:
        from litert_lm_builder import litertlm_builder
        from litert_lm_builder.runtime.proto import llm_metadata_pb2
    except ImportError as error:
        raise ImportError(
            "Writing a .litertlm bundle needs litert-lm-builder: pip install "
            f"'tfgpt2[{EXTRA}]' (or pip install litert-lm-builder).") from error
    return litertlm_builder, llm_metadata_pb2


def llm_metadata(llm_metadata_pb2, config, cache_length: int):
    """The LlmMetadata proto of the bundle (see the module docstring)."""
    meta = llm_metadata_pb2.LlmMetadata()
    meta.stop_tokens.add().token_ids.ids.append(config.eos_token_id)
    meta.max_num_tokens = cache_length
    meta.llm_model_type.generic_model.SetInParent()
    # TOP_P is LiteRT-LM's top-k-then-top-p sampler (its GREEDY type is not
    # implemented on CPU); p=1 leaves top-k alone.
    meta.sampler_params.type = meta.sampler_params.TOP_P
    meta.sampler_params.k = DEFAULT_TOP_K
    meta.sampler_params.p = 1.0
    meta.sampler_params.temperature = 1.0
    meta.supports_thinking = False
    meta.supports_function_calling = False
    return meta


def pack(path: Path, tflite_bytes: bytes, vocabulary, config, cache_length: int) -> Path:
    """Write the bundle of a converted `.tflite` at `path`, atomically."""
    builder, proto = builder_module()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".litertlm-parts-") as parts:
        parts = Path(parts)
        (parts / "model.tflite").write_bytes(tflite_bytes)
        write_tokenizer_json(parts / "tokenizer.json", vocabulary)
        meta = llm_metadata(proto, config, cache_length)
        (parts / "llm_metadata.pb").write_bytes(meta.SerializeToString())
        bundle = builder.LitertLmFileBuilder()
        bundle.add_system_metadata(builder.Metadata(
            key="Authors", value="tfgpt2", dtype=builder.DType.STRING))
        bundle.add_tflite_model(str(parts / "model.tflite"), builder.TfLiteModelType.PREFILL_DECODE)
        bundle.add_hf_tokenizer(str(parts / "tokenizer.json"))
        bundle.add_llm_metadata(str(parts / "llm_metadata.pb"))
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            bundle.build(stream, validate_metadata=True)
    return path


class LiteRTLMTarget(ExportTarget):
    """`format="litertlm"` (or `format="litert"` with a `.litertlm` path):
    the bundle file at `path`."""

    format = "litertlm"
    options = ("quantization", "cache_length")

    def write(self, model, path: Path, *, overwrite: bool, quantization: str = "int8",
              cache_length: int | None = None) -> Path:
        builder_module()  # a missing builder before minutes of converting
        writing.claim(path, overwrite)
        cache_length = resolve_cache_length(cache_length, model.config)
        log.info("Converting to TFLite (quantization=%s) for a .litertlm bundle; GPT-2 Medium "
                 "takes a few minutes ...", quantization)
        data = tflite.convert(model, quantization=quantization, cache_length=cache_length)
        writing.claim(path, overwrite)  # again: the conversion took minutes
        return pack(path, data, model.tokenizer.vocabulary, model.config, cache_length)
