"""The compiled train and eval steps, run under any `tf.distribute` strategy.

A replica's gradient is one program (XLA with `jit_compile`, else a plain
TF graph, `finetune`'s choice on CPUs): it sets its dropout
seeds, loops over its accumulation micro-batches (a `tf.while_loop`, one
micro-batch's activations alive at a time) and returns the summed gradient
of its share of the global mean loss. Outside that program the replicas
all-reduce the gradient, clip its global norm, and the Keras optimizer
applies it.
With a single replica (and no fp16 loss scaling) the clipping and the
update are part of the same XLA program; when the gradient runs as a plain
TF graph instead (`jit_compile=False`), they are an XLA program of their own.

Why this gives the same weights under every strategy: each row's loss is
divided by the number of targets of the whole global batch (computed by the
input pipeline), so the all-reduced sum is the global mean gradient however
the rows are spread over replicas and micro-batches; clipping sees that sum.

Dropout masks depend only on (seed, step, replica, micro-batch, layer):
the seed generators' states are set at the start of every step, so a
resumed run draws the masks the uninterrupted run drew, and replicas draw
different masks.
"""

from __future__ import annotations

import tensorflow as tf

from tfgpt2.modeling.losses import target_nll

_SEED_STRIDE = 1 << 20  # dropout draws per (step, replica) before streams could meet
_MIRRORED = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)


