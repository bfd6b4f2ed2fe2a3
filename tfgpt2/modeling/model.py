"""GPT-2 as Keras functional models: `GPT2Model` (features) and
`GPT2LMHeadModel` (logits through the tied embedding).

Both are built from the layers in `layers.py` by one method, `forward`, which
is also what cached decoding (`generation.py`) calls with a KV cache: one
definition of the network for training, scoring and generation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from tfgpt2.config import DEFAULT_PRESET, GPT2Config
from tfgpt2.modeling.layers import NO_INIT, AttentionBias, GPT2Block, GPT2Embeddings, PositionIds

INPUT_NAMES = ("input_ids", "attention_mask")


class ModelOutput(dict):
    """A dict with attribute access, like transformers' ModelOutput:
    `out.logits`, `out["logits"]`, and `out[0]` for the first field."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"This output has no field {name!r}; it has {sorted(self)}."
            ) from None

    def __getitem__(self, key):
        if isinstance(key, int):
            return tuple(self.values())[key]
        return super().__getitem__(key)


def _is_symbolic(x) -> bool:
    return isinstance(x, keras.KerasTensor) or (
        tf.is_tensor(x) and not tf.executing_eagerly()
    ) or (tf.is_tensor(x) and not hasattr(x, "numpy"))


class GPT2PreTrainedModel(keras.Model):
    """Shared structure of the GPT-2 models: layers, forward pass, checkpoint IO."""

    def __init__(self, config: GPT2Config | None = None, *, output_hidden_states: bool = False,
                 seed: int | None = None, dtype=None, **kwargs):
        config = config if config is not None else GPT2Config.from_preset(DEFAULT_PRESET)
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}.")
        # One generator for every initializer: seeded models are reproducible,
        # and no two weights of the same shape come out equal.
        if isinstance(seed, str) and seed == NO_INIT:
            seed_gen = NO_INIT
        else:
            seed_gen = keras.random.SeedGenerator(seed) if seed is not None else None

        # === Layers ===
        self.embeddings = GPT2Embeddings(
            config.vocab_size, config.n_positions, config.n_embd, config.embd_pdrop,
            config.initializer_range, seed_gen, dtype=dtype, name="embeddings")
        self.position_ids = PositionIds(dtype=dtype, name="position_ids")
        self.attention_bias = AttentionBias(dtype=dtype, name="attention_bias")
        self.blocks = [GPT2Block(config, seed_gen, dtype=dtype, name=f"h_{i}")
                       for i in range(config.n_layer)]
        self.ln_f = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_epsilon, dtype=dtype, name="ln_f")

        # === Functional model ===
        inputs = self._symbolic_inputs()
        outputs = self._output_dict(self.forward(**inputs, output_hidden_states=output_hidden_states))
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.config = config
        self.output_hidden_states = output_hidden_states
        self._hidden_states_model = None

    @staticmethod
    def _symbolic_inputs():
        return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}

    # --- the network ---------------------------------------------------------
    def forward(self, input_ids, attention_mask, position_ids=None, caches=None,
                cache_index=None, output_hidden_states=False, training=None, run_block=None):
        """The GPT-2 forward pass.

        Without a cache, `attention_mask` [B, T] masks the input and positions
        are counted from it. With `caches` (a list of per-layer `(k, v)`, each
        [B * H, S, D]), the inputs are written at `cache_index`,
        `attention_mask` [B, S] masks the whole cache and `position_ids` [B, T]
        must be given.

        `run_block(block, hidden, bias, cache, cache_index)`, if given, runs
        each cached block in place of calling it (decode programs use it to
        trace one block graph for all layers).

        Returns `(last_hidden_state, hidden_states or None, new_caches or None)`;
        `hidden_states` follows transformers: the embeddings, each block's
        output, the last one after the final LayerNorm.
        """
        if position_ids is None:
            position_ids = self.position_ids(attention_mask)
        hidden = self.embeddings(input_ids, position_ids, training=training)
        bias = self.attention_bias(attention_mask, input_ids,
                                   query_offset=0 if cache_index is None else cache_index)
        all_hidden, new_caches = [hidden], []
        for i, block in enumerate(self.blocks):
            if caches is None:
                hidden = block(hidden, bias, training=training)
            elif run_block is not None:
                hidden, cache = run_block(block, hidden, bias, caches[i], cache_index)
                new_caches.append(cache)
            else:
                hidden, cache = block(hidden, bias, cache=caches[i], cache_index=cache_index,
                                      training=training)
                new_caches.append(cache)
            all_hidden.append(hidden)
        hidden = self.ln_f(hidden)
        all_hidden[-1] = hidden
        return (hidden, tuple(all_hidden) if output_hidden_states else None,
                new_caches if caches is not None else None)

    def lm_logits(self, hidden):
        """Logits [..., V] (float32) through the tied token embedding."""
        return self.embeddings(hidden, reverse=True)

    def _output_dict(self, forward_result):
        raise NotImplementedError

    # --- calling ---------------------------------------------------------------
    def __call__(self, inputs=None, attention_mask=None, *, input_ids=None,
                 output_hidden_states=None, training=None, **kwargs):
        """Accepts the ways the model card calls a model: `model(encoded)`,
        `model(**encoded)`, `model(ids)`, `model(ids, attention_mask=mask)`."""
        features = self._normalize_inputs(inputs, input_ids, attention_mask, kwargs)
        model = self
        if output_hidden_states and not self.output_hidden_states:
            model = self._with_hidden_states()
        return ModelOutput(keras.Model.__call__(model, features, training=training, **kwargs))

    def _with_hidden_states(self):
        """A functional model over the same layers that also returns every
        hidden state (built on first use)."""
        if self._hidden_states_model is None:
            inputs = self._symbolic_inputs()
            outputs = self._output_dict(self.forward(**inputs, output_hidden_states=True))
            self._hidden_states_model = keras.Model(inputs, outputs, name=f"{self.name}_all_hidden")
        return self._hidden_states_model

    def _normalize_inputs(self, inputs, input_ids, attention_mask, extra):
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - set(INPUT_NAMES))
            if unknown:
                raise ValueError(f"Unexpected inputs {unknown}; GPT-2 takes {list(INPUT_NAMES)}.")
            if input_ids is not None:
                raise ValueError("Pass input_ids either in the inputs dict or as a keyword, not both.")
            input_ids = inputs.get("input_ids")
            attention_mask = inputs.get("attention_mask", attention_mask)
        elif inputs is not None:
            if input_ids is not None:
                raise ValueError("Pass input_ids either positionally or as a keyword, not both.")
            input_ids = inputs
        for key in extra:
            if key not in ("mask",):
                raise TypeError(f"Unexpected keyword argument {key!r}.")
        if input_ids is None:
            raise ValueError("input_ids are required: a [batch, length] tensor of token ids.")
        input_ids = self._as_int_tensor(input_ids, "input_ids")
        if attention_mask is None:
            attention_mask = (keras.ops.ones_like(input_ids) if isinstance(input_ids, keras.KerasTensor)
                              else tf.ones_like(input_ids))
        attention_mask = self._as_int_tensor(attention_mask, "attention_mask")
        self._check_inputs(input_ids, attention_mask)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @staticmethod
    def _as_int_tensor(x, name):
        if isinstance(x, keras.KerasTensor):
            return x
        if not tf.is_tensor(x):
            array = np.asarray(x)
            if array.dtype == object or not (np.issubdtype(array.dtype, np.integer)
                                             or np.issubdtype(array.dtype, np.bool_)):
                raise TypeError(f"{name} must hold integers, got an array of {array.dtype}.")
            x = array
        elif not (x.dtype.is_integer or x.dtype == tf.bool):
            raise TypeError(f"{name} must hold integers, got a {x.dtype.name} tensor.")
        return tf.cast(x, "int32")

    def _check_inputs(self, input_ids, attention_mask):
        config = self.config
        ids_shape, mask_shape = tuple(input_ids.shape), tuple(attention_mask.shape)
        if len(ids_shape) != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {ids_shape}. "
                             "For one sequence, add a batch axis (e.g. ids[None]).")
        if len(mask_shape) != 2 or any(
                a is not None and b is not None and a != b for a, b in zip(ids_shape, mask_shape)):
            raise ValueError(f"attention_mask shape {mask_shape} must equal input_ids shape {ids_shape}.")
        length = ids_shape[1]
        if length is not None and length > config.n_positions:
            raise ValueError(f"Sequence length {length} exceeds the model's context "
                             f"n_positions={config.n_positions}; truncate the input.")
        if length == 0:
            raise ValueError("input_ids is empty (length 0); pass at least one token.")
        if _is_symbolic(input_ids) or _is_symbolic(attention_mask):
            return
        ids = input_ids.numpy()
        if ids.size and (ids.min() < 0 or ids.max() >= config.vocab_size):
            bad = ids[(ids < 0) | (ids >= config.vocab_size)]
            raise ValueError(f"Token ids must be in [0, {config.vocab_size}); found {bad[:5].tolist()}.")
        mask = attention_mask.numpy()
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1.")

    # --- config and checkpoints ------------------------------------------------
    def get_config(self):
        return {"config": self.config.to_dict(), "output_hidden_states": self.output_hidden_states,
                "name": self.name, "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config, seed: int | None = None, **kwargs):
        """`from_config(GPT2Config(...), seed=0)` builds a randomly initialised
        model (seeded if `seed` is given), as in transformers. A dict from
        `get_config()` is accepted too, for Keras deserialisation."""
        if isinstance(config, GPT2Config):
            return cls(config, seed=seed, **kwargs)
        config = dict(config)
        gpt2_config = GPT2Config.from_dict(config.pop("config"))
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(gpt2_config, seed=seed, **config, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike = DEFAULT_PRESET, **kwargs):
        """Load a checkpoint: a hub name (`gpt2-medium`, `org/name`), a
        Hugging Face directory (`model.safetensors`, possibly sharded) or an
        OpenAI directory (`model.ckpt*` + `hparams.json`)."""
        from tfgpt2.checkpoints import weights

        return weights.load_pretrained(cls, name_or_dir, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike, max_shard_size: int | str | None = None):
        """Write the Hugging Face layout (safetensors + config.json + vocab)."""
        from tfgpt2.checkpoints import weights

        weights.save_pretrained(self, directory, max_shard_size=max_shard_size)

    def num_parameters(self) -> int:
        return self.count_params()

    @property
    def tokenizer(self):
        """The tokenizer for string prompts: the checkpoint's vocabulary if
        it had one, else GPT-2's (shared by all released sizes)."""
        if getattr(self, "_tokenizer", None) is None:
            from tfgpt2.tokenizer.hf_api import GPT2Tokenizer

            source = getattr(self, "_pretrained_directory", None)
            has_vocab = source is not None and any(
                (source / name).is_file() for name in ("vocab.json", "encoder.json"))
            self._tokenizer = GPT2Tokenizer.from_pretrained(source if has_vocab else DEFAULT_PRESET)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value):
        self._tokenizer = value


