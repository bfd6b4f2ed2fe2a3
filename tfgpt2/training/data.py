"""The input pipeline: text files -> token stream -> packed blocks -> batches.

Two stages, so that a resumed run finds its data position exactly and at once:

1. Tokenize (tf.data, the in-graph tokenizer): each file is read, split into
   documents (`file`: one per file; `blank_line`; or a literal separator),
   tokenized, and each document is followed by `<|endoftext|>`. The stream
   is stored as a `.npy` cache (uint16 when the vocabulary fits) keyed by the
   files' paths, sizes and times, the separator and the vocabulary, so later
   runs and resumed runs memory-map it instead of tokenizing again.
2. Sample (tf.data over block indices): block i is tokens[i*S : i*S + S + 1]
   (S = seq_len), so consecutive blocks overlap by one token and every token
   after the first is a target exactly once per epoch; the last block is
   padded with a zero mask. Global position p of the run is block
   `perm(epoch)[p % N]`, a seeded permutation per epoch; step s holds
   positions [s*G, (s+1)*G). Each replica reads its own rows of each global
   batch (sharding by data), so every strategy sees the same global batches,
   and starting at step s is a computation, not a replay.

File policy: files that are empty or only whitespace are skipped with a
warning (corpora often hold a few); a file that is not valid UTF-8 is
refused, naming the byte offset, since decoding it some other way would
train on garbled text.
"""

from __future__ import annotations

import dataclasses
import functools
import glob as globlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tfgpt2.files import atomic_path
from tfgpt2.training.console import say, warn
from tfgpt2.training.settings import SEPARATOR_BLANK_LINE, SEPARATOR_WHOLE_FILE, BatchLayout

TOKENIZE_BATCH = 64  # documents per tokenizer call


# --- files ---------------------------------------------------------------------
def find_files(patterns, what: str = "train_files") -> list[str]:
    """Sorted paths matching a glob or list of globs; a clear error if none."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [os.fspath(patterns)]
    paths = set()
    for pattern in patterns:
        for part in str(pattern).split(","):
            part = os.path.expanduser(part.strip())
            if not part:
                continue
            matched = [p for p in globlib.glob(part, recursive=True) if os.path.isfile(p)]
            if not matched:
                raise FileNotFoundError(
                    f"No file matches the {what} glob {part!r}. Check the path, and quote the "
                    "glob so the shell passes it through (e.g. --train_files='data/*.txt').")
            paths.update(os.path.abspath(p) for p in matched)
    if not paths:
        raise FileNotFoundError(f"{what} is empty: give a glob of UTF-8 text files.")
    return sorted(paths)


def check_text_files(paths: list[str], what: str = "train_files") -> list[str]:
    """The files to use: empty or whitespace-only ones are skipped with a
    warning; one that is not UTF-8 raises, saying where and what to do."""
    kept = []
    for path in paths:
        data = Path(path).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path} is not UTF-8 text (byte {err.start}: {data[err.start:err.start + 4]!r}). "
                "Convert it (e.g. `iconv -f latin1 -t utf-8`) or remove it from "
                f"{what}.") from None
        if not text.strip():
            warn(f"skipping {path}: it is empty or holds only whitespace.")
            continue
        kept.append(path)
    if not kept:
        raise ValueError(f"Every file of {what} is empty ({len(paths)} files): nothing to train on.")
    return kept


# --- stage 1: the token stream -------------------------------------------------
def _split_documents(text, separator: str):
    """tf.string scalar -> tf.string [D] documents (empty ones dropped)."""
    import tensorflow as tf

    if separator == SEPARATOR_WHOLE_FILE:
        docs = tf.reshape(text, [1])
    else:
        if separator == SEPARATOR_BLANK_LINE:
            # A blank line is a line of only spaces/tabs; \r\n files too.
            text = tf.strings.regex_replace(text, r"\r?\n[ \t\r]*\n(?:[ \t\r]*\n)*", "\x00")
            separator = "\x00"
        docs = tf.strings.split(text, sep=separator)
    keep = tf.strings.length(tf.strings.strip(docs)) > 0
    return tf.boolean_mask(docs, keep)


def tokenize_files(paths: list[str], tokenizer, separator: str) -> np.ndarray:
    """Token ids of every document of `paths`, each followed by
    `<|endoftext|>`, in file order: a 1-D array (uint16 if the vocabulary
    fits, else int32). `tokenizer` is a `BytePairTokenizer`."""
    import tensorflow as tf

    eos = tokenizer.eos_token_id

    def encode(docs):
        ragged = tokenizer.tokenize(docs)
        ends = tf.fill([tf.shape(docs)[0], 1], eos)
        return tf.concat([ragged, tf.RaggedTensor.from_tensor(ends)], axis=1).values

    dataset = (tf.data.Dataset.from_tensor_slices(paths)
               .map(tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE)
               .map(lambda text: _split_documents(text, separator))
               .unbatch()
               .batch(TOKENIZE_BATCH)
               .map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .prefetch(tf.data.AUTOTUNE))
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32
    chunks = [chunk.astype(dtype) for chunk in dataset.as_numpy_iterator()]
    return np.concatenate(chunks) if chunks else np.zeros([0], dtype)


def _cache_key(paths, separator, vocabulary) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"separator": separator, "format": 1}).encode())
    digest.update(vocabulary.merge_ids.tobytes())
    digest.update(vocabulary.byte_ids.tobytes())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:20]


def token_stream(paths: list[str], tokenizer, separator: str, cache_dir: str | None,
                 what: str = "train") -> np.ndarray:
    """The token stream of `paths`, from the cache when it holds it, else
    tokenized now (with a log line) and cached atomically."""
    cache = None
    if cache_dir:
        key = _cache_key(paths, separator, tokenizer.vocabulary)
        cache = Path(cache_dir) / f"{what}-{key}.npy"
        if cache.is_file():
            try:
                return np.load(cache, mmap_mode="r")
            except (ValueError, OSError):
                warn(f"token cache {cache} is unreadable; tokenizing again.")
    size = sum(os.path.getsize(p) for p in paths)
    say(f"Tokenizing {len(paths)} {what} file(s), {size / 1e6:.1f} MB...")
    tokens = tokenize_files(paths, tokenizer, separator)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp, open(tmp, "wb") as f:
                np.save(f, tokens)
        except OSError as err:  # a cache is an optimisation: warn, train on
            warn(f"could not write the token cache {cache} ({err.strerror or err}).")
            cache = None
    say(f"{what}: {tokens.size:,} tokens" + (f", cached in {cache}" if cache else "") + ".")
    return tokens


# --- stage 2: blocks -----------------------------------------------------------
@dataclasses.dataclass
class PackedCorpus:
    """A token stream cut into blocks of `seq_len + 1` tokens at stride
    `seq_len` (one token of overlap: the last target of block i is the first
    input of block i + 1). The last block is padded with `pad_id` and a zero
    mask. Blocks are read by index, so any position is reached at once."""

    tokens: np.ndarray
    seq_len: int
    pad_id: int

    def __post_init__(self):
        if self.tokens.size < 2:
            raise ValueError(f"The corpus has {self.tokens.size} token(s); at least 2 are "
                             "needed for one next-token target.")

    @property
    def num_blocks(self) -> int:
        return -(-(self.tokens.size - 1) // self.seq_len)

    @property
    def num_targets(self) -> int:
        return self.tokens.size - 1

    def block_targets(self, index: np.ndarray) -> np.ndarray:
        """Targets (real next tokens) per block."""
        return np.minimum(self.seq_len, self.num_targets - index * self.seq_len)

    def blocks(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int32 [n, seq_len + 1], mask int32 [n, seq_len + 1]); a
        negative index gives an all-padding row."""
        width = self.seq_len + 1
        out = np.full((len(index), width), self.pad_id, np.int32)
        mask = np.zeros((len(index), width), np.int32)
        for row, i in enumerate(index):
            if i < 0:
                continue
            start = int(i) * self.seq_len
            piece = self.tokens[start:start + width]
            out[row, :len(piece)] = piece
            mask[row, :len(piece)] = 1
        return out, mask


