"""The SavedModel for TF Serving: strings in, strings out, core TF ops only.

Signatures:
- `serving_default`: `prompts` (string [B]) and optional scalars
  `max_new_tokens`, `temperature`, `top_k`, `top_p`, `seed` (their defaults
  are stored in the signature, which TF Serving fills in) ->
  `generated_text` (string [B], the continuation only, cut before
  `<|endoftext|>`), `token_ids` (int32 [B, N], the new tokens, padded with
  50256 after the end), `num_tokens` (int32 [B]).
- `tokenize`: `texts` (string [B]) -> `token_ids` (int32 [B, T], padded with
  50256) and `lengths` (int32 [B]).
- `detokenize`: `token_ids` (int32 [B, T]) and `lengths` (int32 [B]) ->
  `texts` (string [B]).
- `logits`: `input_ids` and `attention_mask` (int32 [B, T]) -> `logits`
  (float32 [B, T, V]), for scoring clients.

The decode loop is generate's own (`tfgpt2.generation.programs`), traced with
sizes left to run time; prompts are packed by generate's packer. By default
it is a plain TF graph (TF Serving runs it with its default flags, CPU or GPU
build); with `xla=True` the loop is one XLA program (`jit_compile`), for CPU
servers started with `--xla_cpu_compilation_enabled=true` and for
`tf.saved_model.load`.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tfgpt2.export import writing
from tfgpt2.export.target import ArtifactModule, ExportTarget, log
from tfgpt2.generation import packing
from tfgpt2.generation.programs import (DecodeParams, ProgramKey, ProgramKind, graph_function,
                                        xla_function)
from tfgpt2.generation.sampling import Sampler, SamplingSettings

# The serving defaults, stored in the signature: the model card pipeline's
# sampling (top-k 50) and a budget of 64 new tokens.
DEFAULTS = dict(max_new_tokens=64, temperature=1.0, top_k=50, top_p=1.0, seed=-1)


class ServingModule(ArtifactModule):
    """What the SavedModel holds: the weights, the tokenizer and the
    signature functions."""

    def __init__(self, model, *, cache_length: int | None = None, xla: bool = False):
        super().__init__(model, cache_length=cache_length, name="tfgpt2")
        self._programs = model.decode_programs
        self._key = ProgramKey(ProgramKind.LOOP, batch=None, prompt_length=None, new_tokens=None,
                               sampler=Sampler.at_run_time())
        body = lambda state, params: self._programs.token_loop(self._key, state, params)  # noqa: E731
        self._loop = xla_function(body) if xla else graph_function(body)
        self.xla = xla

    # --- serving_default --------------------------------------------------------------
    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None], tf.string, name="prompts"),
        tf.TensorSpec([], tf.int32, name="max_new_tokens"),
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int32, name="top_k"),
        tf.TensorSpec([], tf.float32, name="top_p"),
        tf.TensorSpec([], tf.int32, name="seed")])
    def generate(self, prompts, max_new_tokens=tf.constant(DEFAULTS["max_new_tokens"]),
                 temperature=tf.constant(DEFAULTS["temperature"]),
                 top_k=tf.constant(DEFAULTS["top_k"]), top_p=tf.constant(DEFAULTS["top_p"]),
                 seed=tf.constant(DEFAULTS["seed"])):
        cfg = self.config
        checks = [
            tf.debugging.assert_greater_equal(
                max_new_tokens, 1, message="max_new_tokens must be >= 1"),
            tf.debugging.assert_less(
                max_new_tokens, self.cache_length,
                message=f"max_new_tokens must leave room for the prompt in the cache of "
                        f"{self.cache_length} tokens"),
            tf.debugging.assert_greater_equal(temperature, 0.0, message="temperature must be >= 0"),
            tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0 (0: off)"),
            tf.debugging.assert_greater(top_p, 0.0, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
        ]
        with tf.control_dependencies(checks):
            values, splits = self.tokenizer.encode_strings(prompts)
        lengths = tf.cast(splits[1:] - splits[:-1], tf.int32)
        # A prompt longer than the cache allows keeps its last tokens.
        room = self.cache_length - max_new_tokens
        longest = tf.minimum(tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], 0)), 1), room)
        ids, mask = packing.left_pad(values, splits, packing.bucket_length(longest),
                                     cfg.eos_token_id, max_tokens=room)
        ids, mask = packing.start_empty_prompts(ids, mask, cfg.bos_token_id)

        random_seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
        params = DecodeParams(
            max_new_tokens=max_new_tokens,
            new_token_slots=packing.bucket_length(max_new_tokens),
            length_penalty=tf.constant(1.0),
            stop_mask=tf.one_hot(cfg.eos_token_id, cfg.vocab_size, on_value=True, off_value=False),
            pad_token_id=tf.constant(cfg.eos_token_id),
            sampling=SamplingSettings.of(
                temperature=temperature, top_k=top_k, top_p=top_p,
                seed=tf.where(seed >= 0, tf.stack([seed, 0]), random_seed)))
        state = self._programs.prefill_and_choose(self._key, ids, mask, params)
        out, steps = self._loop(state, params)
        out = out[:, :steps]
        num_tokens = packing.tokens_before_stop(out, params.stop_mask)
        kept = tf.sequence_mask(num_tokens, tf.shape(out)[1])
        ragged = tf.RaggedTensor.from_tensor(out, lengths=num_tokens)
        text = self.tokenizer.decode_strings(ragged.values, tf.cast(ragged.row_splits, tf.int64))
        token_ids = tf.where(tf.logical_or(kept, tf.equal(out, cfg.eos_token_id)), out,
                             cfg.eos_token_id)
        return {"generated_text": text, "token_ids": token_ids, "num_tokens": num_tokens}

    # --- the other signatures -------------------------------------------------------------
    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def tokenize(self, texts):
        values, splits = self.tokenizer.encode_strings(texts)
        ragged = tf.RaggedTensor.from_row_splits(values, splits, validate=False)
        return {"token_ids": ragged.to_tensor(default_value=self.config.eos_token_id),
                "lengths": tf.cast(ragged.row_lengths(), tf.int32)}

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None], tf.int32, name="token_ids"),
        tf.TensorSpec([None], tf.int32, name="lengths")])
    def detokenize(self, token_ids, lengths):
        ragged = tf.RaggedTensor.from_tensor(token_ids, lengths=lengths)
        return {"texts": self.tokenizer.decode_strings(ragged.values,
                                                       tf.cast(ragged.row_splits, tf.int64))}

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None], tf.int32, name="input_ids"),
        tf.TensorSpec([None, None], tf.int32, name="attention_mask")])
    def logits(self, input_ids, attention_mask):
        hidden, _, _ = self.forward(input_ids, attention_mask)
        return {"logits": self.lm_logits(hidden)}

    def signatures(self) -> dict:
        return {"serving_default": self.generate, "tokenize": self.tokenize,
                "detokenize": self.detokenize, "logits": self.logits}



class SavedModelTarget(ExportTarget):
    """`format="tf_saved_model"`: the SavedModel at `path`, or TF Serving's
    layout `path/<version>/` when `version` is given."""

    format = "tf_saved_model"
    options = ("version", "cache_length", "xla")

    def write(self, model, path: Path, *, overwrite: bool, version: int | None = None,
              cache_length: int | None = None, xla: bool = False) -> Path:
        if version is not None and (not isinstance(version, int) or version < 0):
            raise ValueError(f"The TF Serving version must be an int >= 0, got {version!r}.")
        target = path if version is None else path / str(version)
        writing.claim(target, overwrite)  # before tracing: a refusal costs nothing
        module = ServingModule(model, cache_length=cache_length, xla=xla)
        with writing.directory_in_place(target, overwrite) as built:
            log.info("Tracing and saving the SavedModel (%s) ...", "XLA loop" if xla else "no XLA")
            tf.saved_model.save(module, str(built), signatures=module.signatures())
            (built / "assets").mkdir(exist_ok=True)  # TF Serving's layout has it, even empty
        return target
