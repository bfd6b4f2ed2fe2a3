"""Text generation: settings, the compiled decode programs, samplers, beam
search, streaming and the model card's pipeline."""

from tfgpt2.generation.config import GenerationConfig
from tfgpt2.generation.seeds import set_seed
from tfgpt2.generation.pipelines import pipeline
from tfgpt2.generation.streamers import TextStreamer

__all__ = ["GenerationConfig", "TextStreamer", "pipeline", "set_seed"]
