"""Fixtures for the export tests: the tiny checkpoint's model, and the
repository root (for the command lines they run)."""

import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Prepended to scripts run in a fresh process: the artifacts must work where
# none of these can be imported.
BLOCK_IMPORTS = textwrap.dedent("""
    import sys
    for name in ("tensorflow_text", "keras", "keras_hub", "tf_keras", "tfgpt2"):
        sys.modules[name] = None
""")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from tfgpt2 import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="session")
def served(tiny_model, tmp_path_factory):
    """The tiny model's SavedModel in TF Serving's layout (version 3), both
    variants: {False: the default (no XLA), True: --xla}."""
    return {xla: tiny_model.export(tmp_path_factory.mktemp("served_xla" if xla else "served"),
                                   format="tf_saved_model", version=3, xla=xla)
            for xla in (False, True)}


@pytest.fixture(scope="session")
def tiny_tflite(tiny_model, tmp_path_factory):
    """The tiny model's fp32 `.tflite` (what the LiteRT tests run)."""
    return tiny_model.export(tmp_path_factory.mktemp("lite") / "tiny.tflite", format="litert",
                             quantization="none", verbose=False)
