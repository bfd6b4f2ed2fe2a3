"""The sampler's own cost per decode step, in isolation: each setting's
sampler runs STEPS times inside one XLA while loop (as in the decode
program), on [batch, 50257] float32 logits, and the loop's time is divided by
STEPS. Today's sort/philox sampler (the one this replaced) runs beside it.

    python bench/sampler.py                   # batch 1 and 8, both shapes
    python bench/sampler.py --batch_sizes=1 --repeats=7

Logits: "flat" has the spread of the random GPT-2 Medium in bench/decode.py
(std 0.64: top_p=0.9 keeps ~37k tokens); "peaked" has std 3 (~a few hundred).
Each timing is the median of --repeats runs of the loop after a warm-up.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfgpt2.generation import sampling  # noqa: E402
from tfgpt2.modeling.masking import MASKED_VALUE  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
flags.DEFINE_list("shapes", ["flat", "peaked"], "Logit distributions (flat, peaked).")
flags.DEFINE_integer("steps", 200, "Sampler calls per timed loop.")
flags.DEFINE_integer("repeats", 5, "Timed loops per measurement (median).")
flags.DEFINE_bool("today", True, "Also time the sort/philox sampler this replaced.")

VOCAB = 50257
SPREAD = {"flat": 0.64, "peaked": 3.0}
SETTINGS = {
    "greedy": dict(do_sample=False),
    "sample (top_k=0)": dict(do_sample=True),
    "top_k=50": dict(do_sample=True, top_k=50),
    "top_p=0.9, top_k=0": dict(do_sample=True, top_p=0.9),
    "temperature=0.7, top_k=40": dict(do_sample=True, temperature=0.7, top_k=40),
}


def today(logits, seed, *, do_sample, temperature=None, top_k=0, top_p=None):
    """The sampler before this change: tf.math.top_k, a full tf.sort for
    top-p, and tf.random.stateless_categorical."""
    if not do_sample:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    if temperature is not None:
        logits = logits / temperature
    if top_k:
        kth = tf.reduce_min(tf.math.top_k(logits, k=top_k, sorted=False).values, -1, keepdims=True)
        logits = tf.where(logits < kth, MASKED_VALUE, logits)
    if top_p is not None:
        ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
        before = tf.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
        keep = tf.concat([tf.ones_like(before[:, :1], tf.bool), before[:, 1:] < top_p], -1)
        threshold = tf.reduce_min(tf.where(keep, ordered, tf.float32.max), -1, keepdims=True)
        logits = tf.where(logits < threshold, MASKED_VALUE, logits)
    return tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)[:, 0]


def ours(logits, seed, **settings):
    return sampling.choose_tokens(logits, seed, **settings)


def loop_seconds(sampler, settings, logits):
    """Seconds for one sampler call, from a loop of FLAGS.steps calls in one
    XLA program. Each call sees the previous call's tokens (a 1e-30 nudge),
    so XLA can neither hoist nor skip it."""
    steps, batch = FLAGS.steps, logits.shape[0]

    @tf.function(jit_compile=True, autograph=False)
    def run(logits):
        def body(step, tokens):
            nudged = logits + tf.cast(tokens[:, None], tf.float32) * 1e-30
            kwargs = dict(settings)
            if "temperature" in kwargs:
                kwargs["temperature"] = tf.constant(kwargs["temperature"])
            if "top_p" in kwargs:
                kwargs["top_p"] = tf.constant(kwargs["top_p"])
            seed = tf.stack([7, step])
            return step + 1, sampler(nudged, seed, **kwargs)

        return tf.while_loop(lambda step, _: step < steps, body,
                             (tf.constant(0), tf.zeros([batch], tf.int32)))[1]

    run(logits).numpy()
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        run(logits).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / steps


def main(argv):
    del argv
    print(f"load before: {os.getloadavg()}")
    print("| batch | logits | setting | ours (us/step) | today's (us/step) | speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for batch in map(int, FLAGS.batch_sizes):
        for shape in FLAGS.shapes:
            rng = np.random.default_rng(batch)
            logits = tf.constant(rng.standard_normal((batch, VOCAB)).astype(np.float32)
                                 * SPREAD[shape])
            for name, settings in SETTINGS.items():
                new = loop_seconds(ours, settings, logits)
                old = loop_seconds(today, settings, logits) if FLAGS.today else float("nan")
                print(f"| {batch} | {shape} | {name} | {new * 1e6:.0f} | {old * 1e6:.0f} | "
                      f"{old / new:.1f}x |", flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
