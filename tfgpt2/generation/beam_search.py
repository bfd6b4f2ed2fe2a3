"""Beam search as one XLA program after the shared prefill, with
transformers' rules: the best `num_beams` live hypotheses per prompt are
extended each step, a hypothesis that picks a stop token among the best
`num_beams` candidates enters the prompt's pool of finished ones (scored
sum log p / length ** length_penalty), and a prompt is done when its pool is
full and (unless `early_stopping`) no live beam can beat its worst entry.
"""

from __future__ import annotations

import tensorflow as tf

from tfgpt2.generation import repetition, sampling
from tfgpt2.modeling.compiled import write_at
from tfgpt2.modeling.masking import MASKED_VALUE


class BeamSearch:
    """The program body: (prefill result, params) -> the best hypotheses per
    prompt: sequences [B, beams, new_tokens], scores [B, beams], lengths
    [B, beams] (0 for an empty pool slot), and the number of steps run."""

    def __init__(self, programs, key):
        self.programs, self.key = programs, key
        self.beams, self.vocab = key.num_beams, programs.model.config.vocab_size
        self.heads = programs.model.config.n_head

    def __call__(self, prefilled, params):
        key, beams, batch = self.key, self.beams, self.key.batch
        rows = batch * beams
        # Every beam of a prompt starts from the same prefill.
        beam_rows = tf.repeat(tf.range(batch), beams)
        expand = lambda t: tf.gather(t, beam_rows)  # noqa: E731
        key_mask, next_position = expand(prefilled["key_mask"]), expand(prefilled["next_position"])
        # Only the first beam is live at the start, so the first step picks
        # `beams` distinct tokens.
        beam_scores = tf.tile(tf.concat([[0.0], tf.fill([beams - 1], MASKED_VALUE)], 0), [batch])
        pad = params.pad_token_id
        state = dict(
            step=tf.constant(0), tokens=tf.zeros([rows], tf.int32),
            cache=prefilled["cache"].reorder(beam_rows, self.heads),
            seen=expand(prefilled["seen"]), beam_scores=beam_scores,
            sequences=tf.fill([rows, key.new_tokens], pad),
            pool_sequences=tf.fill([batch, beams, key.new_tokens], pad),
            pool_scores=tf.fill([batch, beams], MASKED_VALUE),
            pool_lengths=tf.zeros([batch, beams], tf.int32),
            done=tf.zeros([batch], tf.bool))

        def body(state):
            logits, cache = self.programs.decode_step(
                key, state["tokens"], state["cache"], key_mask,
                next_position + state["step"] - 1, state["step"], prefilled["prompt_length"])
            return (self._select(dict(state, cache=cache), logits, params),)

        def cond(state):
            return (state["step"] < limit) & ~tf.reduce_all(state["done"])

        limit = tf.minimum(params.max_new_tokens, key.new_tokens)
        state = self._select(state, expand(prefilled["logits"]), params)
        state = tf.while_loop(cond, body, (state,))[0]
        # Prompts whose search ran out of steps also rank their live beams.
        steps = state["step"]
        norm = tf.pow(tf.cast(steps, tf.float32), params.length_penalty)
        live = ~state["done"][:, None] & tf.ones([batch, beams], tf.bool)
        live_scores = tf.reshape(state["beam_scores"], [batch, beams]) / norm
        pool = _merge_pool(state, tf.reshape(state["sequences"], [batch, beams, key.new_tokens]),
                           tf.where(live, live_scores, MASKED_VALUE),
                           tf.where(live, steps, 0), beams)
        return pool["pool_sequences"], pool["pool_scores"], pool["pool_lengths"], steps

    def _select(self, state, logits, params):
        """Extend every beam by one token: finished hypotheses go to the
        pool, the best `beams` unfinished ones live on."""
        key, beams, vocab, batch = self.key, self.beams, self.vocab, self.key.batch
        step = state["step"]
        if key.sampler.use_repetition_penalty:
            logits = sampling.apply_repetition_penalty(logits, state["seen"],
                                                       params.sampling.repetition_penalty)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        scores = tf.reshape(state["beam_scores"][:, None] + log_probs, [batch, beams * vocab])
        top_scores, top_index = tf.math.top_k(scores, k=2 * beams)
        source_beam, token = top_index // vocab, top_index % vocab
        source_row = source_beam + beams * tf.range(batch)[:, None]  # [B, 2K]
        is_stop = tf.gather(params.stop_mask, token)
        length = step + 1
        norm = tf.pow(tf.cast(length, tf.float32), params.length_penalty)

        # A stop token among the best `beams` candidates ends a hypothesis.
        candidate_sequences = write_at(tf.gather(state["sequences"], source_row),
                                       token[:, :, None], step, axis=2)
        eligible = is_stop & (tf.range(2 * beams) < beams)[None] & ~state["done"][:, None]
        pool = _merge_pool(state, candidate_sequences,
                           tf.where(eligible, top_scores / norm, MASKED_VALUE),
                           tf.where(eligible, length, 0), beams)

        running = tf.where(is_stop, MASKED_VALUE, top_scores)
        next_scores, order = tf.math.top_k(running, k=beams)
        next_rows = tf.reshape(tf.gather(source_row, order, batch_dims=1), [-1])
        next_tokens = tf.reshape(tf.gather(token, order, batch_dims=1), [-1])
        seen = tf.gather(state["seen"], next_rows)
        if key.sampler.use_repetition_penalty:
            seen = repetition.mark_seen(seen, next_tokens)

        # transformers' stopping rule for a prompt's beams. A pool slot is
        # filled when it holds a hypothesis, i.e. has a length.
        pool_full = tf.reduce_all(pool["pool_lengths"] > 0, axis=1)
        worst_kept = tf.reduce_min(pool["pool_scores"], axis=1)
        if key.early_stopping:
            done = state["done"] | pool_full
        else:
            done = state["done"] | (pool_full & (worst_kept >= next_scores[:, 0] / norm))
        return dict(
            state, step=step + 1, tokens=next_tokens, seen=seen, done=done,
            cache=state["cache"].reorder(next_rows, self.heads),
            beam_scores=tf.reshape(next_scores, [-1]),
            sequences=write_at(tf.gather(state["sequences"], next_rows), next_tokens[:, None],
                               step, axis=1),
            **pool)


def _merge_pool(state, sequences, scores, lengths, beams):
    """Keep the `beams` best of the finished pool plus new hypotheses (a
    candidate that is not a hypothesis has score MASKED_VALUE, length 0)."""
    all_scores = tf.concat([state["pool_scores"], scores], axis=1)
    all_sequences = tf.concat([state["pool_sequences"], sequences], axis=1)
    all_lengths = tf.concat([state["pool_lengths"], lengths], axis=1)
    best_scores, best = tf.math.top_k(all_scores, k=beams)
    return dict(pool_scores=best_scores,
                pool_sequences=tf.gather(all_sequences, best, batch_dims=1),
                pool_lengths=tf.gather(all_lengths, best, batch_dims=1))
