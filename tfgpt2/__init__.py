"""tfgpt2: GPT-2 in TensorFlow/Keras, with the model card's API.

    from tfgpt2 import pipeline, set_seed
    generator = pipeline('text-generation', model='gpt2-medium')
    set_seed(42)
    generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)
"""

import os as _os

# Keras 3 picks its backend at import; tfgpt2 is TensorFlow throughout.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfgpt2.config import GPT2Config  # noqa: E402
from tfgpt2.generation import GenerationConfig, TextStreamer, pipeline, set_seed  # noqa: E402
from tfgpt2.modeling import (  # noqa: E402
    GPT2LMHeadModel,
    GPT2Model,
    TFGPT2LMHeadModel,
    TFGPT2Model,
)
from tfgpt2.tokenizer import BytePairTokenizer, GPT2Tokenizer  # noqa: E402

__all__ = [
    "BytePairTokenizer",
    "GPT2Config",
    "GPT2LMHeadModel",
    "GPT2Model",
    "GPT2Tokenizer",
    "GenerationConfig",
    "TFGPT2LMHeadModel",
    "TFGPT2Model",
    "TextStreamer",
    "pipeline",
    "set_seed",
]
__version__ = "0.1.0"
