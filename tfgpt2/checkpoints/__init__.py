"""Checkpoint IO: Hugging Face safetensors, OpenAI's TF checkpoint, the hub."""

__all__ = ["CheckpointError"]


def __getattr__(name: str):
    # Loaded on use: `tfgpt2.config` imports `checkpoints.hub`, and
    # `weights` imports `tfgpt2.config`.
    if name == "CheckpointError":
        from tfgpt2.checkpoints.weights import CheckpointError

        return CheckpointError
    raise AttributeError(f"module 'tfgpt2.checkpoints' has no attribute {name!r}")
