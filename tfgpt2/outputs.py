"""The one output type, shared by the models and the tokenizer (no TF or Keras
import here): a dict with attribute access, as transformers' `ModelOutput` and
`BatchEncoding` are (`out.logits`, `enc.input_ids`)."""

from __future__ import annotations


class ModelOutput(dict):
    """A dict whose keys are also attributes; `out[0]` is the first field.

    Example:
        out = model(ids)
        out.logits is out["logits"] is out[0]
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"This output has no field {name!r}; it has {sorted(self)}.") from None

    def __getitem__(self, key):
        if isinstance(key, int):
            return tuple(self.values())[key]
        return super().__getitem__(key)

    def to_dict(self) -> dict:
        return dict(self)

    def to_tuple(self) -> tuple:
        return tuple(self.values())


class BatchEncoding(ModelOutput):
    """What a tokenizer returns: `input_ids` and `attention_mask`."""
