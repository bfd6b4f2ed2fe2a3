"""The `.tflite` for LiteRT: builtins only (no Flex delegate, no custom ops),
one file with the weights once and these signatures:

- `tokenize`: `bytes` (int32 [N], UTF-8 bytes) -> `ids` (int32 [M]).
- `detokenize`: `ids` (int32 [N]) -> `bytes` (int32 [M], UTF-8; invalid
  sequences become U+FFFD).
- `prefill`: `ids` (int32 [1, T]) and the sampling inputs -> `next_token`
  (int32 [1]), `logits` (float32 [1, V], the last position's), `keys` and
  `values` (float32 [L, H, T, D]: every layer's cache for positions 0..T-1).
- `decode`: `token` (int32 [1]), `position` (int32 [1], the token's index in
  the cache), `keys_<i>` / `values_<i>` (float32 [H, S, D] for each layer i:
  the cache, S >= position; only positions < `position` are read) and the
  sampling inputs -> `next_token`, `logits`, `new_keys` / `new_values`
  (float32 [L, H, D]: the token's own keys and values).
- `metadata`: no inputs -> the sizes a runtime needs (`n_layer`, `n_head`,
  `head_dim`, `vocab_size`, `cache_length`, `eos_token_id`).

Sampling inputs: `temperature` (float32 [], 0: greedy), `top_k` (int32 [],
0: off), `top_p` (float32 [], 1: off), `seed` (int32 [2]: the same seed and
step give the same token).

The runtime owns the cache: it keeps one buffer per layer for keys and for
values, writes prefill's `keys`/`values` into positions 0..T-1, and after
each decode writes `new_keys`/`new_values` at `position`. A decode step thus
never copies the cache (at 1024 positions GPT-2 Medium's is ~200 MB, more than
its int8 weights). `tfgpt2.export.litert_runner` is that runtime in Python.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tfgpt2.export import writing
from tfgpt2.files import atomic_path
from tfgpt2.export.target import ArtifactModule, ExportTarget, log
from tfgpt2.generation.sampling import Sampler, SamplingSettings
from tfgpt2.modeling.kv_cache import KVCache
from tfgpt2.modeling.masking import position_ids

QUANTIZATIONS = ("none", "float16", "int8")
FLATBUFFER_LIMIT = 2 * 1024**3  # a .tflite is one FlatBuffer: 2 GiB at most
_BYTES_PER_WEIGHT = {"none": 4.0, "float16": 2.0, "int8": 1.0}


def estimated_size(config, quantization: str) -> int:
    """Bytes of the weights in the file (the tokenizer adds a few MB)."""
    return int(config.num_parameters() * _BYTES_PER_WEIGHT[quantization])


def check_fits(config, quantization: str, name: str = "this model") -> None:
    """A clear error, before a long conversion, when the file would pass the
    FlatBuffer limit, naming the quantisations that fit."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}.")
    margin = 64 * 1024**2
    if estimated_size(config, quantization) + margin <= FLATBUFFER_LIMIT:
        return
    fits = [q for q in QUANTIZATIONS if estimated_size(config, q) + margin <= FLATBUFFER_LIMIT]
    gib = estimated_size(config, quantization) / 1024**3
    raise ValueError(
        f"{name} with quantization={quantization!r} needs ~{gib:.1f} GiB, over the 2 GiB limit "
        f"of a .tflite file; use --quantization={fits[0] if fits else 'int8'}"
        + (f" (fits: {', '.join(fits)})." if fits else "."))


