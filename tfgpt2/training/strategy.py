"""Kept so `from tfgpt2.training.strategy import ...` goes on working: the
strategy helpers are shared by fine-tuning, generation and evaluation and
live in `tfgpt2.distribute.strategy`."""

from tfgpt2.distribute.strategy import (cluster_size, is_chief, make_strategy,  # noqa: F401
                                        replicas_on_cpu)
