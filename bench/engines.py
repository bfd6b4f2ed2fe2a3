"""CPU inference engines as decode peers of bench/decode.py: CTranslate2,
llama.cpp, ONNX Runtime (through optimum) and OpenVINO (through
optimum-intel), each in full precision and in int8.

Every engine is converted from the same transformers-layout directory the
other peers load (config.json, model.safetensors, vocab.json, merges.txt),
once, into `work_dir/<peer name>`, and reused by later runs. Each runs with
`threads` threads. Install: `pip install -e ".[bench-engines]"` plus, for
llama.cpp, the converter script (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench_support import sampling

def converted(path: Path, convert) -> Path:
    """`path`, written by `convert(staging_path)` unless it exists; a failed
    conversion leaves nothing behind, so the next run starts over."""
    if path.exists():
        return path
    staging = path.with_name(f".{path.name}.partial")
    if staging.is_dir():
        shutil.rmtree(staging)
    staging.unlink(missing_ok=True)
    print(f"Converting once into {path} ...", file=sys.stderr, flush=True)
    try:
        convert(staging)
    except BaseException:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, path)
    return path


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def hf_generate(model, ids, new_tokens, setting):
    """transformers' `generate` (PyTorch, or an optimum model behind the same
    API), every sampling setting passed explicitly: transformers' own
    default is top_k=50."""
    import torch

    do_sample, top_k, top_p, temperature = sampling(setting)
    settings = (dict(do_sample=True, top_k=top_k, top_p=top_p, temperature=temperature)
                if do_sample else dict(do_sample=False))
    torch.manual_seed(0)
    with torch.inference_mode():
        input_ids = torch.as_tensor(ids, dtype=torch.long)
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=50256, **settings)
    return np.asarray(out[:, ids.shape[1]:])


class Engine:
    """A peer converted into `work_dir/<name>`; `path` is what it loads
    (its size is reported)."""

    name = ""
    max_batch = None  # None: any batch size

    def supports(self, setting):
        return True


class CTranslate2(Engine):
    name = "ctranslate2"
    quantization = "float32"

    def __init__(self, directory, work_dir, threads):
        import ctranslate2
        from ctranslate2.converters import TransformersConverter

        self.path = converted(
            Path(work_dir) / self.name,
            lambda out: TransformersConverter(directory).convert(
                str(out), quantization=self.quantization))
        self.ctranslate2 = ctranslate2
        self.generator = ctranslate2.Generator(str(self.path), device="cpu",
                                               compute_type=self.quantization,
                                               inter_threads=1, intra_threads=threads)
        # The engine takes token strings: map ids through its own vocabulary.
        vocabulary = self.path / "vocabulary.json"
        self.tokens = json.loads(vocabulary.read_text())

    def generate(self, ids, new_tokens, setting="greedy"):
        do_sample, top_k, top_p, temperature = sampling(setting)
        self.ctranslate2.set_random_seed(0)
        results = self.generator.generate_batch(
            [[self.tokens[i] for i in row] for row in ids],
            max_length=new_tokens, min_length=new_tokens, include_prompt_in_result=False,
            sampling_topk=top_k if do_sample else 1, sampling_topp=top_p, sampling_temperature=temperature)
        return np.array([r.sequences_ids[0] for r in results])


class CTranslate2Int8(CTranslate2):
    """int8 weights, as `ct2-transformers-converter --quantization int8`."""

    name = "ctranslate2_int8"
    quantization = "int8"


class LlamaCpp(Engine):
    """llama-cpp-python (batch 1: its `Llama` runs one sequence), on a GGUF
    written by llama.cpp's own convert_hf_to_gguf.py."""

    name = "llama_cpp"
    outtype = "f32"
    max_batch = 1

    def __init__(self, directory, work_dir, threads, converter):
        import llama_cpp

        if not converter or not os.path.isfile(converter):
            raise ImportError(
                f"llama.cpp's convert_hf_to_gguf.py not found at {converter!r}: "
                "get it once as docs/benchmarks.md says and pass --llama_cpp_converter")

        def convert(out):
            subprocess.run([sys.executable, converter, directory, "--outfile", str(out),
                            "--outtype", self.outtype], check=True)

        self.path = converted(Path(work_dir) / f"{self.name}.gguf", convert)
        self.model = llama_cpp.Llama(str(self.path), n_ctx=1024, n_batch=512,
                                     n_threads=threads, n_threads_batch=threads,
                                     seed=0, verbose=False)

    def generate(self, ids, new_tokens, setting="greedy"):
        do_sample, top_k, top_p, temperature = sampling(setting)
        (row,) = ids
        self.model.reset()  # no reuse of the previous call's cache
        self.model.set_seed(0)
        # temp=0 is llama.cpp's greedy sampler; min_p and the repeat
        # penalty are off so that the settings are the other peers'.
        stream = self.model.generate([int(i) for i in row], top_k=top_k, top_p=top_p,
                                     min_p=0.0, temp=temperature if do_sample else 0.0,
                                     repeat_penalty=1.0)
        out = [token for token, _ in zip(stream, range(new_tokens))]
        return np.array([out])


