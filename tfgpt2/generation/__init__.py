"""Text generation: settings, the compiled decode programs, samplers, beam
search, streaming, the model card's pipeline and file jobs.

Names load on first use (PEP 562), so reading a prompts file
(`prompt_files`, `output_file`) does not import TensorFlow."""

from __future__ import annotations

from tfgpt2.lazy_names import lazy_attributes

_EXPORTS = {
    "GenerationConfig": "tfgpt2.generation.config",
    "TextStreamer": "tfgpt2.generation.streamers",
    "generate_file": "tfgpt2.generation.file_jobs",
    "pipeline": "tfgpt2.generation.pipelines",
    "set_seed": "tfgpt2.generation.seeds",
}
__all__ = ["GenerationConfig", "TextStreamer", "generate_file", "pipeline", "set_seed"]
assert sorted(__all__) == sorted(_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