@functools.lru_cache(maxsize=4)
def _permutation(num_blocks: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x6B]).permutation(num_blocks)


def block_order(num_blocks: int, seed: int, positions: np.ndarray) -> np.ndarray:
    """Block index at each global position: a seeded permutation per epoch."""
    positions = np.asarray(positions, np.int64)
    epochs, offsets = np.divmod(positions, num_blocks)
    out = np.empty_like(positions)
    for epoch in np.unique(epochs):
        sel = epochs == epoch
        out[sel] = _permutation(num_blocks, seed, int(epoch))[offsets[sel]]
    return out


def train_rows(corpus: PackedCorpus, layout: BatchLayout, seed: int, step: int,
               replica: int) -> dict[str, np.ndarray]:
    """The rows of global `step` that `replica` trains on, and the number of
    targets in the whole global batch (every replica divides by it, so the
    summed gradient is the global mean whatever the replica count)."""
    global_positions = step * layout.global_batch_size + np.arange(layout.global_batch_size)
    global_blocks = block_order(corpus.num_blocks, seed, global_positions)
    mine = global_blocks[replica * layout.per_replica:(replica + 1) * layout.per_replica]
    tokens, mask = corpus.blocks(mine)
    total = float(corpus.block_targets(global_blocks).sum())
    return {"tokens": tokens, "mask": mask,
            "denominator": np.full([len(mine)], total, np.float32)}


def eval_rows(corpus: PackedCorpus, layout: BatchLayout, step: int,
              replica: int) -> dict[str, np.ndarray]:
    """The rows of eval `step` that `replica` scores: blocks in order, past
    the last one all-padding rows (a zero mask adds nothing to the sums)."""
    start = step * layout.global_batch_size + replica * layout.per_replica
    index = np.arange(start, start + layout.per_replica)
    tokens, mask = corpus.blocks(np.where(index < corpus.num_blocks, index, -1))
    return {"tokens": tokens, "mask": mask}


