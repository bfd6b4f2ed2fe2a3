"""Text generation: settings, the compiled decode programs, samplers, beam
search, streaming, the model card's pipeline and file jobs."""

from tfgpt2.generation.config import GenerationConfig
from tfgpt2.generation.file_jobs import generate_file
from tfgpt2.generation.seeds import set_seed
from tfgpt2.generation.pipelines import pipeline
from tfgpt2.generation.streamers import TextStreamer

__all__ = ["GenerationConfig", "TextStreamer", "generate_file", "pipeline", "set_seed"]
