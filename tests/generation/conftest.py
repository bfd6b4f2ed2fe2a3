"""Fixtures of the file-generation tests, shared by the one-device and the
distributed modules: one model (its programs compile once) and the one-
device reference file."""

import pytest
from file_jobs_support import SETTINGS, write_jsonl


@pytest.fixture(scope="session")
def file_model(tiny_checkpoint):
    from tfgpt2 import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="session")
def reference(file_model, tmp_path_factory):
    """The JSONL prompts generated on one device, 4 rows per batch:
    (directory, prompts, output, FileJobResult)."""
    import tfgpt2

    root = tmp_path_factory.mktemp("file_jobs")
    prompts = write_jsonl(root / "prompts.jsonl")
    out = root / "out.jsonl"
    result = tfgpt2.generate_file(file_model, prompts, out, batch_size=4, progress=False,
                                  **SETTINGS)
    return root, prompts, out, result
