"""The decode programs, built per shape bucket and cached.

A generation is two programs:
- prefill: the (left-padded) prompt through `forward`, writing every layer's
  fixed-size KV cache, and the first token chosen. A plain TF graph: it runs
  once per call on a compute-bound batch of positions, and keeping it out of
  XLA halves what XLA must compile on a first call.
- the token loop: one XLA program, a `tf.while_loop` of single-token steps
  through the same `forward`, with the sampler and the per-row stop logic
  inside. The caches are updated in place (dynamic-update-slice).
Streaming runs the same prefill, then the loop's step as its own XLA program
with Python in between. Beam search has its own XLA loop after the prefill.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math

import keras
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from tfgpt2.generation import sampling
from tfgpt2.modeling.layers import xla_program

# --- buckets ----------------------------------------------------------------------


def bucket_length(n: int) -> int:
    """Powers of two up to 64, then multiples of 64: a new length rarely
    compiles a new program, and a short prompt is padded little."""
    if n <= 64:
        return max(8, 1 << (n - 1).bit_length())
    return 64 * math.ceil(n / 64)


def bucket_batch(n: int) -> int:
    return 1 << (n - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class ProgramKey:
    """What a program's shapes and code depend on."""

    kind: str  # "prefill", "loop", "step", "beam_prefill", "beam"
    batch: int
    prompt_length: int
    new_tokens: int
    do_sample: bool = False
    top_k: int = 0
    use_top_p: bool = False
    use_repetition_penalty: bool = False
    use_temperature: bool = False
    num_beams: int = 1
    early_stopping: bool = False


# --- the programs ----------------------------------------------------------------------


