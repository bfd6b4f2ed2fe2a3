"""Programs that multiply many rows per weight run with Grappler's remapper
off on a CPU (`tfgpt2.modeling.matmul_fusion`). The oracle is TensorFlow's
own optimized graph (what Grappler hands the executor, from the run's
metadata), and the attributes it records on a traced call."""

import threading

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context

from model_support import small_config
from tfgpt2 import GPT2LMHeadModel
from tfgpt2.generation import sampling
from tfgpt2.generation.programs import ProgramKey, ProgramKind
from tfgpt2.modeling import matmul_fusion
from tfgpt2.modeling.precision import has_gpu

pytestmark = pytest.mark.skipif(has_gpu(), reason="the remapper stays on where there is a GPU")

OFF = rewriter_config_pb2.RewriterConfig.OFF


def _dense(seed):
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.standard_normal((16, 32)), tf.float32)
    b = tf.constant(rng.standard_normal(32), tf.float32)
    return tf.function(lambda x: tf.nn.bias_add(tf.matmul(x, w), b), autograph=False)


def _optimized_ops(function, x):
    """The op types of the graphs Grappler produced for the call."""
    ctx = context.context()
    ctx.enable_graph_collection()
    try:
        out = function(x)
        metadata = ctx.export_run_metadata()
    finally:
        ctx.disable_graph_collection()
    return out, {node.op for graph in metadata.function_graphs
                 for node in graph.post_optimization_graph.node}


def _remapping_of(serialized: bytes):
    config = config_pb2.ConfigProto()
    config.ParseFromString(serialized)
    return config.graph_options.rewrite_options.remapping


def test_the_matmul_stays_unfused_and_computes_the_same():
    x = tf.constant(np.random.default_rng(0).standard_normal((8, 16)), tf.float32)
    fused, fused_ops = _optimized_ops(_dense(1), x)
    unfused, unfused_ops = _optimized_ops(matmul_fusion.UnfusedMatmuls(_dense(1)), x)
    assert "_FusedMatMul" in fused_ops  # what the default config does on a CPU
    assert "_FusedMatMul" not in unfused_ops and {"MatMul", "BiasAdd"} <= unfused_ops
    np.testing.assert_allclose(unfused.numpy(), fused.numpy(), rtol=1e-5, atol=1e-5)


def test_a_nested_function_traced_under_it_records_the_setting():
    """A traced call of another tf.function carries the config of its
    tracing, so Grappler optimizes the inner function without fusion too."""
    inner = tf.function(lambda x: tf.nn.relu(x), autograph=False,
                        experimental_attributes={"_noinline": True})
    outer = matmul_fusion.UnfusedMatmuls(tf.function(lambda x: inner(x) * 2.0, autograph=False))
    graph = outer.get_concrete_function(tf.TensorSpec([None], tf.float32)).graph
    calls = [op for op in graph.get_operations() if op.type == "StatefulPartitionedCall"
             or op.type == "PartitionedCall"]
    assert calls
    assert all(_remapping_of(op.get_attr("config_proto")) == OFF for op in calls)


def test_the_setting_is_restored_and_stays_in_its_thread():
    ctx = context.context()
    before = ctx.function_call_options.config_proto_serialized
    seen = {}
    with matmul_fusion.without_remapper():
        seen["inside"] = _remapping_of(ctx.function_call_options.config_proto_serialized)
        other = threading.Thread(target=lambda: seen.setdefault(
            "other thread", _remapping_of(ctx.function_call_options.config_proto_serialized)))
        other.start()
        other.join()
    assert seen["inside"] == OFF
    assert seen["other thread"] != OFF
    assert ctx.function_call_options.config_proto_serialized == before


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decode_programs_choose_by_rows_and_runtime(dtype):
    """Only the decode loops that are plain graphs (bf16 on a CPU) of more
    than one row run unfused; prefills and XLA loops are left alone."""
    programs = GPT2LMHeadModel.from_config(small_config(), dtype=dtype, seed=0).decode_programs

    def program(kind, batch, num_beams=1):
        return programs.get(ProgramKey(kind, batch=batch, prompt_length=8, new_tokens=8,
                                       sampler=sampling.Sampler(), num_beams=num_beams))

    unfused = matmul_fusion.UnfusedMatmuls
    assert not isinstance(program(ProgramKind.PREFILL, 4), unfused)
    assert not isinstance(program(ProgramKind.BEAM_PREFILL, 2), unfused)
    plain_loops = dtype == "bfloat16"
    assert isinstance(program(ProgramKind.LOOP, 4), unfused) == plain_loops
    assert isinstance(program(ProgramKind.STEP, 2), unfused) == plain_loops
    assert isinstance(program(ProgramKind.BEAM, 1, num_beams=3), unfused) == plain_loops
    # One row keeps the fusion: its inner product is the faster mat-vec.
    assert not isinstance(program(ProgramKind.LOOP, 1), unfused)
    assert not isinstance(program(ProgramKind.STEP, 1), unfused)
