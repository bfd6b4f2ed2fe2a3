"""The SavedModel for TF Serving: strings in, strings out, core TF ops only.

Every input of every signature has a leading batch dimension, so TF
Serving's server-side batching (`--enable_batching`, which concatenates
concurrent requests along dimension 0) can merge requests, and no signature
relies on `SignatureDef.defaults` (which servers before 2.14 do not fill).

Signatures:
- `serving_default`: `prompts` (string [B]) alone, with the serving
  defaults (`DEFAULTS`: the model card's top-k 50 sampling, 64 new tokens,
  a random seed) ->
  `generated_text` (string [B], the continuation only, cut before
  `<|endoftext|>`), `token_ids` (int32 [B, N], the new tokens, padded with
  50256 after each row's end; N is the longest row of the batch the server
  ran, so take a row's first `num_tokens`), `num_tokens` (int32 [B]).
- `generate`: `prompts` and one value per prompt of each setting:
  `max_new_tokens` (int32 [B]), `temperature` (float32 [B], 0: greedy),
  `top_k` (int32 [B], 0: off), `top_p` (float32 [B], 1: off), `seed` (int32
  [B], -1: random) -> the same outputs. Rows of one call may differ in every
  setting; each row's result depends on its own prompt, settings and seed
  only, so batched requests get what each would alone.
- `tokenize`: `texts` (string [B]) -> `token_ids` (int32 [B, T], padded with
  50256) and `lengths` (int32 [B]).
- `detokenize`: `token_ids` (int32 [B, T]) and `lengths` (int32 [B]) ->
  `texts` (string [B]).
- `logits`: `input_ids` and `attention_mask` (int32 [B, T]) -> `logits`
  (float32 [B, T, V]), for scoring clients.

Bad requests fail with INVALID_ARGUMENT naming the input, checked before any
work: an empty batch, settings whose length differs from the prompts',
NaN or out-of-range settings, a budget past the cache.

The decode loop is generate's own (`tfgpt2.generation.programs`), traced with
sizes left to run time; prompts are packed by generate's packer. By default
it is a plain TF graph (TF Serving runs it with its default flags, CPU or GPU
build): the KV cache is a buffer each run allocates and writes in place
(`owned_buffer_writes`), and the sampler is the per-row one, cheap op by op.
With `xla=True` the loop is one XLA program (`jit_compile`), for CPU servers
started with `--xla_cpu_compilation_enabled=true` and for
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
from tfgpt2.modeling.compiled import owned_buffer_writes

# What `serving_default` uses for every prompt: the model card pipeline's
# sampling (top-k 50) and a budget of 64 new tokens; seed -1 is random.
DEFAULTS = dict(max_new_tokens=64, temperature=1.0, top_k=50, top_p=1.0, seed=-1)
SETTINGS = tuple(DEFAULTS)
_DTYPES = dict(max_new_tokens=tf.int32, temperature=tf.float32, top_k=tf.int32,
               top_p=tf.float32, seed=tf.int32)


class ServingModule(ArtifactModule):
    """What the SavedModel holds: the weights, the tokenizer and the
    signature functions."""

    def __init__(self, model, *, cache_length: int | None = None, xla: bool = False):
        super().__init__(model, cache_length=cache_length, name="tfgpt2")
        self._programs = model.decode_programs
        self._key = ProgramKey(ProgramKind.LOOP, batch=None, prompt_length=None, new_tokens=None,
                               sampler=Sampler.per_request())
        body = lambda state, params: self._programs.token_loop(self._key, state, params)  # noqa: E731
        self._loop = xla_function(body) if xla else graph_function(body)
        self.xla = xla

    # --- serving_default and generate ---------------------------------------------------
    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="prompts")])
    def serve_prompts(self, prompts):
        batch = tf.shape(prompts)[:1]
        return self._generate(prompts, **{name: tf.fill(batch, tf.constant(value, _DTYPES[name]))
                                          for name, value in DEFAULTS.items()})

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None], tf.string, name="prompts"),
        *(tf.TensorSpec([None], _DTYPES[name], name=name) for name in SETTINGS)])
    def generate(self, prompts, max_new_tokens, temperature, top_k, top_p, seed):
        return self._generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed)

    def _checks(self, prompts, settings):
        """The request's checks, as asserts that fail with INVALID_ARGUMENT
        before any other op runs."""
        batch = tf.size(prompts)
        checks = [tf.debugging.Assert(batch > 0, [
            "prompts is empty: send at least one prompt (a batch of strings, shape [B])"])]
        for name, value in settings.items():
            checks.append(tf.debugging.Assert(tf.equal(tf.size(value), batch), [
                f"{name} must have one value per prompt; got this many values:", tf.size(value),
                "for this many prompts:", batch]))
        ranges = dict(
            max_new_tokens=(lambda v: (v >= 1) & (v < self.cache_length),
                            f"in [1, {self.cache_length}) (it must leave room for the prompt in "
                            f"the cache of {self.cache_length} tokens)"),
            temperature=(lambda v: v >= 0.0, "a number >= 0 (0: greedy)"),
            top_k=(lambda v: v >= 0, ">= 0 (0: off)"),
            top_p=(lambda v: (v > 0.0) & (v <= 1.0), "in (0, 1] (1: off)"))
        for name, (valid, what) in ranges.items():
            # NaN fails every comparison, so it is refused here too.
            checks.append(tf.debugging.Assert(tf.reduce_all(valid(settings[name])), [
                f"{name} must be {what}; got", settings[name]], summarize=16))
        return checks

    def _generate(self, prompts, **settings):
        cfg = self.config
        with tf.control_dependencies(self._checks(prompts, settings)):
            values, splits = self.tokenizer.encode_strings(prompts)
        budget = settings["max_new_tokens"]
        lengths = tf.cast(splits[1:] - splits[:-1], tf.int32)
        # A prompt longer than its budget allows keeps its last tokens. Each
        # row's room is its own, so a row packs the same alone or batched.
        room = self.cache_length - budget
        longest = tf.maximum(tf.reduce_max(tf.minimum(tf.maximum(lengths, 1), room)), 1)
        ids, mask = packing.left_pad(values, splits, packing.bucket_length(longest),
                                     cfg.eos_token_id, max_tokens=room)
        ids, mask = packing.start_empty_prompts(ids, mask, cfg.bos_token_id)

        seed = settings["seed"]
        random_seeds = tf.random.uniform(tf.shape(seed), maxval=2**31 - 1, dtype=tf.int32)
        seeds = tf.stack([tf.where(seed >= 0, seed, random_seeds), tf.zeros_like(seed)], axis=1)
        params = DecodeParams(
            max_new_tokens=budget,
            new_token_slots=packing.bucket_length(tf.reduce_max(budget)),
            length_penalty=tf.constant(1.0),
            stop_mask=tf.one_hot(cfg.eos_token_id, cfg.vocab_size, on_value=True, off_value=False),
            pad_token_id=tf.constant(cfg.eos_token_id),
            sampling=SamplingSettings.per_row(
                temperature=settings["temperature"], top_k=settings["top_k"],
                top_p=settings["top_p"], seeds=seeds))
        with owned_buffer_writes():  # each run's cache is its own buffer, written in place
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
        return {"serving_default": self.serve_prompts, "generate": self.generate,
                "tokenize": self.tokenize,
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
