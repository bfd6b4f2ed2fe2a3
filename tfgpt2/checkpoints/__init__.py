"""Checkpoint IO: Hugging Face safetensors, OpenAI's TF checkpoint, the hub."""

from tfgpt2.checkpoints.weights import CheckpointError

__all__ = ["CheckpointError"]
