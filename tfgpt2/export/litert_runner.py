"""Run the `.tflite` with nothing but LiteRT (`ai_edge_litert`), the way an
app does: tokenize, prefill the prompt, decode token by token, sample,
detokenize — every step a call of one of the file's signatures
(`tfgpt2.export.tflite` documents them).

The KV cache stays in place: the runner owns one buffer per layer for keys
and one for values, and binds each as both the input and the output of the
same name, on every signature (LiteRT's CompiledModel API, as LiteRT-LM
does). The model's DYNAMIC_UPDATE_SLICE then writes the new position into
it with no copy; a step moves only the token, its position and the logits.

It needs numpy and `ai_edge_litert` alone (no TensorFlow), as an app would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfgpt2 import limits
from tfgpt2.export.litert_names import METADATA_FIELDS, cache_names

_REQUIRED = {"decode", "sample", "tokenize", "detokenize", "metadata"}


class _Slot:
    """One LiteRT tensor buffer of a signature's input or output, made by
    the model (so its shape is the tensor's), with numpy in and out."""

    def __init__(self, model, signature: str, name: str, output: bool = False):
        details = (model.get_output_tensor_details if output else
                   model.get_input_tensor_details)(signature)[name]
        self.shape, self.dtype = tuple(details["shape"]), np.dtype(details["dtype"])
        self.size = int(np.prod(self.shape, dtype=np.int64))
        make = model.create_output_buffer_by_name if output else model.create_input_buffer_by_name
        self.buffer = make(signature, name)

    def write(self, values):
        self.buffer.write(np.ascontiguousarray(values, self.dtype).reshape(-1))

    def read(self) -> np.ndarray:
        return self.buffer.read(self.size, self.dtype).reshape(self.shape)


class LiteRTRunner:
    """Greedy or sampled generation from a `.tflite` made by `tfgpt2.export`
    (`format="litert"`).

    Args:
      model: a path to the `.tflite` file, or its bytes.
      num_threads: CPU threads for LiteRT (default: all cores).
      weight_cache: where XNNPACK keeps the weights it packs, shared by
        all signatures and reused by the next load (a file of about the
        weights' size): "auto" (the default) puts it in tfgpt2's cache
        directory for a file path, None packs in memory for each signature
        (several times the file's size in RAM).

    Example:
        runner = LiteRTRunner("gpt2-medium.int8.tflite")
        runner.generate("Hello, I'm a language model,", max_new_tokens=40, top_k=50, seed=0)
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None,
                 weight_cache: str | os.PathLike | None = "auto"):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_options import CpuOptions
        from ai_edge_litert.options import Options

        path = None if isinstance(model, bytes) else Path(model)
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"No .tflite at {path}: export one with "
                                    "`tfgpt2 --mode=export --format=tflite`.")
        if weight_cache == "auto":
            weight_cache = _weight_cache_for(path) if path is not None else None
        self.weight_cache = None if weight_cache is None else Path(weight_cache)
        if self.weight_cache is not None:
            self.weight_cache.parent.mkdir(parents=True, exist_ok=True)
        cpu = CpuOptions(num_threads=num_threads or os.cpu_count() or 1,
                         xnnpack_weight_cache_path=os.fspath(self.weight_cache or ""))
        options = Options(cpu_options=cpu)
        if path is None:
            self.model = CompiledModel.from_buffer(model, options=options)
        else:
            self.model = CompiledModel.from_file(os.fspath(path), options=options)
        signatures = self.model.get_signature_list()
        self.prefill_lengths = _sizes(signatures, "prefill_")
        self.decode_windows = _sizes(signatures, "decode_")
        missing = _REQUIRED - set(signatures)
        if missing or not self.prefill_lengths:
            raise ValueError(
                f"This .tflite lacks the signatures {sorted(missing) or ['prefill_<T>']}: it was "
                "not made by this version of `tfgpt2 --mode=export --format=tflite`; export it "
                "again.")
        sizes = _Slot(self.model, "metadata", "sizes", output=True)
        self.model.run_by_name("metadata", {}, {"sizes": sizes.buffer})
        for name, value in zip(METADATA_FIELDS, sizes.read().tolist(), strict=True):
            setattr(self, name, int(value))
        self._allocate()

    # --- buffers ---------------------------------------------------------------------
    def _allocate(self):
        model = self.model
        self._cache = {name: _Slot(model, "decode", name) for name in cache_names(self.n_layer)}
        for slot in self._cache.values():  # finite from the start (see the contract)
            slot.write(np.zeros(slot.shape, np.float32))
        self._cache_buffers = {name: slot.buffer for name, slot in self._cache.items()}
        self._steps = {signature: (_Slot(model, signature, "tokens"),
                                   _Slot(model, signature, "input_pos"))
                       for signature in ("decode", *self._prefills(), *self._windows())}
        self._logits = _Slot(model, "decode", "logits", output=True)
        self._settings = {name: _Slot(model, "sample", name)
                          for name in ("temperature", "top_k", "top_p", "seed")}
        self._next = _Slot(model, "sample", "next_token", output=True)
        self._text_in = (_Slot(model, "tokenize", "bytes"), _Slot(model, "tokenize", "length"))
        self._text_out = (_Slot(model, "tokenize", "ids", output=True),
                          _Slot(model, "tokenize", "count", output=True))
        self._ids_in = (_Slot(model, "detokenize", "ids"), _Slot(model, "detokenize", "count"))
        self._ids_out = (_Slot(model, "detokenize", "bytes", output=True),
                         _Slot(model, "detokenize", "length", output=True))

    def _prefills(self):
        return [f"prefill_{t}" for t in self.prefill_lengths]

    def _windows(self):
        return [f"decode_{w}" for w in self.decode_windows]

    def _decode_for(self, position: int) -> str:
        """The decode that reads the least cache while seeing `position`."""
        return next((f"decode_{w}" for w in self.decode_windows if position < w), "decode")

    # --- tokenizer ---------------------------------------------------------------------
    def tokenize(self, text: str, truncate: bool = False) -> list[int]:
        """GPT-2's ids of `text` (see `encode_bytes`)."""
        return self.encode_bytes(text.encode("utf-8"), truncate)

    def encode_bytes(self, data: bytes, truncate: bool = False) -> list[int]:
        """The ids of any bytes, UTF-8 or not (at most `tokenize_bytes` of
        them; with `truncate`, of about their last `tokenize_bytes`)."""
        if len(data) > self.tokenize_bytes:
            if not truncate:
                raise ValueError(
                    f"The text is {len(data)} UTF-8 bytes; this .tflite tokenizes at most "
                    f"{self.tokenize_bytes} at a time. Shorten it, or pass truncate_prompt=True "
                    "to keep its end.")
            data = _tail(data, self.tokenize_bytes)
        if not data:
            return []
        (values, length), (ids, count) = self._text_in, self._text_out
        padded = np.zeros(values.shape, np.int32)
        padded[:len(data)] = np.frombuffer(data, np.uint8)
        values.write(padded)
        length.write(len(data))
        self.model.run_by_name("tokenize", {"bytes": values.buffer, "length": length.buffer},
                               {"ids": ids.buffer, "count": count.buffer})
        return ids.read()[:int(count.read())].tolist()

    def decode_bytes(self, ids) -> bytes:
        """The raw bytes of `ids` (a token may end inside a UTF-8 character)."""
        ids = self._check_ids(ids)
        (values, count), (data, length) = self._ids_in, self._ids_out
        out = []
        for start in range(0, ids.size, self.detokenize_ids):
            chunk = np.zeros(values.shape, np.int32)
            used = ids[start:start + self.detokenize_ids]
            chunk[:used.size] = used
            values.write(chunk)
            count.write(used.size)
            self.model.run_by_name("detokenize", {"ids": values.buffer, "count": count.buffer},
                                   {"bytes": data.buffer, "length": length.buffer})
            out.append(data.read()[:int(length.read())].astype(np.uint8).tobytes())
        return b"".join(out)

    def detokenize(self, ids) -> str:
        """The text of `ids`; bytes that are not UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def _check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0
                         or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must be ints in [0, {self.vocab_size}).")
        return ids.astype(np.int32)

    # --- generation ---------------------------------------------------------------------
    def generate(self, prompt: str | list[int], *, max_new_tokens: int = 40,
                 temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0,
                 do_sample: bool = True, seed: int | None = None, stop_token_ids=None,
                 truncate_prompt: bool = False,
                 streamer: Callable[[int], None] | None = None) -> str | list[int]:
        """Continue `prompt` (text -> prompt + continuation as text; ids ->
        the new ids), with the same settings and meaning as
        `GPT2LMHeadModel.generate` (`do_sample=False` is greedy; an empty
        prompt starts from <|endoftext|>). `streamer(token_id)` is called
        for each new token."""
        text = isinstance(prompt, str)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}.")
        settings = _settings(do_sample, temperature, top_k, top_p)
        ids = self.tokenize(prompt, truncate_prompt) if text else self._check_ids(prompt).tolist()
        ids = limits.start_empty(ids, self.eos_token_id)  # GPT-2 starts and ends with one token
        room = limits.check_prompt_fits(len(ids), max_new_tokens, self.cache_length,
                                        truncate_prompt, what="cache")
        ids = ids[-room:]
        stops = {self.eos_token_id} if stop_token_ids is None else set(stop_token_ids)
        seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
        for name, value in settings.items():
            self._settings[name].write(value)

        self._prefill(ids[:-1])
        new, token = [], ids[-1]
        for step in range(max_new_tokens):
            token = self._next_token(token, len(ids) - 1 + step, seed, step, settings)
            new.append(token)
            if streamer is not None:
                streamer(token)
            if token in stops:
                break
        if not text:
            return new
        end = next((i for i, t in enumerate(new) if t in stops), len(new))
        return prompt + self.detokenize(new[:end])

    def next_token_logits(self, ids) -> np.ndarray:
        """float32 [V]: the logits of the token after `ids` (1 to
        `cache_length` of them)."""
        ids = self._check_ids(ids).tolist()
        if not 1 <= len(ids) <= self.cache_length:
            raise ValueError(f"Give 1 to {self.cache_length} ids (the cache), got {len(ids)}.")
        self._prefill(ids[:-1])
        self._run_step(self._decode_for(len(ids) - 1), ids[-1:], len(ids) - 1,
                       outputs=self._logits_out())
        return self._logits.read()[0, 0]

    def _prefill(self, ids: list[int]):
        """Write the keys and values of `ids` (positions 0..) into the cache,
        in the fewest prefill calls that never run past it."""
        start = 0
        while start < len(ids):
            left = len(ids) - start
            fitting = [t for t in self.prefill_lengths if start + t <= self.cache_length]
            if not fitting:  # the cache's last few slots: one token at a time
                self._run_step("decode", ids[start:start + 1], start, outputs=self._logits_out())
                start += 1
                continue
            full = [t for t in fitting if t <= left]
            length = max(full) if full else min(fitting)  # the last chunk is padded
            chunk = ids[start:start + length]
            self._run_step(f"prefill_{length}", chunk, start)
            start += len(chunk)

    def _logits_out(self) -> dict:
        return {"logits": self._logits.buffer}

    def _run_step(self, signature, ids, start, outputs=None):
        """Run prefill or decode on `ids` (padded with 0s) at `start`."""
        tokens, positions = self._steps[signature]
        width = tokens.shape[1]
        padded = np.zeros(tokens.shape, np.int32)
        padded[0, :len(ids)] = ids
        tokens.write(padded)
        positions.write(np.arange(start, start + width, dtype=np.int32))
        inputs = {"tokens": tokens.buffer, "input_pos": positions.buffer, **self._cache_buffers}
        self.model.run_by_name(signature, inputs, {**(outputs or {}), **self._cache_buffers})

    def _next_token(self, token, position, seed, step, settings) -> int:
        """Decode `token` at `position`; returns the token that follows."""
        if position >= self.cache_length:
            raise ValueError(f"position {position} is past the cache ({self.cache_length}).")
        self._run_step(self._decode_for(position), [token], position, outputs=self._logits_out())
        if settings["temperature"] == 0:  # greedy: the first largest logit, as argmax
            return int(np.argmax(self._logits.read()[0, 0]))
        self._settings["seed"].write((seed, step))
        self.model.run_by_name(
            "sample", {"logits": self._logits.buffer,
                       **{name: b.buffer for name, b in self._settings.items()}},
            {"next_token": self._next.buffer})
        return int(self._next.read()[0])


def _weight_cache_for(path: Path) -> Path:
    """A weight-cache file for this .tflite in tfgpt2's cache directory,
    named by its path, size and time, so a new export gets a new one."""
    import hashlib

    from tfgpt2.files import cache_root

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_root() / "litert" / f"{path.stem}-{key.hexdigest()[:16]}.xnnpack_cache"


def _sizes(signatures, prefix: str) -> tuple[int, ...]:
    """The sizes T of the signatures named `<prefix>T`, in order."""
    return tuple(sorted(int(name[len(prefix):]) for name in signatures
                        if name.startswith(prefix) and name[len(prefix):].isdigit()))


def _tail(data: bytes, size: int) -> bytes:
    """About the last `size` bytes of UTF-8 `data`, starting at a character
    after a space when there is one (so the first word is not cut)."""
    tail = data[-size:]
    space = tail.find(b" ")
    if 0 <= space < size // 2:
        return tail[space:]
    start = next((i for i in range(min(4, len(tail))) if tail[i] & 0xC0 != 0x80), 0)
    return tail[start:]


def _settings(do_sample, temperature, top_k, top_p) -> dict:
    if not do_sample:
        temperature = 0.0  # greedy
    if not (temperature >= 0 and 0 < top_p <= 1 and top_k >= 0):
        raise ValueError("temperature must be >= 0, top_p in (0, 1], top_k >= 0.")
    return {"temperature": np.float32(temperature), "top_k": np.int32(top_k),
            "top_p": np.float32(top_p)}
