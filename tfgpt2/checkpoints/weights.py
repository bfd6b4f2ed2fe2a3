"""Checkpoint IO: Hugging Face safetensors (single or sharded), OpenAI's
original TF checkpoint, hub download, and `save_pretrained`.

Every tensor is checked (name and shape) before any is assigned, so a
mismatch is reported in full and names the tensor, the expected and the
found shape.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from tfgpt2.config import GPT2Config
from tfgpt2.checkpoints.hub import TOKENIZER_FILES, WEIGHT_FILES, resolve_directory

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
OPENAI_HPARAMS = "hparams.json"
# Buffers transformers may store next to the weights (the causal mask); not weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
HF_PREFIX = "transformer."


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """One model variable and its names in the two checkpoint layouts."""

    variable: object  # a keras.Variable
    hf_name: str  # without the "transformer." prefix
    openai_name: str
    linear: bool  # our kernel is [out, in]; HF Conv1D is [in, out]; OpenAI [1, in, out]

    def hf_shape(self) -> tuple:
        shape = tuple(self.variable.shape)
        return shape[::-1] if self.linear else shape

    def openai_shape(self) -> tuple:
        return (1,) + self.hf_shape() if self.linear else tuple(self.variable.shape)

    def from_hf(self, array: np.ndarray) -> np.ndarray:
        return array.T if self.linear else array

    def from_openai(self, array: np.ndarray) -> np.ndarray:
        return array[0].T if self.linear else array


def weight_specs(model) -> list[WeightSpec]:
    """The checkpoint names of every variable of a GPT-2 model."""
    specs = [
        WeightSpec(model.embeddings.wte, "wte.weight", "model/wte", False),
        WeightSpec(model.embeddings.wpe, "wpe.weight", "model/wpe", False),
    ]
    for i, block in enumerate(model.blocks):
        hf, oa = f"h.{i}.", f"model/h{i}/"
        for norm in ("ln_1", "ln_2"):
            layer = getattr(block, norm)
            specs += [WeightSpec(layer.gamma, f"{hf}{norm}.weight", f"{oa}{norm}/g", False),
                      WeightSpec(layer.beta, f"{hf}{norm}.bias", f"{oa}{norm}/b", False)]
        for path, layer in (("attn.c_attn", block.attn.c_attn), ("attn.c_proj", block.attn.c_proj),
                            ("mlp.c_fc", block.mlp.c_fc), ("mlp.c_proj", block.mlp.c_proj)):
            oa_path = path.replace(".", "/")
            specs += [WeightSpec(layer.kernel, f"{hf}{path}.weight", f"{oa}{oa_path}/w", True),
                      WeightSpec(layer.bias, f"{hf}{path}.bias", f"{oa}{oa_path}/b", False)]
    specs += [WeightSpec(model.ln_f.gamma, "ln_f.weight", "model/ln_f/g", False),
              WeightSpec(model.ln_f.beta, "ln_f.bias", "model/ln_f/b", False)]
    return specs


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: missing, unexpected or
    mis-shaped tensors, or a file that cannot be read."""


# --- reading -------------------------------------------------------------------
class SafetensorsReader:
    """Lazy reader over one or several safetensors files (HF layout)."""

    def __init__(self, directory: Path):
        from safetensors import safe_open

        index = directory / SAFETENSORS_INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as err:
                raise CheckpointError(f"{index} is not a valid safetensors index ({err}).") from err
            files = sorted(set(weight_map.values()))
        else:
            files = [SAFETENSORS_FILE]
        self._handles, self._where = [], {}
        for filename in files:
            path = directory / filename
            if not path.is_file():
                raise CheckpointError(f"{path} is missing (listed in {SAFETENSORS_INDEX}).")
            try:
                handle = safe_open(str(path), framework="np")
            except Exception as err:  # safetensors raises its own SafetensorError
                raise CheckpointError(
                    f"{path} is not a readable safetensors file ({err}). It may be "
                    "truncated or corrupt: download or save it again.") from err
            self._handles.append((path, handle))
            for key in handle.keys():
                self._where[key] = (path, handle)
        self.description = str(directory / (SAFETENSORS_INDEX if index.is_file() else SAFETENSORS_FILE))

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple:
        return tuple(self._where[name][1].get_slice(name).get_shape())

    def read(self, name: str) -> np.ndarray:
        path, handle = self._where[name]
        try:
            return handle.get_tensor(name)
        except Exception as err:
            raise CheckpointError(f"Could not read tensor {name!r} from {path} ({err}); "
                                  "the file may be truncated or corrupt.") from err