@keras.saving.register_keras_serializable(package="tfgpt2")
class GPT2Model(GPT2PreTrainedModel):
    """GPT-2 without a head. Outputs `last_hidden_state` [B, T, C] and, with
    `output_hidden_states`, `hidden_states` (n_layer + 1 tensors)."""

    def _output_dict(self, forward_result):
        hidden, all_hidden, _ = forward_result
        outputs = {"last_hidden_state": hidden}
        if all_hidden is not None:
            outputs["hidden_states"] = all_hidden
        return outputs


@keras.saving.register_keras_serializable(package="tfgpt2")
class GPT2LMHeadModel(GPT2PreTrainedModel):
    """GPT-2 with the language-model head tied to the token embedding.
    Outputs `logits` [B, T, V] (float32) and `last_hidden_state`."""

    def generate(self, inputs=None, **kwargs):
        """Continue prompts with one XLA-compiled cached decoding loop.

        `inputs`: a string or list of strings (returns strings: prompt plus
        continuation), or token ids [batch, length] as a tf tensor or numpy
        array, with an optional `attention_mask` (returns ids: the prompt,
        left-padded, followed by the new tokens, in the same type).

        Settings (see `tfgpt2.generation.GenerationConfig`): `max_length`,
        `max_new_tokens`, `do_sample`, `temperature`, `top_k`, `top_p`,
        `num_beams`, `length_penalty`, `early_stopping`, `repetition_penalty`,
        `num_return_sequences`, `eos_token_id`, `stop_token_ids`,
        `pad_token_id`, `seed`, `truncate_prompt`; and `streamer`, a callable
        or a transformers-style object with `put`/`end` that receives each
        new token as it is produced.
        """
        from tfgpt2.generation.generate import generate

        return generate(self, inputs, **kwargs)

    def _output_dict(self, forward_result):
        hidden, all_hidden, _ = forward_result
        outputs = {"logits": self.lm_logits(hidden), "last_hidden_state": hidden}
        if all_hidden is not None:
            outputs["hidden_states"] = all_hidden
        return outputs


# The names transformers' TensorFlow classes had.
TFGPT2Model = GPT2Model
TFGPT2LMHeadModel = GPT2LMHeadModel