class LlamaCppQ8(LlamaCpp):
    name = "llama_cpp_q8_0"
    outtype = "q8_0"


class OnnxRuntime(Engine):
    """ONNX Runtime through optimum's ORTModelForCausalLM (with its KV cache)."""

    name = "onnxruntime"
    file_name = "model.onnx"

    def __init__(self, directory, work_dir, threads):
        import onnxruntime
        from optimum.onnxruntime import ORTModelForCausalLM

        def export(out):
            ORTModelForCausalLM.from_pretrained(directory, export=True).save_pretrained(out)

        fp32 = converted(Path(work_dir) / "onnxruntime", export)
        self.path = self.quantized(fp32) if self.name != "onnxruntime" else fp32
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.model = ORTModelForCausalLM.from_pretrained(
            self.path, file_name=self.file_name, session_options=options,
            provider="CPUExecutionProvider")

    def generate(self, ids, new_tokens, setting="greedy"):
        return hf_generate(self.model, ids, new_tokens, setting)


class OnnxRuntimeInt8(OnnxRuntime):
    """ONNX Runtime on optimum's dynamic int8 quantization (ORTQuantizer:
    int8 weights per channel, activations quantized at run time)."""

    name = "onnxruntime_int8"
    file_name = "model_quantized.onnx"

    def quantized(self, fp32):
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        def quantize(out):
            config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
            ORTQuantizer.from_pretrained(fp32).quantize(save_dir=out,
                                                        quantization_config=config)
            for name in ("config.json", "generation_config.json"):
                if (fp32 / name).exists():
                    shutil.copy(fp32 / name, out / name)

        return converted(fp32.with_name(self.name), quantize)


class OpenVino(Engine):
    """OpenVINO through optimum-intel's OVModelForCausalLM, as it runs by
    default: on a CPU with bf16 instructions (AVX512-BF16 or AMX) OpenVINO
    computes in bf16 (INFERENCE_PRECISION_HINT), even from an f32 model."""

    name = "openvino"
    model_name = "openvino"  # the converted model, shared with openvino_f32
    precision_hint = None

    def quantization_config(self):
        return None

    def __init__(self, directory, work_dir, threads):
        from optimum.intel import OVModelForCausalLM

        def export(out):
            OVModelForCausalLM.from_pretrained(
                directory, export=True, compile=False, load_in_8bit=False,
                quantization_config=self.quantization_config()).save_pretrained(out)

        self.path = converted(Path(work_dir) / self.model_name, export)
        config = {"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY",
                  "CACHE_DIR": ""}
        if self.precision_hint:
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        self.model = OVModelForCausalLM.from_pretrained(self.path, ov_config=config)

    def generate(self, ids, new_tokens, setting="greedy"):
        return hf_generate(self.model, ids, new_tokens, setting)


class OpenVinoF32(OpenVino):
    """OpenVINO computing in f32 (INFERENCE_PRECISION_HINT=f32)."""

    name = "openvino_f32"
    precision_hint = "f32"


class OpenVinoInt8(OpenVino):
    """OpenVINO with int8 weights (NNCF's weight compression), activations
    at OpenVINO's default precision."""

    name = "openvino_int8"
    model_name = "openvino_int8"

    def quantization_config(self):
        from optimum.intel import OVWeightQuantizationConfig

        return OVWeightQuantizationConfig(bits=8)
