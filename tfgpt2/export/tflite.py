"""The `.tflite` for LiteRT: builtins only (no Flex delegate, no custom ops),
static shapes everywhere (LiteRT.js and GPU delegates refuse dynamic ones),
one file with the weights once. Its model signatures follow LiteRT-LM's
contract, so the same file runs in the stock LiteRT-LM runtime (packed as a
`.litertlm`, `tfgpt2.export.litertlm`), in LiteRT.js and in
`tfgpt2.export.litert_runner`. S is the cache length, H heads of size D,
V the vocabulary:

- `prefill_<T>` for each T in `prefill_lengths` (a few fixed sizes):
  `tokens` (int32 [1, T]), `input_pos` (int32 [T]: the tokens' positions,
  consecutive from `input_pos[0]`; padding may hold anything) and the cache
  -> the cache, with the T tokens' keys and values written at positions
  `input_pos[0]` .. `input_pos[0] + T - 1`. `input_pos[0] + T <= S` is the
  caller's to keep: a runtime picks a shorter prefill near the end.
- `decode`: `tokens` (int32 [1, 1]), `input_pos` (int32 [1]) and the cache
  -> `logits` (float32 [1, 1, V]) and the cache with the token written at
  `input_pos[0]` (< S). It attends to positions <= `input_pos[0]`.
- `decode_<W>` for each W in `DECODE_WINDOWS` below S: the same, reading
  only the cache's first W positions, for `input_pos[0] < W` (a runtime
  that picks the smallest such W reads the cache no further than needed;
  LiteRT-LM runs `decode`).
- the cache: `kv_cache_k_<i>` and `kv_cache_v_<i>` (float32 [1, H, S, D]) for
  each layer i, inputs and outputs of the same name. Each is written by one
  DYNAMIC_UPDATE_SLICE straight from the input to the output, so a runtime
  that binds one buffer to both (LiteRT-LM, our runner) never copies it.
  Slots not yet written must hold finite numbers (zeros at the start).
- `sample`: `logits` (float32 [1, 1, V]), `temperature` (float32 [], 0:
  greedy), `top_k` (int32 [], 0: off), `top_p` (float32 [] in (0, 1], 1: off),
  `seed` (int32 [2]: the seed and the step; the same pair gives the same
  token) -> `next_token` (int32 [1]): `GPT2LMHeadModel.generate`'s sampler.
- `tokenize`: `bytes` (int32 [TOKENIZE_BYTES], UTF-8 bytes, zero-padded) and
  `length` (int32 [], the bytes used) -> `ids` (int32 [TOKENIZE_BYTES], -1
  past the last id) and `count` (int32 []).
- `detokenize`: `ids` (int32 [DETOKENIZE_IDS]) and `count` (int32 [], the ids
  used) -> `bytes` (int32 [DETOKENIZE_IDS * max_token_bytes], -1 past the last
  byte) and `length` (int32 []). Raw bytes: a token may end inside a UTF-8
  character, so the bytes of consecutive calls concatenate; decode them as
  UTF-8 with replacement (`TextDecoder`, `bytes.decode(errors="replace")`).
- `metadata`: no inputs -> `sizes` (int32 [9]): `METADATA_FIELDS` in order
  (`n_layer`, `n_head`, `head_dim`, `vocab_size`, `cache_length`,
  `eos_token_id`, `tokenize_bytes`, `detokenize_ids`, `max_token_bytes`). One
  vector, since the converter merges equal constant outputs into one name.

Out-of-range inputs (a position past the cache, a prefill running past it,
a length past its buffer, an id outside the vocabulary, a sampling value out
of range) are the runner's to refuse before a call: the graph clamps indices
so that no input reads or writes out of bounds, but its answer is then
meaningless. `tfgpt2.export.litert_runner` checks them all.
"""

from __future__ import annotations

import functools
from pathlib import Path

import tensorflow as tf

from tfgpt2.export import writing
from tfgpt2.export.litert_names import METADATA_FIELDS, cache_names
from tfgpt2.files import atomic_path
from tfgpt2.export.target import ArtifactModule, ExportTarget, log
from tfgpt2.generation.sampling import Sampler, SamplingSettings
from tfgpt2.modeling.compiled import in_place_writes
from tfgpt2.modeling.kv_cache import KVCache

