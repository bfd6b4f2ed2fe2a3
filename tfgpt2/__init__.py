"""tfgpt2: GPT-2 in TensorFlow/Keras, with the model card's API.

    from tfgpt2 import pipeline, set_seed
    generator = pipeline('text-generation', model='gpt2-medium')
    set_seed(42)
    generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)

Public names load on first use (PEP 562), so `import tfgpt2.cli` or
`tfgpt2.config` does not pay for importing TensorFlow.
"""

from __future__ import annotations

import importlib
import os as _os
import sys as _sys
from typing import TYPE_CHECKING

# Keras 3 picks its backend at import; tfgpt2 is TensorFlow throughout.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# TensorFlow's C++ start-up lines (the CUDA probe's error on every CPU
# machine, oneDNN, CPU features) hidden in Python and notebooks as on the
# command line, unless the user set TF_CPP_MIN_LOG_LEVEL (tfgpt2.cli.quiet).
if "--tf_logs" not in _sys.argv:
    from tfgpt2.cli.quiet import quiet_tensorflow_logs as _quiet_tensorflow_logs

    _quiet_tensorflow_logs()

_EXPORTS = {
    "BytePairTokenizer": "tfgpt2.tokenizer",
    "GPT2Config": "tfgpt2.config",
    "GPT2LMHeadModel": "tfgpt2.modeling",
    "GPT2Model": "tfgpt2.modeling",
    "GPT2Tokenizer": "tfgpt2.tokenizer",
    "GenerationConfig": "tfgpt2.generation",
    "TFGPT2LMHeadModel": "tfgpt2.modeling",
    "TFGPT2Model": "tfgpt2.modeling",
    "TextStreamer": "tfgpt2.generation",
    "evaluate": "tfgpt2.evaluation",
    "generate_file": "tfgpt2.generation",
    "pipeline": "tfgpt2.generation",
    "probe_bias": "tfgpt2.evaluation",
    "score_continuations": "tfgpt2.evaluation",
    "score_tokens": "tfgpt2.evaluation",
    "set_seed": "tfgpt2.generation",
}
__all__ = [
    "BytePairTokenizer", "GPT2Config", "GPT2LMHeadModel", "GPT2Model", "GPT2Tokenizer",
    "GenerationConfig", "TFGPT2LMHeadModel", "TFGPT2Model", "TextStreamer", "evaluate",
    "generate_file", "pipeline", "probe_bias", "score_continuations", "score_tokens", "set_seed",
]
assert sorted(__all__) == sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfgpt2' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs
    from tfgpt2.config import GPT2Config
    from tfgpt2.evaluation import evaluate, probe_bias, score_continuations, score_tokens
    from tfgpt2.generation import (GenerationConfig, TextStreamer, generate_file, pipeline,
                                   set_seed)
    from tfgpt2.modeling import GPT2LMHeadModel, GPT2Model, TFGPT2LMHeadModel, TFGPT2Model
    from tfgpt2.tokenizer import BytePairTokenizer, GPT2Tokenizer
