"""tfgpt2: GPT-2 in TensorFlow/Keras, with the model card's API.

    from tfgpt2 import GPT2Tokenizer, GPT2LMHeadModel, pipeline, set_seed
"""

from tfgpt2.config import GPT2Config

__all__ = ["GPT2Config"]
__version__ = "0.1.0"
