"""The network: layers, the functional models, the KV cache, input checks,
the loss."""

from tfgpt2.modeling.model import (
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    TFGPT2LMHeadModel,
    TFGPT2Model,
)
from tfgpt2.modeling.kv_cache import KVCache
from tfgpt2.outputs import BatchEncoding, ModelOutput

__all__ = ["BatchEncoding", "GPT2LMHeadModel", "GPT2Model", "GPT2PreTrainedModel", "KVCache",
           "ModelOutput", "TFGPT2LMHeadModel", "TFGPT2Model"]
