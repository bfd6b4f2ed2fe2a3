"""The network: layers, the functional models, outputs, input checks, loss."""

from tfgpt2.modeling.model import (
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    ModelOutput,
    TFGPT2LMHeadModel,
    TFGPT2Model,
)

__all__ = ["GPT2LMHeadModel", "GPT2Model", "GPT2PreTrainedModel", "ModelOutput",
           "TFGPT2LMHeadModel", "TFGPT2Model"]
