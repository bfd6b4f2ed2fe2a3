"""Fine-tuning GPT-2 under tf.distribute: the input pipeline, the compiled
train step, checkpoints and resume, and the `finetune` entry point.

    from tfgpt2.training import finetune
    result = finetune(train_files="texts/*.txt", output_dir="runs/1", model="gpt2-medium")
"""

from tfgpt2.training.data import lm_dataset
from tfgpt2.training.interrupts import TrainingInterrupted
from tfgpt2.training.settings import FinetuneConfig
from tfgpt2.training.trainer import FinetuneResult, TrainingDivergedError, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "TrainingDivergedError", "TrainingInterrupted",
           "finetune", "lm_dataset"]
