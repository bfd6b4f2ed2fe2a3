"""The compiled decode programs: one XLA program per shape bucket.

A program is: prefill over the (left-padded) prompt, writing every layer's
fixed-size KV cache, then a `tf.while_loop` of single-token steps through the
same `forward` the model is built from, with the sampler and the per-row stop
logic inside. Programs are cached per (batch, prompt, new-token) bucket and
static sampler switches, so later calls with other prompts reuse them.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from tfgpt2 import sampling
from tfgpt2.layers import unfused_matmuls

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
    """What a compiled program's shapes and code depend on."""

    kind: str  # "sample" (greedy included), "beam", "prefill", "step"
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


# --- the compiled programs ------------------------------------------------------------


class DecodePrograms:
    """The compiled prefill/decode programs of one model, cached by key."""

    def __init__(self, model):
        self.model = model
        self._programs: dict[ProgramKey, tf.types.experimental.GenericFunction] = {}

    def get(self, key: ProgramKey):
        if key not in self._programs:
            build = {"sample": self._sample_program, "beam": self._beam_program,
                     "prefill": self._prefill_program, "step": self._step_program}[key.kind]
            self._programs[key] = build(key)
        return self._programs[key]

    @staticmethod
    def _compile(fn, **kwargs):
        """tf.function(jit_compile=True), traced with unfused weight matmuls."""
        return tf.function(_UnfusedTrace(fn), jit_compile=True, autograph=False, **kwargs)

    def tracing_counts(self) -> dict:
        return {key: fn.experimental_get_tracing_count() for key, fn in self._programs.items()}

    # --- shared pieces ----------------------------------------------------------
    def _empty_caches(self, batch, length):
        cfg = self.model.config
        dtype = self.model.embeddings.compute_dtype
        shape = [batch * cfg.n_head, length, cfg.head_dim]
        return [(tf.zeros(shape, dtype), tf.zeros(shape, dtype)) for _ in range(cfg.n_layer)]

    def _gather_rows(self, cache, rows):
        """Pick batch rows of a [B * H, S, D] cache (beam reordering)."""
        heads = self.model.config.n_head
        shape = tf.shape(cache)
        per_row = tf.reshape(cache, [-1, heads, shape[1], shape[2]])
        return tf.reshape(tf.gather(per_row, rows), [-1, shape[1], shape[2]])

    def _prefill(self, key, ids, mask):
        """Run the prompt through the model, filling the caches. Returns the
        last position's logits [B, V], the caches, the key mask over the
        cache, and each row's next position id."""
        batch, cache_length = ids.shape[0], key.prompt_length + key.new_tokens
        key_mask = tf.concat([mask, tf.ones([batch, key.new_tokens], tf.int32)], axis=1)
        positions = tf.maximum(tf.cumsum(mask, axis=1) - 1, 0)
        hidden, _, caches = self.model.forward(
            ids, key_mask, positions, self._empty_caches(batch, cache_length), cache_index=0)
        logits = self.model.lm_logits(hidden[:, -1:, :])[:, 0]
        return logits, caches, key_mask, tf.reduce_sum(mask, axis=1)

    def _decode_step(self, key, tokens, caches, key_mask, positions, step):
        """Feed the token chosen at `step - 1`; return the next logits [B, V]."""
        hidden, _, caches = self.model.forward(
            tokens[:, None], key_mask, positions[:, None], caches,
            cache_index=key.prompt_length + step - 1)
        return self.model.lm_logits(hidden)[:, 0], caches

    @staticmethod
    def _seen_from_prompt(ids, mask, vocab_size):
        """[B, V] bool: which tokens occur in each row's prompt (not padding)."""
        batch, length = ids.shape
        rows = tf.repeat(tf.range(batch), length)
        indices = tf.stack([rows, tf.reshape(ids, [-1])], axis=1)
        updates = tf.reshape(mask, [-1])
        counts = tf.scatter_nd(indices, updates, [batch, vocab_size])
        return counts > 0

    @staticmethod
    def _choose(key, logits, seen, params, step):
        processed = sampling.process_logits(
            logits, seen=seen,
            repetition_penalty=params["repetition_penalty"] if key.use_repetition_penalty else None,
            do_sample=key.do_sample,
            temperature=params["temperature"] if key.use_temperature else None,
            top_k=key.top_k, top_p=params["top_p"] if key.use_top_p else None)
        seed = params["seed"] + tf.stack([0, step])
        return sampling.select_tokens(processed, key.do_sample, seed)

    def _signature(self, key, batch):
        return [
            tf.TensorSpec([batch, key.prompt_length], tf.int32, name="input_ids"),
            tf.TensorSpec([batch, key.prompt_length], tf.int32, name="attention_mask"),
            {
                "max_new_tokens": tf.TensorSpec([], tf.int32),
                "temperature": tf.TensorSpec([], tf.float32),
                "top_p": tf.TensorSpec([], tf.float32),
                "repetition_penalty": tf.TensorSpec([], tf.float32),
                "length_penalty": tf.TensorSpec([], tf.float32),
                "stop_mask": tf.TensorSpec([self.model.config.vocab_size], tf.bool),
                "pad_token_id": tf.TensorSpec([], tf.int32),
                "seed": tf.TensorSpec([2], tf.int32),
            },
        ]

    # --- sampling / greedy ------------------------------------------------------------
    def _initial_state(self, key, ids, mask, params):
        vocab = self.model.config.vocab_size
        logits, caches, key_mask, next_position = self._prefill(key, ids, mask)
        seen = (self._seen_from_prompt(ids, mask, vocab) if key.use_repetition_penalty
                else tf.zeros([ids.shape[0], 1], tf.bool))
        tokens = self._choose(key, logits, seen, params, 0)
        finished = tf.gather(params["stop_mask"], tokens)
        out = tf.fill([ids.shape[0], key.new_tokens], params["pad_token_id"])
        out = _write_column(out, tokens, 0)
        return dict(step=tf.constant(1), tokens=tokens, finished=finished, caches=caches,
                    seen=seen, out=out, key_mask=key_mask, next_position=next_position)

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

    def _sample_program(self, key):
        def program(ids, mask, params):
            state = self._initial_state(key, ids, mask, params)
            limit = tf.minimum(params["max_new_tokens"], key.new_tokens)

            def cond(state):
                return tf.logical_and(state["step"] < limit,
                                      tf.logical_not(tf.reduce_all(state["finished"])))

            state = tf.while_loop(cond, lambda s: (self._advance(key, s, params),), (state,))[0]
            return state["out"], state["step"]

        return self._compile(program, input_signature=self._signature(key, key.batch))

    # Streaming runs the same two pieces with Python in between.
    def _prefill_program(self, key):
        def program(ids, mask, params):
            return self._initial_state(key, ids, mask, params)

        return self._compile(program, input_signature=self._signature(key, key.batch))

    def _step_program(self, key):
        def program(state, params):
            return self._advance(key, state, params)

        return self._compile(program)

    # --- beam search ---------------------------------------------------------------------
    def _beam_program(self, key):
        beams, vocab = key.num_beams, self.model.config.vocab_size
        new_tokens = key.new_tokens

        def program(ids, mask, params):
            batch = ids.shape[0]
            rows = batch * beams
            logits, caches, key_mask, next_position = self._prefill(key, ids, mask)
            # Every beam of a prompt starts from the same prefill.
            expand = lambda t: tf.repeat(t, beams, axis=0)  # noqa: E731
            beam_rows = tf.repeat(tf.range(batch), beams)
            caches = [(self._gather_rows(k, beam_rows), self._gather_rows(v, beam_rows))
                      for k, v in caches]
            logits, key_mask, next_position = expand(logits), expand(key_mask), expand(next_position)
            seen = (expand(self._seen_from_prompt(ids, mask, vocab)) if key.use_repetition_penalty
                    else tf.zeros([rows, 1], tf.bool))
            # Only the first beam is live at the start, so the first step picks
            # `beams` distinct tokens.
            beam_scores = tf.tile(tf.concat([[0.0], tf.fill([beams - 1], -1e9)], 0), [batch])
            pad = params["pad_token_id"]
            state = dict(
                step=tf.constant(0), tokens=tf.zeros([rows], tf.int32), caches=caches, seen=seen,
                beam_scores=beam_scores, sequences=tf.fill([rows, new_tokens], pad),
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
            state = select(state, logits)
            state = tf.while_loop(cond, body, (state,))[0]
            # Prompts whose search ran out of steps also rank their live beams.
            steps = state["step"]
            norm = tf.pow(tf.cast(steps, tf.float32), params["length_penalty"])
            live_scores = tf.reshape(state["beam_scores"], [batch, beams]) / norm
            live_scores = tf.where(state["done"][:, None], -1e9, live_scores)
            pool = _merge_pool(state, tf.reshape(state["sequences"], [batch, beams, new_tokens]),
                               live_scores, tf.fill([batch, beams], steps), beams)
            return pool["pool_sequences"], pool["pool_scores"], pool["pool_lengths"], steps

        return self._compile(program, input_signature=self._signature(key, key.batch))


class _UnfusedTrace:
    """Runs a program body with unfused weight matmuls. A callable object, not
    a closure: TF keys its retracing warning on the code object, and each
    bucket's program is meant to be traced once of its own."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        with unfused_matmuls():
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