class DecodePrograms:
    """The prefill and decode programs of one model, cached by key."""

    def __init__(self, model):
        self.model = model
        self._programs: dict[ProgramKey, tf.types.experimental.GenericFunction] = {}
        self._run_block = SharedBlockGraph(model.blocks[0])
        self._compiled: set[ProgramKey] = set()
        self._compiler = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tfgpt2-xla")

    def get(self, key: ProgramKey):
        if key not in self._programs:
            build = {"prefill": self._prefill_program, "loop": self._loop_program,
                     "step": self._step_program, "beam_prefill": self._beam_prefill_program,
                     "beam": self._beam_program}[key.kind]
            self._programs[key] = build(key)
        return self._programs[key]

    def compile_ahead(self, key, prefill, prefill_args):
        """On a bucket's first call, trace and compile its XLA program in a
        background thread while the caller runs the prefill: the compiler
        (C++, no GIL) overlaps the prefill's tracing and first run. It
        compiles by running the program on zeros shaped like the prefill's
        output, with a budget of 0 new tokens, so the loop does nothing.
        Returns a future, or None if the program was compiled before."""
        if key in self._compiled:
            return None
        self._compiled.add(key)
        shapes = prefill.get_concrete_function(*prefill_args).structured_outputs
        zeros = tf.nest.map_structure(lambda t: tf.zeros(t.shape, t.dtype), shapes)
        params = dict(prefill_args[2], max_new_tokens=tf.constant(0))
        program = self.get(key)
        return self._compiler.submit(program, zeros, params)

    def tracing_counts(self) -> dict:
        return {key: fn.experimental_get_tracing_count() for key, fn in self._programs.items()}

    @staticmethod
    def _graph(fn, **kwargs):
        """A plain TF graph (no XLA)."""
        return tf.function(fn, autograph=False, **kwargs)

    @staticmethod
    def _xla(fn, **kwargs):
        """One XLA program (traced under `layers.xla_program()`)."""
        return tf.function(_XlaTrace(fn), jit_compile=True, autograph=False, **kwargs)

    def _signature(self, key):
        return [
            tf.TensorSpec([key.batch, key.prompt_length], tf.int32, name="input_ids"),
            tf.TensorSpec([key.batch, key.prompt_length], tf.int32, name="attention_mask"),
            self._params_signature(),
        ]

    def _params_signature(self):
        return {
            "max_new_tokens": tf.TensorSpec([], tf.int32),
            "temperature": tf.TensorSpec([], tf.float32),
            "top_p": tf.TensorSpec([], tf.float32),
            "repetition_penalty": tf.TensorSpec([], tf.float32),
            "length_penalty": tf.TensorSpec([], tf.float32),
            "stop_mask": tf.TensorSpec([self.model.config.vocab_size], tf.bool),
            "pad_token_id": tf.TensorSpec([], tf.int32),
            "seed": tf.TensorSpec([2], tf.int32),
        }

    # --- shared pieces ----------------------------------------------------------
    def _empty_caches(self, batch, length):
        cfg = self.model.config
        dtype = self.model.embeddings.compute_dtype
        shape = [batch * cfg.n_head, length, cfg.head_dim]
        return [(tf.zeros(shape, dtype), tf.zeros(shape, dtype)) for _ in range(cfg.n_layer)]

    def _gather_rows(self, cache, rows):
        """Pick batch rows of a [B * H, S, D] cache (beam reordering)."""
        heads = self.model.config.n_head
        _, length, depth = cache.shape
        per_row = tf.reshape(cache, [-1, heads, length, depth])
        return tf.reshape(tf.gather(per_row, rows), [-1, length, depth])

    def _prefill(self, key, ids, mask):
        """Run the prompt through the model, filling the caches. Returns the
        last position's logits [B, V], the caches, the key mask over the
        cache, each row's next position id, and the prompt's tokens as a
        [B, V] mask when the repetition penalty needs them."""
        batch, cache_length = ids.shape[0], key.prompt_length + key.new_tokens
        key_mask = tf.concat([mask, tf.ones([batch, key.new_tokens], tf.int32)], axis=1)
        positions = tf.maximum(tf.cumsum(mask, axis=1) - 1, 0)
        hidden, _, caches = self.model.forward(
            ids, key_mask, positions, self._empty_caches(batch, cache_length), cache_index=0,
            run_block=self._run_block)
        seen = (self._seen_from_prompt(ids, mask, self.model.config.vocab_size)
                if key.use_repetition_penalty else tf.zeros([batch, 1], tf.bool))
        return dict(logits=self.model.lm_logits(hidden[:, -1:, :])[:, 0], caches=caches,
                    key_mask=key_mask, next_position=tf.reduce_sum(mask, axis=1), seen=seen)

    def _decode_step(self, key, tokens, caches, key_mask, positions, step):
        """Feed the token chosen at `step - 1`; return the next logits [B, V]."""
        hidden, _, caches = self.model.forward(
            tokens[:, None], key_mask, positions[:, None], caches,
            cache_index=key.prompt_length + step - 1, run_block=self._run_block)
        return self.model.lm_logits(hidden)[:, 0], caches

    @staticmethod
    def _seen_from_prompt(ids, mask, vocab_size):
        """[B, V] bool: which tokens occur in each row's prompt (not padding)."""
        batch, length = ids.shape
        rows = tf.repeat(tf.range(batch), length)
        indices = tf.stack([rows, tf.reshape(ids, [-1])], axis=1)
        counts = tf.scatter_nd(indices, tf.reshape(mask, [-1]), [batch, vocab_size])
        return counts > 0

    @staticmethod
    def _choose(key, logits, seen, params, step):
        seed = params["seed"] + tf.stack([0, step])
        return sampling.choose_tokens(
            logits, seed, seen=seen,
            repetition_penalty=params["repetition_penalty"] if key.use_repetition_penalty else None,
            do_sample=key.do_sample,
            temperature=params["temperature"] if key.use_temperature else None,
            top_k=key.top_k, top_p=params["top_p"] if key.use_top_p else None)

    # --- sampling / greedy ------------------------------------------------------------
    def _prefill_program(self, key):
        """(ids, mask, params) -> the loop state after the first token."""
        def program(ids, mask, params):
            state = self._prefill(key, ids, mask)
            tokens = self._choose(key, state.pop("logits"), state["seen"], params, 0)
            out = tf.fill([key.batch, key.new_tokens - 1], params["pad_token_id"])
            return dict(state, step=tf.constant(1), tokens=tokens,
                        finished=tf.gather(params["stop_mask"], tokens),
                        out=tf.concat([tokens[:, None], out], axis=1))

        return self._graph(program, input_signature=self._signature(key))

    def _advance(self, key, state, params):
        step = state["step"]
        logits, caches = self._decode_step(key, state["tokens"], state["caches"], state["key_mask"],
                                           state["next_position"] + step - 1, step)
        seen = state["seen"]
        if key.use_repetition_penalty:
            seen = tf.logical_or(seen, tf.one_hot(state["tokens"], seen.shape[1], on_value=True,
                                                  off_value=False))
        tokens = self._choose(key, logits, seen, params, step)
        tokens = tf.where(state["finished"], params["pad_token_id"], tokens)
        finished = tf.logical_or(state["finished"], tf.gather(params["stop_mask"], tokens))
        return dict(state, step=step + 1, tokens=tokens, finished=finished, caches=caches,
                    seen=seen, out=_write_column(state["out"], tokens, step))

    def _loop_program(self, key):
        """(state, params) -> (tokens [B, new_tokens], number produced)."""
        def program(state, params):
            limit = tf.minimum(params["max_new_tokens"], key.new_tokens)

            def cond(state):
                return tf.logical_and(state["step"] < limit,
                                      tf.logical_not(tf.reduce_all(state["finished"])))

            state = tf.while_loop(cond, lambda s: (self._advance(key, s, params),), (state,))[0]
            return state["out"], state["step"]

        return self._xla(program)

    def _step_program(self, key):
        """(state, params) -> state after one more token (streaming)."""
        return self._xla(lambda state, params: self._advance(key, state, params))

    # --- beam search ---------------------------------------------------------------------
    def _beam_prefill_program(self, key):
        """(ids, mask, params) -> the prefill's logits, caches and masks."""
        return self._graph(lambda ids, mask, params: self._prefill(key, ids, mask),
                           input_signature=self._signature(key))

    def _beam_program(self, key):
        """(prefill result, params) -> the best finished hypotheses per prompt:
        sequences [B, beams, new_tokens], scores [B, beams], lengths [B, beams]."""
        beams, vocab = key.num_beams, self.model.config.vocab_size
        batch, new_tokens = key.batch, key.new_tokens
        rows = batch * beams

        def program(prefilled, params):
            # Every beam of a prompt starts from the same prefill.
            beam_rows = tf.repeat(tf.range(batch), beams)
            expand = lambda t: tf.gather(t, beam_rows)  # noqa: E731
            caches = [(self._gather_rows(k, beam_rows), self._gather_rows(v, beam_rows))
                      for k, v in prefilled["caches"]]
            key_mask, next_position = expand(prefilled["key_mask"]), expand(prefilled["next_position"])
            # Only the first beam is live at the start, so the first step picks
            # `beams` distinct tokens.
            beam_scores = tf.tile(tf.concat([[0.0], tf.fill([beams - 1], -1e9)], 0), [batch])
            pad = params["pad_token_id"]
            state = dict(
                step=tf.constant(0), tokens=tf.zeros([rows], tf.int32), caches=caches,
                seen=expand(prefilled["seen"]), beam_scores=beam_scores,
                sequences=tf.fill([rows, new_tokens], pad),
                pool_sequences=tf.fill([batch, beams, new_tokens], pad),
                pool_scores=tf.fill([batch, beams], -1e9),
                pool_lengths=tf.zeros([batch, beams], tf.int32),
                done=tf.zeros([batch], tf.bool))

            def select(state, logits):
                """Extend every beam by one token: finished hypotheses go to
                the pool, the best `beams` unfinished ones live on."""
                step = state["step"]
                if key.use_repetition_penalty:
                    logits = sampling.apply_repetition_penalty(logits, state["seen"],
                                                               params["repetition_penalty"])
                log_probs = tf.nn.log_softmax(logits, axis=-1)
                scores = tf.reshape(state["beam_scores"][:, None] + log_probs, [batch, beams * vocab])
                top_scores, top_index = tf.math.top_k(scores, k=2 * beams)
                source_beam, token = top_index // vocab, top_index % vocab
                source_row = source_beam + beams * tf.range(batch)[:, None]  # [B, 2K]
                is_stop = tf.gather(params["stop_mask"], token)
                length = step + 1
                norm = tf.pow(tf.cast(length, tf.float32), params["length_penalty"])

                # A stop token among the best `beams` candidates ends a hypothesis.
                candidate_sequences = _write_column_3d(
                    tf.gather(state["sequences"], source_row), token, step)
                eligible = is_stop & (tf.range(2 * beams) < beams)[None] & ~state["done"][:, None]
                pool = _merge_pool(
                    state, candidate_sequences, tf.where(eligible, top_scores / norm, -1e9),
                    tf.fill([batch, 2 * beams], length), beams)

                running = tf.where(is_stop, -1e9, top_scores)
                next_scores, order = tf.math.top_k(running, k=beams)
                next_rows = tf.reshape(tf.gather(source_row, order, batch_dims=1), [-1])
                next_tokens = tf.reshape(tf.gather(token, order, batch_dims=1), [-1])
                seen = tf.gather(state["seen"], next_rows)
                if key.use_repetition_penalty:
                    seen = tf.logical_or(seen, tf.one_hot(next_tokens, vocab, on_value=True,
                                                          off_value=False))

                # transformers' stopping rule for a prompt's beams.
                worst_kept = tf.reduce_min(pool["pool_scores"], axis=1)
                pool_full = worst_kept > -1e8
                if key.early_stopping:
                    done = state["done"] | pool_full
                else:
                    done = state["done"] | (pool_full & (worst_kept >= next_scores[:, 0] / norm))
                return dict(
                    state, step=step + 1, tokens=next_tokens, seen=seen, done=done,
                    caches=[(self._gather_rows(k, next_rows), self._gather_rows(v, next_rows))
                            for k, v in state["caches"]],
                    beam_scores=tf.reshape(next_scores, [-1]),
                    sequences=_write_column(tf.gather(state["sequences"], next_rows),
                                            next_tokens, step),
                    **pool)

            def body(state):
                logits, caches = self._decode_step(
                    key, state["tokens"], state["caches"], key_mask,
                    next_position + state["step"] - 1, state["step"])
                return (select(dict(state, caches=caches), logits),)

            def cond(state):
                return (state["step"] < limit) & ~tf.reduce_all(state["done"])

            limit = tf.minimum(params["max_new_tokens"], new_tokens)
            state = select(state, expand(prefilled["logits"]))
            state = tf.while_loop(cond, body, (state,))[0]
            # Prompts whose search ran out of steps also rank their live beams.
            steps = state["step"]
            norm = tf.pow(tf.cast(steps, tf.float32), params["length_penalty"])
            live_scores = tf.reshape(state["beam_scores"], [batch, beams]) / norm
            live_scores = tf.where(state["done"][:, None], -1e9, live_scores)
            pool = _merge_pool(state, tf.reshape(state["sequences"], [batch, beams, new_tokens]),
                               live_scores, tf.fill([batch, beams], steps), beams)
            return pool["pool_sequences"], pool["pool_scores"], pool["pool_lengths"], steps

        return self._xla(program)


