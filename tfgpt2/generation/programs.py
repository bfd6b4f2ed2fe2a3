"""The decode programs, built per shape bucket and cached.

A generation is two programs:
- prefill: the (left-padded) prompt through `forward`, writing every layer's
  fixed-size KV cache, and the first token chosen. A plain TF graph: it runs
  once per call on a compute-bound batch of positions, and keeping it out of
  XLA halves what XLA must compile on a first call.
- the token loop: one XLA program, a `tf.while_loop` of single-token steps
  through the same `forward`, with the sampler and the per-row stop logic
  inside. The `KVCache` is updated in place (dynamic-update-slice). A bf16
  model on a CPU runs its loops as plain TF graphs instead, whose matmuls
  are oneDNN's bf16 GEMMs (`tfgpt2.modeling.precision`).
Streaming runs the same prefill, then the loop's step as its own XLA program
with Python in between. Beam search (`beam_search.py`) has its own XLA loop
after the same prefill.

The program bodies are plain methods (`prefill`, `advance`, `token_loop`);
`get` wraps them in tf.functions. Traced outside `xla_program()` the same
bodies are a plain TF graph, which is what an XLA-free export needs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
from typing import NamedTuple

import keras
import tensorflow as tf

from tfgpt2.generation import beam_search, repetition, sampling
from tfgpt2.modeling import matmul_fusion
from tfgpt2.modeling.compiled import (dims, owned_buffer_writes, tracing_mode, write_at,
                                     xla_program)
from tfgpt2.modeling.kv_cache import KVCache
from tfgpt2.modeling.precision import decodes_in_xla, warn_if_emulated
from tfgpt2.modeling.masking import next_positions, position_ids


class ProgramKind(enum.Enum):
    PREFILL = "prefill"  # prompt -> loop state after the first token
    LOOP = "loop"  # loop state -> all new tokens (XLA)
    STEP = "step"  # loop state -> one more token (XLA; streaming)
    BEAM_PREFILL = "beam_prefill"  # prompt -> logits and cache for beam search
    BEAM = "beam"  # beam search to the end (XLA)


@dataclasses.dataclass(frozen=True)
class ProgramKey:
    """What a program's shapes and code depend on. `generate` fixes the
    shapes (one program per bucket); None leaves a size to run time, for
    graphs that take any batch and length (the SavedModel export)."""

    kind: ProgramKind
    batch: int | None
    prompt_length: int | None
    new_tokens: int | None
    sampler: sampling.Sampler = sampling.Sampler()
    num_beams: int = 1
    early_stopping: bool = False


class DecodeParams(NamedTuple):
    """The run-time values every program takes (values, not shapes).

    `new_token_slots` is the loop's length when the key leaves it to run
    time (the request's budget rounded up, so an XLA loop compiles few
    shapes); the loop stops after `max_new_tokens` <= it. `max_new_tokens`
    may also be [B], a budget per row (a server's batched requests): a row
    ends when it has its own budget, the loop when every row has ended.
    """

    max_new_tokens: tf.Tensor  # int32 [] or [B]
    new_token_slots: tf.Tensor  # int32 []
    length_penalty: tf.Tensor  # float32 [] (beam search)
    stop_mask: tf.Tensor  # bool [V]: the tokens that end a row
    pad_token_id: tf.Tensor  # int32 []: written after a row ends
    sampling: sampling.SamplingSettings

    @classmethod
    def signature(cls, vocab_size: int, per_row: bool = False) -> DecodeParams:
        """Scalar settings, or (`per_row`) a budget and settings per row."""
        count = tf.TensorSpec([], tf.int32)
        budget = tf.TensorSpec([None], tf.int32) if per_row else count
        return cls(budget, count, tf.TensorSpec([], tf.float32),
                   tf.TensorSpec([vocab_size], tf.bool), count,
                   sampling.SamplingSettings.signature(per_row))


def new_tokens(key, params: DecodeParams):
    """The loop's length: the key's bucket, or the request's slots."""
    return key.new_tokens if key.new_tokens is not None else params.new_token_slots


class DecodePrograms:
    """The prefill and decode programs of one model, cached by key."""

    def __init__(self, model):
        self.model = model
        self._programs: dict[ProgramKey, tf.types.experimental.GenericFunction] = {}
        self.block_runner = SharedBlockGraph(model.blocks)
        self._compiled: set[ProgramKey] = set()
        self._compiler = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tfgpt2-xla")
        # The decode loops' runtime: XLA, or a plain graph for bf16 on a CPU.
        self.loop_function = xla_function if decodes_in_xla(model) else graph_function
        warn_if_emulated(model)

    @property
    def loops_in_xla(self) -> bool:
        return self.loop_function is xla_function

    def get(self, key: ProgramKey):
        if key not in self._programs:
            signature = self._prompt_signature(key)
            program = {
                ProgramKind.PREFILL: lambda: graph_function(
                    lambda ids, mask, params: self.prefill_and_choose(key, ids, mask, params),
                    input_signature=signature),
                ProgramKind.BEAM_PREFILL: lambda: graph_function(
                    lambda ids, mask, params: self.prefill(key, ids, mask, params),
                    input_signature=signature),
                ProgramKind.LOOP: lambda: self.loop_function(
                    lambda state, params: self.token_loop(key, state, params)
                    if self.loops_in_xla else self.token_loop_in_place(key, state, params)),
                ProgramKind.STEP: lambda: self.loop_function(
                    lambda state, params: self.advance(key, state, params)),
                ProgramKind.BEAM: lambda: self.loop_function(beam_search.BeamSearch(self, key)),
            }[key.kind]()
            self._programs[key] = self._for_rows(key, program)
        return self._programs[key]

    def _for_rows(self, key, program):
        """A bf16 decode loop (a plain graph on a CPU) of more than one row
        runs without Grappler's matmul fusion (`matmul_fusion`); one row
        keeps it (its inner product is the faster mat-vec), and so do
        prefills (measured, it neither helped nor hurt them)."""
        if (self.loops_in_xla or key.batch is None or key.batch * key.num_beams == 1
                or key.kind in (ProgramKind.PREFILL, ProgramKind.BEAM_PREFILL)):
            return program
        return matmul_fusion.UnfusedMatmuls(program)

    def compile_ahead(self, key, prefill, prefill_args):
        """On a bucket's first call, trace and compile its XLA program in a
        background thread while the caller runs the prefill: the compiler
        (C++, no GIL) overlaps the prefill's tracing and first run. It
        compiles by running the program on zeros shaped like the prefill's
        output, with a budget of 0 new tokens, so the loop does nothing
        (a plain-graph program is traced only). Returns a future, or None
        if the program was compiled before."""
        if key in self._compiled:
            return None
        self._compiled.add(key)
        shapes = prefill.get_concrete_function(*prefill_args).structured_outputs
        zeros = tf.nest.map_structure(lambda t: tf.zeros(t.shape, t.dtype), shapes)
        params = prefill_args[2]._replace(max_new_tokens=tf.constant(0))
        program = self.get(key)
        if not self.loops_in_xla:
            # A plain graph needs tracing only; a run on zeros could fail
            # (a step at position -1 gathers outside the embedding, which XLA clamps).
            program = program.get_concrete_function
        return self._compiler.submit(program, zeros, params)

    def tracing_counts(self) -> dict:
        return {key: fn.experimental_get_tracing_count() for key, fn in self._programs.items()}

    def _prompt_signature(self, key):
        return [
            tf.TensorSpec([key.batch, key.prompt_length], tf.int32, name="input_ids"),
            tf.TensorSpec([key.batch, key.prompt_length], tf.int32, name="attention_mask"),
            DecodeParams.signature(self.model.config.vocab_size, key.sampler.per_row),
        ]

    # --- the pieces every program shares ------------------------------------------
    def prefill(self, key, ids, mask, params):
        """Run the prompt through the model, filling the cache. Returns the
        last position's logits [B, V], the `KVCache`, the key mask over the
        cache, each row's next position id, the prompt's (padded) length,
        and the prompt's tokens as a [B, V] mask when the repetition penalty
        needs them."""
        batch, prompt_length = dims(ids, 2)
        new = new_tokens(key, params)
        key_mask = tf.concat([mask, tf.ones([batch, new], tf.int32)], axis=1)
        empty = KVCache.empty(self.model.config, batch, prompt_length + new,
                              self.model.embeddings.compute_dtype)
        hidden, _, cache = self.model.forward(ids, key_mask, position_ids(mask), empty,
                                              cache_index=0, block_runner=self.block_runner)
        seen = (repetition.tokens_in_prompt(ids, mask, self.model.config.vocab_size)
                if key.sampler.use_repetition_penalty else tf.zeros([batch, 1], tf.bool))
        return dict(logits=self.model.lm_logits(hidden[:, -1:, :])[:, 0], cache=cache,
                    key_mask=key_mask, next_position=next_positions(mask), seen=seen,
                    prompt_length=tf.cast(prompt_length, tf.int32))

    def decode_step(self, key, tokens, cache, key_mask, positions, step, prompt_length):
        """Feed the token chosen at `step - 1`; return the next logits [B, V]
        and the updated cache."""
        start = key.prompt_length if key.prompt_length is not None else prompt_length
        # A row past its own budget (per-row budgets) is fed padding until
        # the others end; its position must stay inside the embedding table.
        positions = tf.minimum(positions, self.model.config.n_positions - 1)
        hidden, _, cache = self.model.forward(
            tokens[:, None], key_mask, positions[:, None], cache,
            cache_index=start + step - 1, block_runner=self.block_runner)
        return self.model.lm_logits(hidden)[:, 0], cache

    # --- sampling / greedy ------------------------------------------------------------
    def prefill_and_choose(self, key, ids, mask, params):
        """(ids, mask, params) -> the loop state after the first token."""
        state = self.prefill(key, ids, mask, params)
        tokens = key.sampler.choose(state.pop("logits"), params.sampling, 0, state["seen"])
        out = tf.fill([dims(ids, 1)[0], new_tokens(key, params) - 1], params.pad_token_id)
        return dict(state, step=tf.constant(1), tokens=tokens,
                    finished=_finished(None, tokens, 1, params),
                    out=tf.concat([tokens[:, None], out], axis=1))

    def advance(self, key, state, params):
        """The loop state after one more token."""
        step = state["step"]
        logits, cache = self.decode_step(key, state["tokens"], state["cache"], state["key_mask"],
                                         state["next_position"] + step - 1, step,
                                         state["prompt_length"])
        seen = state["seen"]
        if key.sampler.use_repetition_penalty:
            seen = repetition.mark_seen(seen, state["tokens"])
        tokens = key.sampler.choose(logits, params.sampling, step, seen)
        tokens = tf.where(state["finished"], params.pad_token_id, tokens)
        finished = _finished(state["finished"], tokens, step + 1, params)
        return dict(state, step=step + 1, tokens=tokens, finished=finished, cache=cache,
                    seen=seen, out=write_at(state["out"], tokens[:, None], step, axis=1))

    def token_loop(self, key, state, params):
        """(state, params) -> (tokens [B, new_tokens], number produced)."""
        limit = tf.minimum(tf.reduce_max(params.max_new_tokens), new_tokens(key, params))

        def cond(state):
            return tf.logical_and(state["step"] < limit,
                                  tf.logical_not(tf.reduce_all(state["finished"])))

        state = tf.while_loop(cond, lambda s: (self.advance(key, s, params),), (state,))[0]
        return state["out"], state["step"]

    def token_loop_in_place(self, key, state, params):
        """`token_loop` as a plain graph (a bf16 model on a CPU) whose cache
        writes are in place (`InplaceUpdate`), into a copy of the prefill's
        cache that the run owns: outside XLA a write is otherwise a gather
        and a select over the whole cache, per layer and token."""
        with owned_buffer_writes():
            return self.token_loop(key, dict(state, cache=state["cache"].owned_copy()), params)


def _finished(finished, tokens, produced, params):
    """[B] bool: the rows that have ended once `produced` tokens are out:
    at a stop token, or (a per-row budget) at their own budget."""
    done = tf.gather(params.stop_mask, tokens)
    if params.max_new_tokens.shape.rank:
        done |= produced >= params.max_new_tokens
    return done if finished is None else finished | done


def graph_function(fn, **kwargs):
    """A plain TF graph (no XLA)."""
    return tf.function(fn, autograph=False, **kwargs)


def xla_function(fn, **kwargs):
    """One XLA program, traced under `xla_program()`."""
    return tf.function(_XlaTrace(fn), jit_compile=True, autograph=False, **kwargs)


class _XlaTrace:
    """Runs a program body under `xla_program()`. A callable object, not a
    closure: TF keys its retracing warning on the code object, and each
    bucket's program is meant to be traced once of its own."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        with xla_program():
            return self.fn(*args)


class SharedBlockGraph:
    """A `forward` block runner that runs every block through one traced
    graph: the first block's, with each block's weights swapped in
    (`keras.StatelessScope`). A program then traces the block once instead of
    n_layer times, which is most of its tracing time; XLA and Grappler inline
    the calls, so what runs is unchanged.

    That is only right if every block computes what the first computes, so
    construction checks that each block has the first's class, sub-layer
    classes, weight names, shapes, dtypes and dtype policy: a per-block
    change (an adapter, a quantised layer) fails here instead of silently
    not applying in decoding.
    """

    def __init__(self, blocks):
        self.template = blocks[0]
        for block in blocks[1:]:
            _check_same_structure(self.template, block)
        self._fns = {}  # one traced graph per tracing mode (XLA, in-place writes)

    def _run(self, weights, hidden, bias, cache_k, cache_v, cache_index):
        with keras.StatelessScope(list(zip(self.template.weights, weights))):
            return self.template(hidden, bias, cache=(cache_k, cache_v), cache_index=cache_index)

    def tracing_count(self) -> int:
        """How many times the block was traced, over all tracing modes."""
        return sum(fn.experimental_get_tracing_count() for fn in self._fns.values())

    def __call__(self, block, hidden, bias, cache, cache_index, training=None):
        if cache is None or training:
            raise ValueError("SharedBlockGraph runs cached inference only.")
        weights = [w.value for w in block.weights]
        mode = tracing_mode()
        if mode not in self._fns:
            self._fns[mode] = tf.function(self._run, autograph=False,
                                          experimental_attributes={"_noinline": True})
        return self._fns[mode](weights, hidden, bias, cache[0], cache[1], cache_index)


def _structure(block) -> list:
    """What must match for one traced block to stand for another."""
    prefix = block.name + "/"
    layers = [(type(layer).__name__, layer.dtype_policy.name) for layer in block._flatten_layers()]
    weights = [(w.path[len(prefix):] if w.path.startswith(prefix) else w.path,
                tuple(w.shape), str(w.dtype)) for w in block.weights]
    return [type(block).__name__, block.dtype_policy.name, layers, weights]


def _check_same_structure(template, block) -> None:
    expected, found = _structure(template), _structure(block)
    if expected != found:
        what = next(name for name, a, b in zip(("class", "dtype policy", "layers", "weights"),
                                               expected, found) if a != b)
        raise ValueError(
            f"Block {block.name!r} differs from {template.name!r} in its {what} "
            f"({found[['class', 'dtype policy', 'layers', 'weights'].index(what)]!r} vs "
            f"{expected[['class', 'dtype policy', 'layers', 'weights'].index(what)]!r}); decode "
            "programs run every block through one traced block graph, so all blocks must match.")