class Steps:
    """Builds the train and eval steps of `model` under `strategy`.

    Args:
      model: a `GPT2LMHeadModel` built under `strategy.scope()`.
      optimizer: its Keras optimizer (built, same scope).
      strategy: the `tf.distribute` strategy.
      grad_accum_steps: micro-batches per replica per step.
      clip_norm: global gradient norm limit (0: no clipping).
      seed: the run's seed (dropout streams).
      jit_compile: XLA-compile each replica's gradient program (and, with
        one replica, its update too). False leaves the gradient a plain TF
        graph; the one-replica update is XLA-compiled either way.
    """

    def __init__(self, model, optimizer, strategy, *, grad_accum_steps: int = 1,
                 clip_norm: float = 0.0, seed: int = 0, jit_compile: bool = True):
        from tfgpt2.modeling.quantization import refuse_if_quantized

        refuse_if_quantized(model, "fine-tune it")
        self.model, self.optimizer, self.strategy = model, optimizer, strategy
        self.grad_accum_steps, self.clip_norm, self.seed = grad_accum_steps, clip_norm, seed
        self.num_replicas = strategy.num_replicas_in_sync
        self.loss_scaling = hasattr(optimizer, "dynamic_scale")
        self.variables = model.trainable_variables
        self.seed_states = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        # The run's one way to step, chosen here; only its programs are built.
        # Under a Mirrored strategy the optimizer's apply is a merge_call even
        # with one replica (one GPU, `--strategy=mirrored`), which cannot run
        # inside a nested tf.function: only the default and one-device
        # strategies may fuse the update into the replica's program.
        fused = (self.num_replicas == 1 and not self.loss_scaling
                 and not isinstance(strategy, _MIRRORED))
        if fused and jit_compile:
            # One replica needs no all-reduce between gradient and update, so
            # the update joins the same XLA program (the AdamW arithmetic over
            # every weight fuses). fp16's loss-scale bookkeeping stays outside.
            self._replica_step = self._one_program_step
            self._update = tf.function(self._replica_update, jit_compile=True)
        elif fused:
            # A plain-graph gradient (`finetune`'s choice on CPUs, where TF's
            # oneDNN matmuls are faster), then the update as an XLA program of
            # its own: as plain TF ops AdamW reads and writes every weight a
            # dozen times over (~0.5 s of a 2.9 s bf16 step on the GPT-2
            # small config).
            self._replica_step = self._grads_then_update_step
            self._grads = tf.function(self._replica_grads, jit_compile=False)
            self._clip_and_apply = tf.function(self._replica_clip_and_apply, jit_compile=True)
        else:
            self._replica_step = self._all_reduce_step
            self._grads = tf.function(self._replica_grads, jit_compile=jit_compile)
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    # --- one replica, inside XLA ---------------------------------------------
    def _micro_batch_grads(self, tokens, mask, denominator, scale):
        with tf.GradientTape() as tape:
            logits = self.model(tokens[:, :-1], attention_mask=mask[:, :-1],
                                training=True)["logits"]
            nll, _ = target_nll(logits, tokens[:, 1:], mask[:, 1:])
            loss = tf.reduce_sum(nll) / denominator
            scaled = loss * scale if self.loss_scaling else loss
        grads = tape.gradient(scaled, self.variables)
        # The tied embedding's gradient arrives as gather slices + a dense
        # head term; one dense tensor all-reduces and accumulates simply.
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def _replica_grads(self, tokens, mask, denominator, seeds, scale):
        for state, value in zip(self.seed_states, tf.unstack(seeds)):
            state.assign(value)
        k = self.grad_accum_steps
        if k == 1:
            return self._micro_batch_grads(tokens, mask, denominator, scale)
        micro = tokens.shape[0] // k
        tokens = tf.reshape(tokens, [k, micro, tokens.shape[1]])
        mask = tf.reshape(mask, [k, micro, mask.shape[1]])

        def body(i, loss, grads):
            step_loss, step_grads = self._micro_batch_grads(tokens[i], mask[i], denominator, scale)
            return i + 1, loss + step_loss, [a + g for a, g in zip(grads, step_grads)]

        zeros = [tf.zeros(v.shape, tf.float32) for v in self.variables]
        _, loss, grads = tf.while_loop(lambda i, *_: i < k, body, (0, tf.zeros([]), zeros))
        return loss, grads

    def _replica_eval_sums(self, tokens, mask):
        logits = self.model(tokens[:, :-1], attention_mask=mask[:, :-1], training=False)["logits"]
        nll, weight = target_nll(logits, tokens[:, 1:], mask[:, 1:])
        return tf.reduce_sum(nll), tf.reduce_sum(weight)

    # --- one replica, the update -----------------------------------------------
    def _dropout_seeds(self, step):
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        counter = (tf.cast(step, tf.int64) * self.num_replicas + replica) * _SEED_STRIDE
        streams = [self.seed * 1_000_003 + 7919 * (i + 1) for i in range(len(self.seed_states))]
        return tf.stack([tf.stack([tf.constant(s, tf.int64), counter]) for s in streams]) \
            if streams else tf.zeros([0, 2], tf.int64)

    def _clip(self, grads, scale):
        """(norm of the unscaled gradient, gradient clipped to clip_norm)."""
        scale = tf.cast(scale, tf.float32)
        grad_norm = tf.linalg.global_norm(grads) / scale
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm * scale,
                                              use_norm=grad_norm * scale)
        return grad_norm, grads

    def _replica_update(self, tokens, mask, denominator, seeds):
        loss, grads = self._replica_grads(tokens, mask, denominator, seeds, tf.ones([]))
        return loss, self._replica_clip_and_apply(grads)

    def _replica_clip_and_apply(self, grads):
        grad_norm, grads = self._clip(grads, 1.0)
        self.optimizer.apply(grads, self.variables)
        return grad_norm

    def _inputs(self, batch, step):
        return (batch["tokens"], batch["mask"], batch["denominator"][0],
                self._dropout_seeds(step))

    def _one_program_step(self, batch, step):
        return self._update(*self._inputs(batch, step))

    def _grads_then_update_step(self, batch, step):
        loss, grads = self._grads(*self._inputs(batch, step), tf.ones([]))
        return loss, self._clip_and_apply(grads)

    def _all_reduce_step(self, batch, step):
        """Several replicas, or fp16 loss scaling: gradient, all-reduce,
        clip and apply, each replica alike."""
        ctx = tf.distribute.get_replica_context()
        scale = self.optimizer.dynamic_scale if self.loss_scaling else tf.ones([])
        loss, grads = self._grads(*self._inputs(batch, step), tf.convert_to_tensor(scale))
        if self.num_replicas > 1:
            loss = ctx.all_reduce(tf.distribute.ReduceOp.SUM, loss)
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grad_norm, grads = self._clip(grads, scale)
        if self.num_replicas > 1:
            # The Keras optimizer sums the replicas' gradients again; they
            # are the global gradient already.
            grads = [g / self.num_replicas for g in grads]
        self.optimizer.apply(grads, self.variables)
        return loss, grad_norm

    # --- all replicas -----------------------------------------------------------
    def _train_step(self, batch, step):
        loss, grad_norm = self.strategy.run(self._replica_step, args=(batch, step))
        first = self.strategy.experimental_local_results
        return first(loss)[0], first(grad_norm)[0]

    def _eval_step(self, batch):
        nll, count = self.strategy.run(self._replica_eval_sums, args=(batch["tokens"], batch["mask"]))
        total = tf.distribute.ReduceOp.SUM
        return self.strategy.reduce(total, nll, axis=None), self.strategy.reduce(total, count, axis=None)