class OpenAICheckpointReader:
    """OpenAI's release format: `model.ckpt.*` read with tf.train.load_checkpoint."""

    def __init__(self, directory: Path):
        import tensorflow as tf

        try:
            self._reader = tf.train.load_checkpoint(str(directory))
            self._shapes = self._reader.get_variable_to_shape_map()
        except (tf.errors.OpError, ValueError) as err:
            raise CheckpointError(
                f"Could not read the TF checkpoint in {directory} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). The model.ckpt files may be "
                "truncated or corrupt.") from err
        self.description = str(directory / "model.ckpt")

    def names(self) -> list[str]:
        return list(self._shapes)

    def shape(self, name: str) -> tuple:
        return tuple(self._shapes[name])

    def read(self, name: str) -> np.ndarray:
        import tensorflow as tf

        try:
            return self._reader.get_tensor(name)
        except tf.errors.OpError as err:
            raise CheckpointError(f"Could not read {name!r} from {self.description} ({err}).") from err


def detect_layout(directory: Path) -> str:
    """'hf' or 'openai', or a clear error saying what is there instead."""
    if (directory / SAFETENSORS_FILE).is_file() or (directory / SAFETENSORS_INDEX).is_file():
        return "hf"
    if any(directory.glob("*.ckpt.index")) or (directory / "checkpoint").is_file():
        return "openai"
    if (directory / "pytorch_model.bin").is_file() or any(directory.glob("pytorch_model*.bin")):
        raise CheckpointError(
            f"{directory} has only pytorch_model.bin, a pickle that needs torch to read and can run "
            "arbitrary code. Use the safetensors file instead: download `model.safetensors` "
            "from the same hub repo (all GPT-2 repos have one), or convert once with transformers: "
            "`GPT2LMHeadModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`.")
    if (directory / "tf_model.h5").is_file():
        raise CheckpointError(
            f"{directory} has only tf_model.h5 (transformers' old Keras 2 format). Download "
            "`model.safetensors` from the same hub repo instead.")
    raise CheckpointError(
        f"No GPT-2 weights in {directory}: expected {SAFETENSORS_FILE} (or {SAFETENSORS_INDEX} "
        "with shards) in the Hugging Face layout, or model.ckpt.* with hparams.json in OpenAI's.")


def _match_hf_names(reader, specs, model_config) -> dict[str, str]:
    """Map each spec's HF name to the name in the file; report every mismatch."""
    available, prefixed = {}, {}
    for name in reader.names():
        if name.endswith(IGNORED_SUFFIXES):
            continue
        bare = name[len(HF_PREFIX):] if name.startswith(HF_PREFIX) else name
        (prefixed if bare != name else available)[bare] = name
    available.update(prefixed)
    available.pop("lm_head.weight", None)  # tied to wte; checked separately
    expected = {spec.hf_name for spec in specs}
    _report_name_mismatch(reader, expected, set(available), model_config)
    return {bare: available[bare] for bare in expected}


def _report_name_mismatch(reader, expected: set, found: set, model_config):
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if not missing and not unexpected:
        return
    lines = [f"{reader.description} does not match the config "
             f"(n_layer={model_config.n_layer}, n_embd={model_config.n_embd}):"]
    if missing:
        lines.append(f"  missing tensors ({len(missing)}): {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        lines.append(f"  unexpected tensors ({len(unexpected)}): {unexpected[:8]}"
                     f"{' ...' if len(unexpected) > 8 else ''}")
    lines.append("Check that config.json / hparams.json belongs to these weights.")
    raise CheckpointError("\n".join(lines))


def _check_shapes(reader, pairs, model_config):
    """pairs: (file name, expected file shape). Raise once, listing all mismatches."""
    bad = [(name, expected, reader.shape(name)) for name, expected in pairs
           if tuple(reader.shape(name)) != tuple(expected)]
    if bad:
        details = "\n".join(f"  {name}: expected {expected}, found {found}" for name, expected, found in bad[:10])
        raise CheckpointError(
            f"Tensor shapes in {reader.description} do not match the config "
            f"(vocab_size={model_config.vocab_size}, n_positions={model_config.n_positions}, "
            f"n_embd={model_config.n_embd}, n_head={model_config.n_head}):\n{details}"
            f"{chr(10) + '  ...' if len(bad) > 10 else ''}\n"
            "Check that the config belongs to these weights.")


