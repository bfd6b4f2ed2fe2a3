"""The network: layers, the functional models, input checks, the loss."""

from tfgpt2.modeling.model import (
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    TFGPT2LMHeadModel,
    TFGPT2Model,
)
from tfgpt2.outputs import BatchEncoding, ModelOutput

__all__ = ["BatchEncoding", "GPT2LMHeadModel", "GPT2Model", "GPT2PreTrainedModel", "ModelOutput",
           "TFGPT2LMHeadModel", "TFGPT2Model"]
