"""bf16 decode loops of more than one row run with Grappler's remapper off
on a CPU, so each weight matmul stays oneDNN's matmul.

On a CPU the remapper fuses a MatMul with the BiasAdd after it into one
`_FusedMatMul`, and TensorFlow's oneDNN kernel for that fusion runs an
inner-product primitive, while a bare MatMul runs oneDNN's matmul (brgemm)
primitive; `ONEDNN_VERBOSE=1` names both. For bf16 weights multiplying a
few rows the matmul primitive is the faster, for a single row the inner
product is. Measured on GPT-2 Medium, `generate` with `dtype="bfloat16"`,
on a 2-core AMD EPYC with AVX512-BF16, process by process (tok/s total,
remapper on -> off):

| bf16 decode loop | remapper on | remapper off |
|---|---:|---:|
| batch 8 (three pairs) | 78.8, 75.6, 83.8 | 96.1, 91.4, 102.5 |
| batch 1 (two pairs) | 21.9, 21.8 | 16.3, 17.7: kept on |

The 512-token prefill (float32 and bf16) measured the same either way
within noise, so it keeps the default; float32 decode loops are XLA
programs, which the remapper does not touch, and so are bf16 loops on a
GPU (`precision.decodes_in_xla`), where the fusion would be cuBLAS's
epilogue anyway. `DecodePrograms` decides which programs it wraps.

The switch is the config that a `tf.function` call passes to Grappler (the
thread's function call options, an attribute of every call). Grappler
optimizes a function once per config, the first time it is called with
it, and a traced call inside the function (a nested `tf.function`) records
the config of its tracing; `UnfusedMatmuls` therefore both traces and calls
its function under the config. TensorFlow has no public per-function
switch for it (`tf.config.optimizer.set_experimental_options` is
process-wide), so this uses `context.context().function_call_options`.
"""

from __future__ import annotations

import contextlib

from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context


@contextlib.contextmanager
def without_remapper():
    """Trace and call `tf.function`s with Grappler's remapper off, in this
    thread (the setting is thread-local, as TF's function call options are)."""
    ctx = context.context()
    previous = ctx.function_call_options
    config = config_pb2.ConfigProto()
    if previous.config_proto_serialized:
        config.ParseFromString(previous.config_proto_serialized)
    config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    ctx.function_call_options = context.FunctionCallOptions(
        executor_type=previous.executor_type, config_proto=config)
    try:
        yield
    finally:
        ctx.function_call_options = previous


class UnfusedMatmuls:
    """A `tf.function` traced and called under `without_remapper()`."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args, **kwargs):
        with without_remapper():
            return self.function(*args, **kwargs)

    def get_concrete_function(self, *args, **kwargs):
        with without_remapper():
            return self.function.get_concrete_function(*args, **kwargs)

    def experimental_get_tracing_count(self) -> int:
        return self.function.experimental_get_tracing_count()