class SharedBlockGraph:
    """Runs any block through one traced graph: block 0's, with that block's
    weights swapped in (keras.StatelessScope). A program then traces the
    block once instead of n_layer times, which is most of its tracing time;
    XLA and Grappler inline the calls, so what runs is unchanged."""

    def __init__(self, template):
        self.template = template
        self._fn = tf.function(self._run, autograph=False, experimental_attributes={"_noinline": True})

    def _run(self, weights, hidden, bias, cache_k, cache_v, cache_index):
        with keras.StatelessScope(list(zip(self.template.weights, weights))):
            return self.template(hidden, bias, cache=(cache_k, cache_v), cache_index=cache_index)

    def __call__(self, block, hidden, bias, cache, cache_index):
        weights = [w.value for w in block.weights]
        return self._fn(weights, hidden, bias, cache[0], cache[1], cache_index)


class _XlaTrace:
    """Runs a program body under `layers.xla_program()`. A callable object, not
    a closure: TF keys its retracing warning on the code object, and each
    bucket's program is meant to be traced once of its own."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        with xla_program():
            return self.fn(*args)


def _write_column(matrix, column, index):
    """matrix[:, index] = column, as an in-place dynamic-update-slice."""
    return xla.dynamic_update_slice(matrix, column[:, None], tf.stack([0, index]))


def _write_column_3d(tensor, column, index):
    return xla.dynamic_update_slice(tensor, column[:, :, None], tf.stack([0, 0, index]))


def _merge_pool(state, sequences, scores, lengths, beams):
    """Keep the `beams` best of the finished pool plus new hypotheses."""
    all_scores = tf.concat([state["pool_scores"], scores], axis=1)
    all_sequences = tf.concat([state["pool_sequences"], sequences], axis=1)
    all_lengths = tf.concat([state["pool_lengths"], lengths], axis=1)
    best_scores, best = tf.math.top_k(all_scores, k=beams)
    return dict(pool_scores=best_scores,
                pool_sequences=tf.gather(all_sequences, best, batch_dims=1),
                pool_lengths=tf.gather(all_lengths, best, batch_dims=1))