def load_weights_into(model, directory: str | os.PathLike) -> None:
    """Check every tensor of the checkpoint in `directory` against `model`,
    then assign them. Nothing is assigned if any check fails."""
    directory = Path(directory)
    specs = weight_specs(model)
    if detect_layout(directory) == "hf":
        reader = SafetensorsReader(directory)
        names = _match_hf_names(reader, specs, model.config)
        _check_shapes(reader, [(names[s.hf_name], s.hf_shape()) for s in specs], model.config)
        _check_tied_head(reader, names)
        plan = [(s, names[s.hf_name], s.from_hf) for s in specs]
    else:
        reader = OpenAICheckpointReader(directory)
        found = {n for n in reader.names() if n.startswith("model/")}
        _report_name_mismatch(reader, {s.openai_name for s in specs}, found, model.config)
        _check_shapes(reader, [(s.openai_name, s.openai_shape()) for s in specs], model.config)
        plan = [(s, s.openai_name, s.from_openai) for s in specs]
    for spec, name, convert in plan:
        array = convert(reader.read(name))
        spec.variable.assign(np.asarray(array, dtype=spec.variable.dtype))


def _check_tied_head(reader, names):
    for candidate in ("lm_head.weight", HF_PREFIX + "lm_head.weight"):
        if candidate in reader.names():
            head, wte = reader.read(candidate), reader.read(names["wte.weight"])
            if head.shape != wte.shape or not np.array_equal(head, wte):
                raise CheckpointError(
                    f"{reader.description} has an lm_head.weight that differs from wte.weight; "
                    "GPT-2's head is tied to the token embedding, so this checkpoint is not a "
                    "GPT-2 this model can represent.")


def load_pretrained(cls, name_or_dir, config: GPT2Config | None = None, **model_kwargs):
    """Build `cls` with zero weights and load a checkpoint into it. Returns
    `(model, the local checkpoint directory)`."""
    # Weights, config and the tokenizer files: nothing else (no .bin or .h5).
    directory = resolve_directory(name_or_dir, WEIGHT_FILES + TOKENIZER_FILES)
    detect_layout(directory)  # a clear error before building a large model
    if config is None:
        config = GPT2Config.from_pretrained(directory)
    model = cls(config, initialize=False, **model_kwargs)
    load_weights_into(model, directory)
    return model, directory


# --- writing ---------------------------------------------------------------------
_SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}


def parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B|B)\s*", size.upper())
    if not match:
        raise ValueError(f"Cannot read size {size!r}; use bytes or e.g. '500MB', '5GB'.")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def save_pretrained(model, directory: str | os.PathLike, max_shard_size: int | str | None = None):
    """Write config.json, the weights as safetensors in the HF layout
    (`transformer.`-prefixed, Conv1D kernels [in, out]) and the vocabulary.

    All or nothing: every file is written into a temporary directory beside
    `directory` first and moved in only once the whole checkpoint is there,
    so an error (or an interrupt) leaves `directory` as it was. Weight files
    of an earlier save that this one does not write are removed, so a
    directory never mixes two checkpoints' shards."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; save_pretrained writes a directory "
                                 "(choose another path).")
    # Resolved before anything is written: the default vocabulary never
    # depends on what sits in the working directory.
    tokenizer = model.tokenizer
    tensors = {HF_PREFIX + s.hf_name: np.ascontiguousarray(
        s.variable.numpy().T if s.linear else s.variable.numpy()) for s in weight_specs(model)}
    metadata = {"format": "pt"}  # the PyTorch layout; transformers requires this key
    limit = parse_size(max_shard_size) if max_shard_size is not None else None
    shards = _split_shards(tensors, limit)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}.saving-") as tmp:
        staging = Path(tmp)
        if len(shards) == 1:
            save_file(tensors, staging / SAFETENSORS_FILE, metadata=metadata)
        else:
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, staging / filename, metadata=metadata)
                weight_map.update({name: filename for name in shard})
            index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
                     "weight_map": weight_map}
            (staging / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
        model.config.save_pretrained_to_file(staging / "config.json")
        # The vocabulary travels with the weights: keras-hub and transformers
        # read vocab.json + merges.txt from the same directory.
        tokenizer.save_pretrained(staging)
        directory.mkdir(exist_ok=True)
        written = {f.name for f in staging.iterdir()}
        for stale in directory.glob("model*.safetensors*"):
            if stale.name not in written:
                stale.unlink()
        # The mode a plain write gives (umask applied); safetensors makes its own.
        mode = (staging / "config.json").stat().st_mode & 0o7777
        for name in sorted(written, key=lambda n: n == "config.json"):  # config.json last
            os.chmod(staging / name, mode)
            os.replace(staging / name, directory / name)


def _split_shards(tensors: dict, limit: int | None) -> list[dict]:
    if limit is None:
        return [tensors]
    shards, current, size = [], {}, 0
    for name, array in tensors.items():
        if current and size + array.nbytes > limit:
            shards.append(current)
            current, size = {}, 0
        current[name] = array
        size += array.nbytes
    shards.append(current)
    return shards
