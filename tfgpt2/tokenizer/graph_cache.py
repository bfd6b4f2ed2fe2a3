"""The traced encoder graph on disk, so a new process runs it without tracing.

Tracing `encode_strings` costs ~1.4 s of Python; registering the same graph
from its serialized function definitions costs ~0.05 s. One file per
vocabulary and special-token mode, next to the cached tables
(`table_cache.cache_dir()`), named by a key that hashes the TensorFlow
version, the tables' key, the mode and the source of the modules that build
the graph: a new version of any of them gets a new file, never a stale graph.

The file holds a header (the key, the payload's sha256) and the functions
(the graph and the loops and branches it calls) and, for each tensor the graph captured (the BPE tables), the path of
the attribute that holds it (e.g. `core.pairs.records`), so the loading
process passes its own tables. Functions are renamed with a prefix of the
key, so they cannot clash with functions this process traces itself.

Like the table cache, this can only save time, never change a result or
raise: a missing, corrupt or unwritable file means tracing as before. The
graph is the same one `encode_strings` traces, so the ids are the same.

Registering and calling a function by name uses two TensorFlow internals,
`context.add_function_def` and `execute.execute` (what tf.function itself
does); there is no public API for it. The key holds TF's version, and a
failure there makes `graph.BackgroundGraph` fall back to tracing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import function_pb2
from tensorflow.python.eager import context, execute

from tfgpt2.files import atomic_path
from tfgpt2.tokenizer import table_cache

FORMAT_VERSION = 1
_SOURCES = ("graph.py", "tables.py", "unicode_table.py", "ops")  # what builds the graph


def _source_digest() -> str:
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = root / name
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def cache_key(vocab, special_tokens: bool) -> str:
    text = (f"encode-graph:v{FORMAT_VERSION}:tf{tf.__version__}:{table_cache.cache_key(vocab)}:"
            f"special={bool(special_tokens)}:{_source_digest()}")
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(key: str) -> Path:
    return table_cache.cache_dir() / f"encode-graph-{key[:32]}.pb"


def named_tensors(root, prefix: str = "", seen=None) -> dict[int, tuple[str, tf.Tensor]]:
    """id(tensor) -> (attribute path, tensor) for every eager tensor held by
    `root` and the tokenizer objects it holds, attribute by attribute."""
    seen = set() if seen is None else seen
    out = {}
    if id(root) in seen:
        return out
    seen.add(id(root))
    for name, value in sorted(vars(root).items()):
        path = f"{prefix}{name}"
        if isinstance(value, tf.Tensor):
            out.setdefault(id(value), (path, value))
        elif type(value).__module__.startswith("tfgpt2.tokenizer"):
            out.update({k: v for k, v in named_tensors(value, path + ".", seen).items()
                        if k not in out})
    return out


def _rename(library: function_pb2.FunctionDefLibrary, prefix: str) -> str:
    """Prefix every function's name and every reference to one (call,
    loop and branch attributes); returns the last (top) function's name."""
    names = {f.signature.name for f in library.function}

    def fix(attr):
        if attr.HasField("func") and attr.func.name in names:
            attr.func.name = prefix + attr.func.name
        if attr.HasField("list"):
            for func in attr.list.func:
                if func.name in names:
                    func.name = prefix + func.name

    for function in library.function:
        function.signature.name = prefix + function.signature.name
        for node in function.node_def:
            for attr in node.attr.values():
                fix(attr)
    return library.function[-1].signature.name


class GraphCache:
    """The cache entry of one `_Programs` (its tensors, vocabulary, mode)."""

    def __init__(self, owner, vocab, special_tokens: bool):
        self.owner, self.key = owner, cache_key(vocab, special_tokens)

    def exists(self) -> bool:
        try:
            return cache_path(self.key).is_file()
        except RuntimeError:  # no home directory to put a cache in
            return False

    def load(self):
        return load(self.owner, self.key)

    def save(self, concrete) -> None:
        save(concrete, self.owner, self.key)


def save(concrete, owner, key: str) -> None:
    """Writes `concrete` (a traced encode_strings of `owner`) for `key`;
    skipped if a captured tensor is not an attribute of `owner`."""
    by_id = named_tensors(owner)
    captures = [by_id.get(id(t), (None,))[0] for t in concrete.captured_inputs]
    if None in captures:
        return
    library = function_pb2.FunctionDefLibrary()
    library.function.extend(concrete.graph.as_graph_def().library.function)
    library.function.append(concrete.function_def)  # the top function goes last
    payload = library.SerializeToString()
    header = json.dumps({"key": key, "captures": captures,
                         "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    try:
        path = cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(len(header).to_bytes(4, "little") + header + payload)
    except (OSError, RuntimeError):
        pass  # not writable (or no home directory): run without a cache


def load(owner, key: str):
    """The cached graph as `fn(texts) -> (ids, row_splits)`, registered in
    this process, or None (no valid file)."""
    try:
        data = cache_path(key).read_bytes()
        size = int.from_bytes(data[:4], "little")
        header = json.loads(data[4:4 + size])
        payload = data[4 + size:]
        if (header.get("key") != key
                or header.get("sha256") != hashlib.sha256(payload).hexdigest()):
            return None  # another key, or damaged
        library = function_pb2.FunctionDefLibrary.FromString(payload)
    except Exception:  # noqa: BLE001 -- missing or corrupt (any parse error): trace instead
        return None
    if not library.function:
        return None
    by_path = {path: tensor for path, tensor in named_tensors(owner).values()}
    if not all(path in by_path for path in header["captures"]):
        return None
    captures = [by_path[path] for path in header["captures"]]
    name = _rename(library, f"tfgpt2_encode_{key[:12]}_")
    ctx = context.context()
    ctx.ensure_initialized()
    for function in library.function:
        if not ctx.has_function(function.signature.name):
            ctx.add_function_def(function)

    def run(texts):
        return tuple(execute.execute(name, num_outputs=2, inputs=[texts, *captures], attrs=(),
                                     ctx=ctx))

    return run