QUANTIZATIONS = ("none", "float16", "int8")
FLATBUFFER_LIMIT = 2 * 1024**3  # a .tflite is one FlatBuffer: 2 GiB at most
_BYTES_PER_WEIGHT = {"none": 4.0, "float16": 2.0, "int8": 1.0}
# Prefill sizes: a short prompt pays for at most 16 rows, a long one runs in
# a few large steps (capped at the cache length). BENCHMARKS.md has the
# time to first token they give.
PREFILL_LENGTHS = (16, 128, 512)
TOKENIZE_BYTES = 8192  # a prompt's UTF-8 bytes: 1024 tokens at 8 bytes each
DETOKENIZE_IDS = 64  # ids per detokenize call; longer sequences take several
# decode_<W> attends to the cache's first W positions only: at 1024
# positions GPT-2 Medium's fp32 cache is ~200 MB, and `decode` reading all
# of it every step costs more than the int8 weights (a slice of dynamic
# size would make every later tensor dynamic and leave XNNPACK unused).
DECODE_WINDOWS = (128, 256, 512)


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

    def __init__(self, model, cache_length: int | None = None,
                 prefill_lengths: tuple[int, ...] = PREFILL_LENGTHS):
        super().__init__(model, cache_length=cache_length, name="tfgpt2_litert")
        cfg, length = self.config, self.cache_length
        self.prefill_lengths = tuple(sorted({min(int(t), length) for t in prefill_lengths}))
        if not self.prefill_lengths or min(self.prefill_lengths) < 1:
            raise ValueError(f"prefill_lengths must be positive ints, got {prefill_lengths!r}.")
        self.max_token_bytes = max(len(b) for b in model.tokenizer.vocabulary.token_bytes)
        cache = [tf.TensorSpec([1, cfg.n_head, length, cfg.head_dim], tf.float32, name=name)
                 for name in cache_names(cfg.n_layer)]
        self._functions = {}
        for t in self.prefill_lengths:
            self._add(f"prefill_{t}", self._prefill, tf.TensorSpec([1, t], tf.int32, "tokens"),
                      tf.TensorSpec([t], tf.int32, "input_pos"), *cache)
        self.decode_windows = tuple(w for w in DECODE_WINDOWS if w < length)
        for window in (None, *self.decode_windows):
            self._add("decode" if window is None else f"decode_{window}",
                      functools.partial(self._decode, window=window),
                      tf.TensorSpec([1, 1], tf.int32, "tokens"),
                      tf.TensorSpec([1], tf.int32, "input_pos"), *cache)
        self._add("sample", self._sample,
                  tf.TensorSpec([1, 1, cfg.vocab_size], tf.float32, "logits"),
                  tf.TensorSpec([], tf.float32, "temperature"),
                  tf.TensorSpec([], tf.int32, "top_k"), tf.TensorSpec([], tf.float32, "top_p"),
                  tf.TensorSpec([2], tf.int32, "seed"))
        self._add("tokenize", self._tokenize, tf.TensorSpec([TOKENIZE_BYTES], tf.int32, "bytes"),
                  tf.TensorSpec([], tf.int32, "length"))
        self._add("detokenize", self._detokenize,
                  tf.TensorSpec([DETOKENIZE_IDS], tf.int32, "ids"),
                  tf.TensorSpec([], tf.int32, "count"))
        self._add("metadata", self._metadata)

    def _add(self, name, fn, *specs):
        # The converter names each signature after its function.
        def signature(*args):
            return fn(*args)

        signature.__name__ = signature.__qualname__ = name
        self._functions[name] = tf.function(signature, autograph=False,
                                            input_signature=list(specs))

    def functions(self):
        return list(self._functions.values())

    # --- the network ----------------------------------------------------------------------
    def _step(self, tokens, input_pos, caches, window=None):
        """forward over `tokens` at `input_pos[0]`, the cache written in
        place; attention reads its first `window` positions (all if None)."""
        layers = self.config.n_layer
        cache = KVCache(tuple(caches[:layers]), tuple(caches[layers:]))
        start = tf.clip_by_value(input_pos[0], 0, self.cache_length - tokens.shape[1])
        with in_place_writes():
            hidden, _, new = self.forward(
                tokens, tf.ones([1, self.cache_length], tf.int32),
                tf.clip_by_value(input_pos, 0, self.config.n_positions - 1)[None], cache,
                cache_index=start, key_limit=window)
        return hidden, dict(zip(cache_names(layers), new.keys + new.values, strict=True))

    def _prefill(self, tokens, input_pos, *caches):
        # No logits: a runtime decodes the prompt's last token (LiteRT-LM does).
        return self._step(self._valid_ids(tokens), input_pos, caches)[1]

    def _decode(self, tokens, input_pos, *caches, window=None):
        hidden, outputs = self._step(self._valid_ids(tokens), input_pos, caches, window)
        return {"logits": self.lm_logits(hidden), **outputs}

    def _sample(self, logits, temperature, top_k, top_p, seed):
        # The seed input already holds (seed, step): the runner advances it.
        settings = SamplingSettings.of(temperature=temperature, top_k=top_k, top_p=top_p,
                                       seed=seed)
        return {"next_token": self.SAMPLER.choose(logits[:, 0], settings, step=0)}

    def _valid_ids(self, ids):
        return tf.clip_by_value(ids, 0, self.config.vocab_size - 1)

    # --- the tokenizer --------------------------------------------------------------------
    def _tokenize(self, byte_values, length):
        length = tf.clip_by_value(length, 0, TOKENIZE_BYTES)

        def encode():
            return self.tokenizer.encode_ops(tf.clip_by_value(byte_values[:length], 0, 255))

        ids = _padded(_unless_empty(length, encode), TOKENIZE_BYTES)
        return {"ids": ids, "count": _count(ids)}

    def _detokenize(self, ids, count):
        count = tf.clip_by_value(count, 0, DETOKENIZE_IDS)
        size = DETOKENIZE_IDS * self.max_token_bytes

        def decode():
            return self.tokenizer.token_bytes_ops(self._valid_ids(ids[:count]))

        data = _padded(_unless_empty(count, decode), size)
        return {"bytes": data, "length": _count(data)}

    def _metadata(self):
        cfg = self.config
        values = dict(n_layer=cfg.n_layer, n_head=cfg.n_head, head_dim=cfg.head_dim,
                      vocab_size=cfg.vocab_size, cache_length=self.cache_length,
                      eos_token_id=cfg.eos_token_id, tokenize_bytes=TOKENIZE_BYTES,
                      detokenize_ids=DETOKENIZE_IDS, max_token_bytes=self.max_token_bytes)
        return {"sizes": tf.constant([values[name] for name in METADATA_FIELDS], tf.int32)}