class LiteRTModule(ArtifactModule):
    """The functions converted into the `.tflite` (see the module docstring)."""

    SAMPLER = Sampler.at_run_time()

    def __init__(self, model, cache_length: int | None = None):
        super().__init__(model, cache_length=cache_length, name="tfgpt2_litert")
        config = self.config
        layers, heads, depth = config.n_layer, config.n_head, config.head_dim
        settings = [tf.TensorSpec([], tf.float32, name="temperature"),
                    tf.TensorSpec([], tf.int32, name="top_k"),
                    tf.TensorSpec([], tf.float32, name="top_p"),
                    tf.TensorSpec([2], tf.int32, name="seed")]
        # The converter names each signature after its function.
        self.tokenize = tf.function(_named(self._tokenize, "tokenize"), autograph=False,
                                    input_signature=[tf.TensorSpec([None], tf.int32, name="bytes")])
        self.detokenize = tf.function(_named(self._detokenize, "detokenize"), autograph=False,
                                      input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
        self.prefill = tf.function(_named(self._prefill, "prefill"), autograph=False,
                                   input_signature=[tf.TensorSpec([1, None], tf.int32, name="ids"),
                                                    *settings])
        cache = ([tf.TensorSpec([heads, None, depth], tf.float32, name=f"keys_{i}")
                  for i in range(layers)]
                 + [tf.TensorSpec([heads, None, depth], tf.float32, name=f"values_{i}")
                    for i in range(layers)])
        self.decode = tf.function(_named(self._decode, "decode"), autograph=False, input_signature=[
            tf.TensorSpec([1], tf.int32, name="token"),
            tf.TensorSpec([1], tf.int32, name="position"), *settings, *cache])
        self.metadata = tf.function(_named(self._metadata, "metadata"), autograph=False,
                                    input_signature=[])

    def _tokenize(self, byte_values):
        def encode():
            return self.tokenizer._encode_bytes(byte_values,
                                                 tf.stack([0, tf.size(byte_values)]))[0]

        # LiteRT's kernels refuse some empty tensors inside the tokenizer.
        return {"ids": _unless_empty(byte_values, encode)}

    def _detokenize(self, ids):
        def decode():
            return self.tokenizer._decode_bytes(ids, tf.stack([0, tf.size(ids)]))[0]

        return {"bytes": _unless_empty(ids, decode)}

    def _choose(self, logits, temperature, top_k, top_p, seed):
        # The seed input already holds (seed, step): the runner advances it.
        settings = SamplingSettings.of(temperature=temperature, top_k=top_k, top_p=top_p,
                                       seed=seed)
        return self.SAMPLER.choose(logits, settings, step=0)

    def _prefill(self, ids, temperature, top_k, top_p, seed):
        mask = tf.ones_like(ids)
        hidden, _, cache = self.forward(ids, mask, position_ids(mask),
                                        self.empty_cache(1, tf.shape(ids)[1]), cache_index=0)
        logits = self.lm_logits(hidden[:, -1:])[:, 0]
        keys, values = cache.stacked()
        return {"next_token": self._choose(logits, temperature, top_k, top_p, seed),
                "logits": logits, "keys": keys, "values": values}

    def _decode(self, token, position, temperature, top_k, top_p, seed, *cache):
        layers = self.config.n_layer
        cache = KVCache(tuple(cache[:layers]), tuple(cache[layers:]))
        length = tf.shape(cache.keys[0])[1]
        hidden, _, new = self.forward(
            token[None], tf.ones([1, length], tf.int32), position[None], cache,
            cache_index=position[0], cache_write=False)
        logits = self.lm_logits(hidden)[:, 0]
        new_keys, new_values = new.stacked()
        return {"next_token": self._choose(logits, temperature, top_k, top_p, seed),
                "logits": logits, "new_keys": new_keys[:, :, 0], "new_values": new_values[:, :, 0]}

    def _metadata(self):
        cfg = self.config
        return {name: tf.constant(value, tf.int32) for name, value in (
            ("n_layer", cfg.n_layer), ("n_head", cfg.n_head), ("head_dim", cfg.head_dim),
            ("vocab_size", cfg.vocab_size), ("cache_length", self.cache_length),
            ("eos_token_id", cfg.eos_token_id))}

    def functions(self):
        return [self.tokenize, self.detokenize, self.prefill, self.decode, self.metadata]


def _unless_empty(values, fn):
    """fn() for a non-empty input, else an empty int32 vector."""
    return tf.cond(tf.size(values) > 0, fn, lambda: tf.zeros([0], tf.int32))


def _named(fn, name: str):
    def named(*args):
        return fn(*args)

    named.__name__ = named.__qualname__ = name
    return named


def convert(model, *, quantization: str = "int8", cache_length: int | None = None) -> bytes:
    """The `.tflite` bytes (builtins only)."""
    check_fits(model.config, quantization)
    module = LiteRTModule(model, cache_length)
    functions = [f.get_concrete_function() for f in module.functions()]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":  # dynamic range: int8 weights, float activations
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


class LiteRTTarget(ExportTarget):
    """`format="litert"`: the `.tflite` file at `path`."""

    format = "litert"
    options = ("quantization", "cache_length")

    def write(self, model, path: Path, *, overwrite: bool, quantization: str = "int8",
              cache_length: int | None = None) -> Path:
        writing.claim(path, overwrite)  # before converting: a refusal costs nothing
        log.info("Converting to TFLite (quantization=%s); GPT-2 Medium takes a few minutes ...",
                 quantization)
        data = convert(model, quantization=quantization, cache_length=cache_length)
        writing.claim(path, overwrite)  # again: the conversion took minutes
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path
