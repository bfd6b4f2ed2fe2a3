"""GPT-2 as Keras functional models: `GPT2Model` (features) and
`GPT2LMHeadModel` (logits through the tied embedding).

Both are built from the layers in `layers.py` by one method, `forward`, which
is also what cached decoding (`tfgpt2.generation.programs`) calls with a KV
cache: one definition of the network for training, scoring and generation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import keras

from tfgpt2.config import DEFAULT_PRESET, GPT2Config
from tfgpt2.modeling import inputs as input_checks
from tfgpt2.modeling import precision, quantization
from tfgpt2.modeling.kv_cache import KVCache
from tfgpt2.modeling.layers import (AttentionBias, GPT2Block, GPT2Embeddings, Linear,
                                    PositionIds, call_block, initializers)
from tfgpt2.outputs import ModelOutput

INPUT_NAMES = ("input_ids", "attention_mask")


class GPT2PreTrainedModel(keras.Model):
    """Shared structure of the GPT-2 models: layers, forward pass, checkpoint IO."""

    def __init__(self, config: GPT2Config | None = None, *, output_hidden_states: bool = False,
                 seed: int | None = None, initialize: bool = True, dtype=None, **kwargs):
        """Args:
          config: the sizes (`GPT2Config`); default GPT-2 Medium's.
          output_hidden_states: also output every block's hidden state.
          seed: seeds the random initialisation (None: unseeded).
          initialize: False builds zero weights, for a checkpoint to overwrite.
          dtype: a Keras dtype policy: "bfloat16" for bf16 inference (half the
            memory; `tfgpt2.modeling.precision`), "mixed_bfloat16" for training.
        """
        config = config if config is not None else GPT2Config.from_preset(DEFAULT_PRESET)
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}.")
        init = initializers(config, seed, initialize)

        # === Layers ===
        self.embeddings = GPT2Embeddings(
            config.vocab_size, config.n_positions, config.n_embd, config.embd_pdrop,
            init["kernel"], dtype=dtype, name="embeddings")
        self.position_ids = PositionIds(dtype=dtype, name="position_ids")
        self.attention_bias = AttentionBias(dtype=dtype, name="attention_bias")
        self.blocks = [GPT2Block(config, init["kernel"], init["projection"], dtype=dtype,
                                 name=f"h_{i}") for i in range(config.n_layer)]
        self.ln_f = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_epsilon, dtype=dtype, name="ln_f")

        # === Functional model ===
        inputs = self._symbolic_inputs()
        outputs = self._output_dict(self.forward(**inputs, output_hidden_states=output_hidden_states))
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config and state ===
        self.config = config
        self.output_hidden_states = output_hidden_states
        self._hidden_states_model = None  # built on first output_hidden_states=True call
        self._tokenizer = None  # built on first use of `tokenizer`
        self._pretrained_directory = None  # set by from_pretrained: where the vocabulary is
        self._decode_programs = None  # tfgpt2.generation's compiled programs, on first use
        self._quantization_mode = None  # "int8" after quantize("int8")
        # Keras wraps every layer's `quantize` to resolve its own modes and
        # configs first; the model checks its one mode itself (the layers'
        # wrappers stay: they unlock each layer's variable tracker).
        vars(self).pop("quantize", None)

    @staticmethod
    def _symbolic_inputs():
        return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}

    # --- the network ---------------------------------------------------------
    def forward(self, input_ids, attention_mask, position_ids=None, cache=None,
                cache_index=None, output_hidden_states=False, training=None, block_runner=None,
                key_limit=None):
        """The GPT-2 forward pass.

        Without a cache, `attention_mask` [B, T] masks the input and positions
        are counted from it. With `cache` (a `KVCache`), the inputs are
        written at `cache_index`,
        `attention_mask` [B, S] masks the whole cache and `position_ids` [B, T]
        must be given. `key_limit`: attention reads only the cache's first
        `key_limit` positions, so a fixed-size cache costs what it holds (the
        `.tflite`'s decode windows).

        `block_runner(block, hidden, bias, cache, cache_index, training)` runs
        each block and returns `(hidden, new cache or None)`; the default
        calls the block. Decode programs pass one that traces a single block
        graph for all layers (`SharedBlockGraph`).

        Returns `(last_hidden_state, hidden_states or None, the new KVCache or None)`;
        `hidden_states` follows transformers: the embeddings, each block's
        output, the last one after the final LayerNorm.
        """
        if position_ids is None:
            position_ids = self.position_ids(attention_mask)
        hidden = self.embeddings(input_ids, position_ids, training=training)
        query_offset = 0 if cache_index is None else cache_index
        bias = self.attention_bias(attention_mask, input_ids, query_offset=query_offset)
        if block_runner is not None and key_limit is not None:
            raise ValueError("A custom block_runner reads the whole cache; key_limit runs the "
                             "blocks themselves.")
        if key_limit is not None:
            bias = bias[..., :key_limit]
        run = block_runner or functools.partial(call_block, key_limit=key_limit)
        all_hidden, new_layers = [hidden], []
        for i, block in enumerate(self.blocks):
            hidden, layer_cache = run(block, hidden, bias, None if cache is None else cache.layer(i),
                                      cache_index, training)
            new_layers.append(layer_cache)
            all_hidden.append(hidden)
        hidden = self.ln_f(hidden)
        all_hidden[-1] = hidden
        return (hidden, tuple(all_hidden) if output_hidden_states else None,
                KVCache.from_layers(new_layers) if cache is not None else None)

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
        input_ids, attention_mask = input_checks.validate(
            input_ids, attention_mask, self.config.vocab_size, max_length=self.config.n_positions)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # --- quantization -----------------------------------------------------------
    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Keras 3's `Model.quantize`: `"int8"` stores every weight matmul's
        kernel (and the tied token embedding, i.e. the LM head) as int8
        with one float scale per output channel; activations, biases,
        LayerNorms and the position embedding stay float.
        `tfgpt2.modeling.quantization` gives the rule, docs/quantization.md
        the drift and speed.

        Afterwards `generate` (every decoding mode) and scoring work;
        training, `save_pretrained` and `export` are refused, and so is a
        second `quantize`. Keras' `config` and `filters` are not supported.

        Example:
            model = GPT2LMHeadModel.from_pretrained("gpt2-medium")
            model.quantize("int8")
            model.generate("The meaning of life is", max_new_tokens=40)
        """
        if config is not None or filters is not None or kwargs:
            raise ValueError("quantize() takes only the mode here (e.g. quantize(\"int8\")); "
                             "Keras' config, filters and other options are not supported.")
        quantization.check_mode(mode, self._quantization_mode)
        if precision.computes_in_bfloat16(self):
            raise ValueError(
                "quantize() works on a float32 model; this one computes in bfloat16. Load the "
                "checkpoint without dtype= (float32) to quantize it, or keep bfloat16.")
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, (Linear, GPT2Embeddings)):
                layer.quantize(mode)
        self._quantization_mode = mode
        # Programs traced before read the float variables, which are gone.
        self._decode_programs = None
        self.train_function = self.test_function = self.predict_function = None
        from tfgpt2.evaluation import scoring

        scoring.forget_programs(self)

    @property
    def weight_quantization(self):
        """None for float weights, else the mode given to `quantize`. (Not
        Keras' `quantization_mode`, which reads the dtype policy and would
        route every call through Keras' own quantized layers.)"""
        return self._quantization_mode

    def fit(self, *args, **kwargs):
        quantization.refuse_if_quantized(self, "train it (fit)")
        return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        quantization.refuse_if_quantized(self, "train it (train_on_batch)")
        return super().train_on_batch(*args, **kwargs)

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

        model, directory = weights.load_pretrained(cls, name_or_dir, **kwargs)
        model._pretrained_directory = directory  # where `tokenizer` looks first
        return model

    def save_pretrained(self, directory: str | os.PathLike, max_shard_size: int | str | None = None):
        """Write the Hugging Face layout (safetensors + config.json + vocab)."""
        from tfgpt2.checkpoints import weights

        quantization.refuse_if_quantized(self, "save it with save_pretrained")
        weights.save_pretrained(self, directory, max_shard_size=max_shard_size)

    def num_parameters(self) -> int:
        return self.count_params()

    @property
    def tokenizer(self):
        """The tokenizer for string prompts: the checkpoint's vocabulary if
        it had one, else GPT-2's (shared by all released sizes)."""
        if self._tokenizer is None:
            from tfgpt2.tokenizer.hf_api import GPT2Tokenizer

            source = self._pretrained_directory
            has_vocab = source is not None and any(
                (source / name).is_file() for name in ("vocab.json", "encoder.json"))
            # None: GPT-2's vocabulary from the offline copy, never a same-named
            # directory in the working directory (a save into `gpt2-medium/`).
            self._tokenizer = GPT2Tokenizer.from_pretrained(source if has_vocab else None)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value):
        self._tokenizer = value

    @property
    def decode_programs(self):
        """The compiled generation programs of this model, built on first use
        and kept: a shape bucket compiles once per model."""
        if self._decode_programs is None:
            from tfgpt2.generation.programs import DecodePrograms

            self._decode_programs = DecodePrograms(self)
        return self._decode_programs


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

        Args:
          inputs: a string or a list of strings, or token ids [batch, length]
            (a tf tensor, numpy array or nested list; left or right padded
            rows with an `attention_mask`). An empty prompt starts from
            `<|endoftext|>`, as transformers does. `input_ids=` works too.
          attention_mask: for token ids: 1 on real tokens, 0 on padding.
          streamer: receives each new token as it is produced: a callable
            taking the [batch] token ids, or a transformers-style object
            with `put`/`end` such as `tfgpt2.TextStreamer` (one prompt).
          generation_config: a `GenerationConfig`; keyword settings override it.
          **settings: any `GenerationConfig` field (`max_new_tokens`,
            `do_sample`, `temperature`, `top_k`, `top_p`, `num_beams`,
            `repetition_penalty`, `num_return_sequences`, `seed`, ...), each
            documented there.

        Returns:
          For a string, a string: the prompt followed by the continuation,
          cut before the first stop token. For a list of strings, a list
          (`num_return_sequences` per prompt, in prompt order). For ids,
          ids of the same type [batch * num_return_sequences, length +
          new]: each prompt left-padded with `pad_token_id`, then the new
          tokens (padded after a stop token).

        Example:
            model = GPT2LMHeadModel.from_pretrained("gpt2-medium")
            model.generate("The meaning of life is", max_new_tokens=40,
                           do_sample=True, top_p=0.9, seed=0)
            model.generate(["First prompt", "A second"], max_new_tokens=20, num_beams=4)
        """
        from tfgpt2.generation.generate import generate

        return generate(self, inputs, **kwargs)

    def export(self, filepath, format="tf_saved_model", verbose=None,  # noqa: A002 -- Keras' name
               input_signature=None, **kwargs):
        """Keras 3's `Model.export`, giving the deployable artifacts for its
        `"tf_saved_model"` and `"litert"` formats (and `"litertlm"`, the
        LiteRT-LM bundle, also what `"litert"` writes to a `.litertlm` path):
        the tokenizer inside, strings in and out (`tfgpt2.export.export`
        documents the options).
        Other formats (`"onnx"`, `"openvino"`, ...) go to Keras, which writes
        the forward pass alone (ids in, logits out).

        Example:
            model.export("serving/gpt2-medium", format="tf_saved_model", version=1)
            model.export("gpt2-medium.int8.tflite", format="litert")
            model.export("gpt2-medium.int8.litertlm", format="litert")
        """
        from tfgpt2 import export as exporting

        if format not in exporting.FORMATS:
            quantization.refuse_if_quantized(self, "export it")
            return super().export(filepath, format=format, verbose=verbose,
                                  input_signature=input_signature, **kwargs)
        if input_signature is not None:
            raise ValueError(f"format={format!r} artifacts take strings (their signatures are "
                             "fixed); input_signature does not apply.")
        path = exporting.export(self, filepath, format=format, **kwargs)
        if verbose or verbose is None:
            print(f"Saved the {format} artifact at {path}.")
        return path

    def _output_dict(self, forward_result):
        hidden, all_hidden, _ = forward_result
        outputs = {"logits": self.lm_logits(hidden), "last_hidden_state": hidden}
        if all_hidden is not None:
            outputs["hidden_states"] = all_hidden
        return outputs

    # --- Keras compile / fit -----------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """`keras.Model.compile`; without a `loss`, the causal-LM loss
        (`CausalLMLoss`), as keras-hub's `GPT2CausalLM` does."""
        if loss is None:
            from tfgpt2.modeling.losses import CausalLMLoss

            loss = CausalLMLoss()
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras `fit`/`evaluate` on token ids: without `y`, the labels are
        the input ids (the loss shifts them) and the attention mask is the
        sample weight; the compiled loss sees the `logits` output."""
        if y is None:
            features = x if isinstance(x, Mapping) else {"input_ids": x}
            y = features["input_ids"]
            if sample_weight is None:
                sample_weight = features.get("attention_mask")
        if isinstance(y_pred, Mapping):
            y_pred = y_pred["logits"]
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)


# The names transformers' TensorFlow classes had.
TFGPT2Model = GPT2Model
TFGPT2LMHeadModel = GPT2LMHeadModel
