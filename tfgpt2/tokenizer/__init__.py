"""GPT-2's byte-level BPE: the integer-op graph (`BytePairTokenizer`) and the
model card's API (`GPT2Tokenizer`)."""

from tfgpt2.tokenizer.graph import BytePairTokenizer, run_tflite
from tfgpt2.tokenizer.hf_api import BatchEncoding, GPT2Tokenizer

__all__ = ["BatchEncoding", "BytePairTokenizer", "GPT2Tokenizer", "run_tflite"]