def _unless_empty(size, fn):
    """fn() when `size` > 0, else an empty int32 vector (LiteRT's kernels
    refuse some empty tensors inside the tokenizer)."""
    return tf.cond(size > 0, fn, lambda: tf.zeros([0], tf.int32))


def _padded(values, size: int):
    """values (int32 [n], n <= size, all >= 0) padded with -1 to a static [size]."""
    padded = tf.pad(values, [[0, size - tf.size(values)]], constant_values=-1)
    return tf.reshape(padded, [size])  # a static shape: LiteRT.js reads it


def _count(padded):
    """How many entries are not padding, counted from the values: an output
    computed from a tensor's shape comes back wrong in LiteRT.js."""
    return tf.reduce_sum(tf.cast(padded >= 0, tf.int32))


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
    """`format="litert"`: the `.tflite` file at `path`, or the LiteRT-LM
    bundle when `path` ends in `.litertlm` (`tfgpt2.export.litertlm`)."""

    format = "litert"
    options = ("quantization", "cache_length")

    def write(self, model, path: Path, *, overwrite: bool, quantization: str = "int8",
              cache_length: int | None = None) -> Path:
        if path.suffix == ".litertlm":
            from tfgpt2.export.litertlm import LiteRTLMTarget

            return LiteRTLMTarget().write(model, path, overwrite=overwrite,
                                          quantization=quantization, cache_length=cache_length)
        writing.claim(path, overwrite)  # before converting: a refusal costs nothing
        log.info("Converting to TFLite (quantization=%s); GPT-2 Medium takes a few minutes ...",
                 quantization)
        data = convert(model, quantization=quantization, cache_length=cache_length)
        writing.claim(path, overwrite)  # again: the conversion took minutes
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path
