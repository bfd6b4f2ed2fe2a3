"""`GPT2Config`: the hyper-parameters, the four OpenAI presets (named in
`tfgpt2.names`), and config IO.

Field names follow Hugging Face's `config.json` so the same file works here,
in transformers and in keras-hub; OpenAI's `hparams.json` is read too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tfgpt2.checkpoints.hub import resolve_directory
from tfgpt2.names import DEFAULT_PRESET, EOS_TOKEN_ID, PRESETS, preset_key

@dataclasses.dataclass
class GPT2Config:
    """GPT-2's hyper-parameters; the defaults are GPT-2 Medium's.

    Field names follow Hugging Face's `config.json`, so the same file works
    here, in transformers and in keras-hub.

    Args:
      vocab_size: number of token ids (50257 for GPT-2's vocabulary).
      n_positions: the context: most tokens a sequence can hold.
      n_embd: width of the residual stream.
      n_layer: number of transformer blocks.
      n_head: attention heads per block (must divide `n_embd`).
      n_inner: MLP width; None means 4 * n_embd.
      layer_norm_epsilon: LayerNorm's epsilon.
      resid_pdrop, embd_pdrop, attn_pdrop: dropout rates (active only in
        training) after each residual branch, after the embeddings and on
        the attention probabilities.
      initializer_range: stddev of the random initialisation.
      activation_function: GPT-2's tanh-approximate GELU ("gelu_new").
      bos_token_id, eos_token_id: `<|endoftext|>` (50256) for GPT-2.

    Example:
        config = GPT2Config.from_preset("gpt2")           # 124M: 12 x 768
        config = GPT2Config.from_pretrained("path/to/checkpoint")
        tiny = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128)
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 1024
    n_layer: int = 24
    n_head: int = 16
    n_inner: int | None = None  # MLP width; None means 4 * n_embd
    layer_norm_epsilon: float = 1e-5
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    initializer_range: float = 0.02
    activation_function: str = "gelu_new"
    bos_token_id: int = EOS_TOKEN_ID
    eos_token_id: int = EOS_TOKEN_ID

    def __post_init__(self):
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPT2Config.{name} must be a positive int, got {value!r}.")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})."
            )
        if self.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(
                "GPT-2 uses the tanh-approximate GELU ('gelu_new'); got "
                f"activation_function={self.activation_function!r}."
            )
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}.")

    # --- derived sizes -------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def intermediate_size(self) -> int:
        return self.n_inner or 4 * self.n_embd

    # HF-style aliases, so code written against transformers' config reads.
    hidden_size = property(lambda self: self.n_embd)
    num_hidden_layers = property(lambda self: self.n_layer)
    num_attention_heads = property(lambda self: self.n_head)
    max_position_embeddings = property(lambda self: self.n_positions)

    def num_parameters(self) -> int:
        """Parameter count (the LM head is tied, so it adds none)."""
        c, f = self.n_embd, self.intermediate_size
        per_block = 4 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * f + f) + (f * c + c)
        return self.vocab_size * c + self.n_positions * c + self.n_layer * per_block + 2 * c

    # --- IO ------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str = DEFAULT_PRESET, **overrides) -> "GPT2Config":
        key = preset_key(name)
        if key is None:
            raise ValueError(f"Unknown preset {name!r}; known: {sorted(PRESETS)}.")
        return cls(**{**PRESETS[key], **overrides})

    @classmethod
    def from_dict(cls, data: dict, **overrides) -> "GPT2Config":
        """From an HF `config.json` dict or an OpenAI `hparams.json` dict."""
        data = dict(data)
        if "n_vocab" in data:  # OpenAI hparams.json; dropout was 0 in the release code
            data = dict(
                vocab_size=data["n_vocab"], n_positions=data["n_ctx"], n_embd=data["n_embd"],
                n_layer=data["n_layer"], n_head=data["n_head"],
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            )
        model_type = data.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ValueError(f"Expected a GPT-2 config (model_type 'gpt2'), got {model_type!r}.")
        names = {f.name for f in dataclasses.fields(cls)}
        if "n_ctx" in data and "n_positions" not in data:
            data["n_positions"] = data["n_ctx"]
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides) -> "GPT2Config":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}).") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
        try:
            return cls.from_dict(data, **overrides)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a usable GPT-2 config ({err}).") from err

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike = DEFAULT_PRESET, **overrides):
        """A preset name, a directory with `config.json` / `hparams.json`, a
        path to either file, or a hub repo id."""
        name = os.fspath(name_or_dir)
        path = Path(os.path.expanduser(name))
        if path.is_file():
            return cls.from_json_file(path, **overrides)
        if path.is_dir():
            for filename in ("config.json", "hparams.json"):
                if (path / filename).is_file():
                    return cls.from_json_file(path / filename, **overrides)
            raise FileNotFoundError(
                f"{path} has neither config.json (Hugging Face layout) nor "
                "hparams.json (OpenAI layout)."
            )
        if preset_key(name) is not None:
            return cls.from_preset(name, **overrides)
        return cls.from_pretrained(resolve_directory(name, ["config.json"]), **overrides)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_ctx=self.n_positions)
        return data

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        os.makedirs(directory, exist_ok=True)
        self.save_pretrained_to_file(Path(directory) / "config.json")

    def save_pretrained_to_file(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