def train_dataset(corpus: PackedCorpus, layout: BatchLayout, seed: int, start_step: int,
                  end_step: int, input_context=None):
    """Per-replica batches of `train_rows` for steps [start_step, end_step)."""
    return _replica_batches(
        corpus, layout, range(start_step, end_step), ("tokens", "mask", "denominator"),
        lambda step, replica: train_rows(corpus, layout, seed, step, replica), input_context)


def eval_dataset(corpus: PackedCorpus, layout: BatchLayout, input_context=None):
    """(per-replica batches of `eval_rows`, their number of steps): every
    block once, in order, padded to whole global batches."""
    steps = -(-corpus.num_blocks // layout.global_batch_size)
    dataset = _replica_batches(
        corpus, layout, range(steps), ("tokens", "mask"),
        lambda step, replica: eval_rows(corpus, layout, step, replica), input_context)
    return dataset, steps


_FIELD_DTYPES = {"tokens": "int32", "mask": "int32", "denominator": "float32"}


def _replica_batches(corpus: PackedCorpus, layout: BatchLayout, steps: range,
                     fields: tuple[str, ...], rows, input_context=None):
    """tf.data for `strategy.distribute_datasets_from_function`: this input
    pipeline yields, step by step, `rows(step, replica)` (the `fields`) of
    each replica it feeds, in replica order."""
    import tensorflow as tf

    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline = input_context.input_pipeline_id if input_context else 0
    local = layout.num_replicas // pipelines
    shapes = {"tokens": [layout.per_replica, corpus.seq_len + 1],
              "mask": [layout.per_replica, corpus.seq_len + 1],
              "denominator": [layout.per_replica]}

    def fetch(index):
        step, slot = divmod(int(index), local)
        found = rows(step, pipeline * local + slot)
        return tuple(found[name] for name in fields)

    def as_features(index):
        values = tf.numpy_function(fetch, [index], tuple(tf.as_dtype(_FIELD_DTYPES[name])
                                                         for name in fields), stateful=False)
        return {name: tf.ensure_shape(value, shapes[name]) for name, value in zip(fields, values)}

    return (tf.data.Dataset.range(steps.start * local, steps.stop * local)
            .map(as_features, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


# --- Keras fit -------------------------------------------------------------------
def lm_dataset(files, seq_len: int, batch_size: int, *, tokenizer=None, seed: int = 0,
               separator: str = "file", cache_dir: str | None = None, repeat: bool = True):
    """A `tf.data.Dataset` of `{"input_ids", "attention_mask"}` [batch, seq_len]
    from text files, for `model.fit` after `model.compile(loss=CausalLMLoss())`.

    Documents are tokenized in the pipeline, joined with `<|endoftext|>` and
    packed into blocks of `seq_len` (the model shifts the labels, as
    transformers' `labels=input_ids`); blocks are shuffled with `seed`.

    Args:
      files: a glob or list of globs of UTF-8 text files.
      seq_len: tokens per sequence.
      batch_size: sequences per batch.
      tokenizer: a `GPT2Tokenizer` or `BytePairTokenizer` (default GPT-2's).
      seed: shuffling seed.
      separator: `file`, `blank_line` or a literal document separator.
      cache_dir: optional directory for the tokenized-corpus cache.
      repeat: repeat forever (reshuffled every epoch) or one epoch.

    Returns:
      The dataset (an epoch has `ceil((tokens - 1) / (seq_len - 1))` blocks,
      the last one padded and masked).

    Example:
    >>> ds = lm_dataset("data/*.txt", seq_len=256, batch_size=4)
    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=CausalLMLoss())
    >>> model.fit(ds, steps_per_epoch=100, epochs=1)
    """
    import tensorflow as tf

    graph_tokenizer = _graph_tokenizer(tokenizer)
    paths = check_text_files(find_files(files, "files"), "files")
    tokens = token_stream(paths, graph_tokenizer, separator, cache_dir)
    corpus = PackedCorpus(tokens, seq_len - 1, graph_tokenizer.eos_token_id)

    def epoch_blocks(epoch):
        order = _permutation(corpus.num_blocks, seed, int(epoch))
        tokens, mask = corpus.blocks(order)
        return tokens[:, :seq_len], mask[:, :seq_len]

    epochs = tf.data.Dataset.range(2**62 if repeat else 1)
    return (epochs.map(lambda e: tf.numpy_function(epoch_blocks, [e], (tf.int32, tf.int32)))
            .flat_map(lambda t, m: tf.data.Dataset.from_tensor_slices(
                {"input_ids": tf.ensure_shape(t, [None, seq_len]),
                 "attention_mask": tf.ensure_shape(m, [None, seq_len])}))
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def _graph_tokenizer(tokenizer):
    from tfgpt2.tokenizer import BytePairTokenizer, GPT2Tokenizer

    if tokenizer is None:
        return BytePairTokenizer()
    if isinstance(tokenizer, GPT2Tokenizer):
        return tokenizer.graph(split_special_tokens=False)
    if isinstance(tokenizer, BytePairTokenizer):
        return tokenizer
    raise TypeError(f"tokenizer must be a GPT2Tokenizer or BytePairTokenizer, got "
                    f"{type(tokenizer).__name__}.")

