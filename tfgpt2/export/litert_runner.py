"""Run the `.tflite` with nothing but LiteRT (`ai_edge_litert`): tokenize,
prefill, decode token by token with the cache kept in the decode
signature's own input buffers, detokenize.

Each step writes only the new token's inputs and its keys and values (at
`position`) into those buffers through zero-copy numpy views, then invokes
the decode subgraph: the cache is never copied. LiteRT's public
`SignatureRunner.__call__` would copy every input on every call, so this
uses the interpreter wrapper's per-subgraph calls (`ResizeInputTensor`,
`AllocateTensors`, `tensor`, `Invoke`), which is what an Android or iOS app
does with direct buffers.

It needs numpy and `ai_edge_litert` alone (no TensorFlow), as an app would.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from tfgpt2 import limits


class LiteRTRunner:
    """Greedy or sampled generation from a `.tflite` made by `tfgpt2.export`
    (`format="litert"`).

    Args:
      model: a path to the `.tflite` file, or its bytes.
      num_threads: CPU threads for LiteRT (default: all cores).

    Example:
        runner = LiteRTRunner("gpt2-medium.int8.tflite")
        runner.generate("Hello, I'm a language model,", max_new_tokens=40, top_k=50, seed=0)
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        source = dict(model_content=model) if isinstance(model, bytes) else dict(
            model_path=os.fspath(model))
        self.interpreter = Interpreter(num_threads=num_threads or os.cpu_count(), **source)
        signatures = self.interpreter.get_signature_list()
        missing = {"tokenize", "detokenize", "prefill", "decode", "metadata"} - set(signatures)
        if missing:
            raise ValueError(f"This .tflite lacks the signatures {sorted(missing)}: it was not "
                             "made by `tfgpt2 --mode=export --format=tflite`.")
        meta = self.interpreter.get_signature_runner("metadata")()
        self.n_layer, self.n_head = int(meta["n_layer"]), int(meta["n_head"])
        self.head_dim, self.vocab_size = int(meta["head_dim"]), int(meta["vocab_size"])
        self.cache_length, self.eos_token_id = int(meta["cache_length"]), int(meta["eos_token_id"])
        self._decode = _Subgraph(self.interpreter, "decode")

    # --- tokenizer ---------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []  # (LiteRT's Python wrapper cannot read an empty output)
        data = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
        return self.interpreter.get_signature_runner("tokenize")(bytes=data)["ids"].tolist()

    def detokenize(self, ids) -> str:
        ids = np.asarray(ids, np.int32).reshape(-1)
        if not ids.size:
            return ""
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}).")
        out = self.interpreter.get_signature_runner("detokenize")(ids=ids)["bytes"]
        return out.astype(np.uint8).tobytes().decode("utf-8")

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
        ids = self.tokenize(prompt) if text else [int(i) for i in prompt]
        ids = limits.start_empty(ids, self.eos_token_id)  # GPT-2 starts and ends with one token
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}.")
        room = limits.check_prompt_fits(len(ids), max_new_tokens, self.cache_length,
                                        truncate_prompt, what="cache")
        ids = ids[-room:]
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}).")
        stops = {self.eos_token_id} if stop_token_ids is None else set(stop_token_ids)
        settings = _settings(do_sample, temperature, top_k, top_p)
        seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)

        first = self.interpreter.get_signature_runner("prefill")(
            ids=np.asarray([ids], np.int32), seed=np.asarray([seed, 0], np.int32), **settings)
        new = []
        token = int(first["next_token"][0])
        self._start_cache(len(ids) + max_new_tokens - 1, first["keys"], first["values"], settings)
        for step in range(1, max_new_tokens + 1):
            new.append(token)
            if streamer is not None:
                streamer(token)
            if token in stops or step == max_new_tokens:
                break
            token = self._step(token, len(ids) + step - 1, seed, step)
        if not text:
            return new
        end = next((i for i, t in enumerate(new) if t in stops), len(new))
        return prompt + self.detokenize(new[:end])

    def _start_cache(self, length, keys, values, settings):
        """Size the decode signature's cache inputs for this generation and
        copy the prompt's keys and values in (once per generation)."""
        graph = self._decode
        cache_shape = (self.n_head, length, self.head_dim)
        for i in range(self.n_layer):
            graph.resize(f"keys_{i}", cache_shape)
            graph.resize(f"values_{i}", cache_shape)
        graph.allocate()
        prompt_length = keys.shape[2]
        for i in range(self.n_layer):
            for name, prompt in ((f"keys_{i}", keys[i]), (f"values_{i}", values[i])):
                buffer = graph.input(name)
                # Slots past the current position are masked out but still
                # multiplied (by 0): they must hold finite numbers.
                buffer[:, prompt_length:] = 0.0
                buffer[:, :prompt_length] = prompt
        for name, value in settings.items():
            graph.set(name, value)

    def _step(self, token, position, seed, step) -> int:
        """One decode: write the token's inputs, invoke, store its keys and
        values at `position`; returns the next token."""
        graph = self._decode
        if position >= graph.input("keys_0").shape[1]:
            raise ValueError(f"position {position} is past the cache ({graph.input('keys_0').shape[1]}).")
        graph.set("token", np.asarray([token], np.int32))
        graph.set("position", np.asarray([position], np.int32))
        graph.set("seed", np.asarray([seed, step], np.int32))
        graph.invoke()
        new_keys, new_values = graph.output("new_keys"), graph.output("new_values")
        for i in range(self.n_layer):
            graph.input(f"keys_{i}")[:, position] = new_keys[i]
            graph.input(f"values_{i}")[:, position] = new_values[i]
        return int(graph.output("next_token")[0])


def _settings(do_sample, temperature, top_k, top_p) -> dict:
    if not do_sample:
        temperature = 0.0  # greedy
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError("temperature must be >= 0, top_p in (0, 1], top_k >= 0.")
    return {"temperature": np.float32(temperature), "top_k": np.int32(top_k),
            "top_p": np.float32(top_p)}


class _Subgraph:
    """One signature's subgraph, driven through the interpreter wrapper so
    inputs stay in place between invocations."""

    def __init__(self, interpreter, signature: str):
        self._wrapper = interpreter._interpreter
        self._index = self._wrapper.GetSubgraphIndexFromSignature(signature)
        runner = interpreter.get_signature_runner(signature)
        self._inputs = dict(runner._inputs)
        self._outputs = dict(runner._outputs)

    def resize(self, name, shape):
        self._wrapper.ResizeInputTensor(self._inputs[name], np.asarray(shape, np.int32), False,
                                        self._index)

    def allocate(self):
        self._wrapper.AllocateTensors(self._index)

    def input(self, name) -> np.ndarray:
        """A zero-copy view of an input buffer (valid until the next allocate)."""
        return self._wrapper.tensor(self._wrapper, self._inputs[name], self._index)

    def set(self, name, value):
        """Copy a small input in (the token, its position, the settings)."""
        self._wrapper.SetTensor(self._inputs[name], np.asarray(value), self._index)

    def output(self, name) -> np.ndarray:
        return self._wrapper.tensor(self._wrapper, self._outputs[name], self._index)

    def invoke(self):
        self._wrapper.Invoke(self._index)
