"""The model card's tokenizer API: `GPT2Tokenizer`, as Hugging Face's.

Every call runs the in-graph tokenizer (`tfgpt2.tokenizer.graph`). Encoding
runs its ops eagerly for the first calls of a process, then the same graph,
loaded from a disk cache (or traced) in a background thread, with an input
signature that fits every length: an encoding call never traces or retraces
(`graph.BackgroundGraph`). Decoding runs eagerly for ~1 s of calls, then its
tf.function, traced once (`graph.EagerFirst`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfgpt2.names import DEFAULT_PRESET
from tfgpt2.outputs import BatchEncoding
from tfgpt2.tokenizer.graph import BytePairTokenizer
from tfgpt2.tokenizer.vocab import (EOS_TOKEN, Vocabulary, as_vocabulary, load_vocabulary,
                                    write_hf_files)


def _utf8(text: str) -> bytes:
    """UTF-8 of a str; lone surrogates (not encodable) become U+FFFD, as
    tiktoken does."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")



# ----------------------------------------------------------------------------
# Python API (Hugging Face style)
# ----------------------------------------------------------------------------


_PAD_ERROR = (
    "Asking to pad but the tokenizer does not have a padding token. GPT-2 has "
    "none: set `tokenizer.pad_token = tokenizer.eos_token` (id 50256, masked "
    "out by the attention mask) before padding."
)


class GPT2Tokenizer:
    """GPT-2's tokenizer with the Hugging Face `GPT2Tokenizer` API.

    `<|endoftext|>` in text is the special token 50256, as in Hugging Face;
    pass `split_special_tokens=True` (here or per call) to encode it as text.
    Every call runs the in-graph tokenizer (`BytePairTokenizer`).
    """

    model_input_names = ["input_ids", "attention_mask"]
    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}

    def __init__(self, vocabulary: Vocabulary | str | os.PathLike | None = None, *,
                 split_special_tokens: bool = False, padding_side: str = "right",
                 truncation_side: str = "right", pad_token: str | None = None,
                 model_max_length: int = 1024, errors: str = "replace"):
        if errors != "replace":
            raise ValueError(f"errors={errors!r} is not supported; decoding always "
                             "replaces invalid UTF-8 with U+FFFD like OpenAI's code.")
        self.vocabulary = as_vocabulary(vocabulary)
        self.encoder = dict(self.vocabulary.encoder)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.split_special_tokens = split_special_tokens
        self.padding_side = self._check_side("padding_side", padding_side)
        self.truncation_side = self._check_side("truncation_side", truncation_side)
        self.model_max_length = model_max_length
        self.eos_token = self.bos_token = self.unk_token = EOS_TOKEN
        self._pad_token = None
        self.pad_token = pad_token
        self._graphs: dict[bool, BytePairTokenizer] = {}

    @staticmethod
    def _check_side(what: str, side: str) -> str:
        if side not in ("right", "left"):
            raise ValueError(f"{what} must be 'right' or 'left', got {side!r}.")
        return side

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike = DEFAULT_PRESET, **kwargs):
        """GPT-2 names (`gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`,
        `openai-community/...`) load offline; a directory holding vocab.json +
        merges.txt (or encoder.json + vocab.bpe) is read, with its
        tokenizer_config.json if any; other names go through the hub."""
        vocabulary = load_vocabulary(name_or_dir)
        config = {}
        config_path = Path(vocabulary.source) / "tokenizer_config.json"
        if config_path.is_file():
            try:
                saved = json.loads(config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{config_path} is not valid JSON ({err}).") from err
            for key in ("padding_side", "truncation_side", "model_max_length", "pad_token"):
                if isinstance(saved.get(key), (str, int)):
                    config[key] = saved[key]
            if config.get("model_max_length", 0) > 10**9:  # HF's "no limit" sentinel
                del config["model_max_length"]
        config.update(kwargs)
        return cls(vocabulary, **config)

    # -- special tokens and sizes -------------------------------------------

    @property
    def pad_token(self) -> str | None:
        return self._pad_token

    @pad_token.setter
    def pad_token(self, token: str | None) -> None:
        if token is not None and token not in self.encoder:
            raise ValueError(f"pad_token {token!r} is not in the vocabulary; use an "
                             "existing token, e.g. tokenizer.eos_token.")
        self._pad_token = token

    @property
    def pad_token_id(self) -> int | None:
        return None if self._pad_token is None else self.encoder[self._pad_token]

    @property
    def eos_token_id(self) -> int:
        return self.encoder[self.eos_token]

    @property
    def bos_token_id(self) -> int:
        return self.encoder[self.bos_token]

    @property
    def unk_token_id(self) -> int:
        return self.encoder[self.unk_token]

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self.vocabulary.special_tokens)

    @property
    def all_special_ids(self) -> list[int]:
        return list(self.vocabulary.special_tokens.values())

    @property
    def vocab_size(self) -> int:
        return self.vocabulary.size

    def __len__(self) -> int:
        return self.vocabulary.size

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, (int, np.integer)):
            return self.decoder[self._check_ids([ids])[0]]
        return [self.decoder[i] for i in self._check_ids(ids)]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.encoder.get(tokens, self.unk_token_id)
        return [self.encoder.get(t, self.unk_token_id) for t in tokens]

    def graph(self, split_special_tokens: bool | None = None) -> BytePairTokenizer:
        """The graph tokenizer this API calls (built once per special-token mode)."""
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        if split not in self._graphs:
            self._graphs[split] = BytePairTokenizer(self.vocabulary, special_tokens=not split)
        return self._graphs[split]

    # -- encoding --------------------------------------------------------------

    def _encode_batch(self, texts: list[str], split_special_tokens: bool | None) -> list[list[int]]:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text input must be a str or a list of str; item {i} is "
                                f"{type(t).__name__}.")
        encoded = [_utf8(t) for t in texts]
        texts = tf.constant(encoded, tf.string) if encoded else tf.zeros([0], tf.string)
        ids, splits = self.graph(split_special_tokens).call_encode_strings(texts)
        ids, splits = ids.numpy().tolist(), splits.numpy().tolist()
        return [ids[splits[i]:splits[i + 1]] for i in range(len(texts))]

    def tokenize(self, text: str, split_special_tokens: bool | None = None) -> list[str]:
        """The token strings (byte-level symbols, `Ġ` for space)."""
        return [self.decoder[i] for i in self._encode_batch([text], split_special_tokens)[0]]

    def encode(self, text: str, *, truncation: bool | str | None = None,
               max_length: int | None = None, return_tensors: str | None = None,
               split_special_tokens: bool | None = None, add_special_tokens: bool = True,
               **kwargs) -> list[int]:
        """Ids of one text (GPT-2 adds no special tokens)."""
        if return_tensors is None and not kwargs.get("padding"):
            self._check_text(text, batch_allowed=False)
            ids = self._encode_batch([text], split_special_tokens)[0]
            return self._truncate([ids], truncation, max_length, None)[0]
        enc = self(text, truncation=truncation, max_length=max_length,
                   return_tensors=return_tensors, split_special_tokens=split_special_tokens,
                   **kwargs)
        return enc["input_ids"]

    @staticmethod
    def _check_text(text, batch_allowed: bool = True) -> bool:
        """True for a batch, False for a single str; TypeError otherwise."""
        if isinstance(text, str):
            return False
        if batch_allowed and isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            return True
        kind = "`str` (single example) or `list[str]` (batch)" if batch_allowed else "`str`"
        raise TypeError(f"text input must be of type {kind}, got {type(text).__name__}.")

    def __call__(self, text, *, return_tensors: str | None = None,
                 padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, return_attention_mask: bool = True,
                 padding_side: str | None = None, split_special_tokens: bool | None = None,
                 add_special_tokens: bool = True, pad_to_multiple_of: int | None = None
                 ) -> BatchEncoding:
        """Encode a str or a list of str, as Hugging Face's tokenizer does.

        Args:
          text: a str (one example) or a list of str (a batch).
          return_tensors: None (Python lists), 'np' (int64 arrays) or 'tf'
            (int32 tensors, what the models take).
          padding: False / 'do_not_pad', True / 'longest', or 'max_length'
            (needs a pad token: `tokenizer.pad_token = tokenizer.eos_token`).
          truncation: True / 'longest_first' / 'only_first' cut to
            `max_length` (default `model_max_length`); None with a
            `max_length` truncates too, with a warning.
          max_length: the length to truncate or pad to.
          return_attention_mask: include `attention_mask` (1 on real tokens).
          padding_side: 'right' (default) or 'left', for this call.
          split_special_tokens: True encodes `<|endoftext|>` in the text as
            ordinary text instead of the special token 50256.
          add_special_tokens: accepted for compatibility; GPT-2 adds none.
          pad_to_multiple_of: round the padded length up to a multiple.

        Returns:
          A `BatchEncoding` (a dict with attribute access): `input_ids` and
          `attention_mask`, lists for a str and lists of lists for a batch
          unless `return_tensors` is given ([batch, length] then).

        Example:
            tokenizer = GPT2Tokenizer.from_pretrained("gpt2-medium")
            encoded = tokenizer("Replace me by any text you'd like.", return_tensors="tf")
            encoded.input_ids.shape  # [1, 10]
            tokenizer.pad_token = tokenizer.eos_token
            batch = tokenizer(["a", "longer text"], padding=True, return_tensors="tf")
        """
        batched = self._check_text(text)
        texts = list(text) if batched else [text]
        if return_tensors not in (None, "np", "tf"):
            raise ValueError(f"return_tensors must be None, 'np' or 'tf', got {return_tensors!r} "
                             "(this tokenizer has no PyTorch or JAX output).")
        ids = self._encode_batch(texts, split_special_tokens)
        ids = self._truncate(ids, truncation, max_length, padding)
        ids, mask = self._pad(ids, padding, max_length, padding_side, pad_to_multiple_of)
        data = {"input_ids": ids}
        if return_attention_mask:
            data["attention_mask"] = mask
        if return_tensors is not None:
            lengths = {len(row) for row in ids}
            if len(lengths) > 1:
                raise ValueError("Unable to create tensor: the sequences have different "
                                 "lengths. Pass padding=True (and set tokenizer.pad_token = "
                                 "tokenizer.eos_token) and/or truncation=True.")
            width = lengths.pop() if lengths else 0
            for key, rows in data.items():
                array = np.array(rows, np.int64).reshape(len(rows), width)
                data[key] = tf.constant(array, tf.int32) if return_tensors == "tf" else array
        elif not batched:
            data = {k: v[0] for k, v in data.items()}
        return BatchEncoding(data)

    def _truncate(self, ids, truncation, max_length, padding):
        if truncation is None:
            if max_length is None or padding == "max_length":
                return ids
            warnings.warn("max_length was given without truncation=True: truncating to "
                          "max_length (as Hugging Face does). Pass truncation=True to "
                          "silence this.", stacklevel=3)
            truncation = True
        if truncation in (False, "do_not_truncate"):
            return ids
        if truncation not in (True, "longest_first", "only_first"):
            raise ValueError(f"truncation must be a bool, 'longest_first', 'only_first' or "
                             f"'do_not_truncate', got {truncation!r}.")
        limit = self.model_max_length if max_length is None else max_length
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max_length must be a non-negative int, got {limit!r}.")
        if self.truncation_side == "left":
            return [row[len(row) - limit:] if len(row) > limit else row for row in ids]
        return [row[:limit] for row in ids]

    def _pad(self, ids, padding, max_length, padding_side, multiple):
        masks = [[1] * len(row) for row in ids]
        if padding in (False, None, "do_not_pad"):
            return ids, masks
        if padding not in (True, "longest", "max_length"):
            raise ValueError(f"padding must be a bool, 'longest', 'max_length' or "
                             f"'do_not_pad', got {padding!r}.")
        if self.pad_token_id is None:
            raise ValueError(_PAD_ERROR)
        if padding == "max_length":
            width = self.model_max_length if max_length is None else max_length
        else:
            width = max((len(row) for row in ids), default=0)
        if multiple:
            width = -(-width // multiple) * multiple
        side = self._check_side("padding_side", padding_side or self.padding_side)
        out_ids, out_masks = [], []
        for row, mask in zip(ids, masks):
            fill = max(0, width - len(row))
            if side == "right":
                out_ids.append(row + [self.pad_token_id] * fill)
                out_masks.append(mask + [0] * fill)
            else:
                out_ids.append([self.pad_token_id] * fill + row)
                out_masks.append([0] * fill + mask)
        return out_ids, out_masks

    # -- decoding ----------------------------------------------------------------

    def _check_ids(self, ids) -> list[int]:
        if isinstance(ids, (tf.Tensor, tf.Variable)):
            ids = ids.numpy()
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1:
                raise ValueError(f"expected a 1-D sequence of ids, got shape {ids.shape}.")
            if ids.size and not np.issubdtype(ids.dtype, np.integer):
                raise TypeError(f"token ids must be integers, got dtype {ids.dtype}.")
            ids = ids.tolist()
        out, size = [], self.vocab_size
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                raise TypeError(f"token ids must be integers, got {type(i).__name__} {i!r}.")
            if not 0 <= i < size:
                raise ValueError(f"token id {i} is out of range [0, {size}).")
            out.append(int(i))
        return out

    def _rows_of_ids(self, sequences) -> list[list[int]]:
        if isinstance(sequences, (tf.Tensor, tf.Variable)):
            sequences = sequences.numpy()
        if isinstance(sequences, tf.RaggedTensor):
            sequences = sequences.to_list()
        if isinstance(sequences, np.ndarray) and sequences.ndim != 2:
            raise ValueError(f"batch_decode expects 2-D ids, got shape {sequences.shape}.")
        return [self._check_ids(row) for row in sequences]

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool = False) -> list[str]:
        rows = self._rows_of_ids(sequences)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            rows = [[i for i in row if i not in special] for row in rows]
        flat = np.array([i for row in rows for i in row], np.int32)
        splits = np.cumsum([0] + [len(row) for row in rows]).astype(np.int64)
        texts = self.graph().call_decode_strings(
            tf.constant(flat), tf.constant(splits)).numpy()
        out = [t.decode("utf-8") for t in texts]
        if clean_up_tokenization_spaces:
            out = [clean_up_tokenization(t) for t in out]
        return out

    def decode(self, token_ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = False) -> str:
        if isinstance(token_ids, (int, np.integer)):
            token_ids = [token_ids]
        return self.batch_decode([token_ids], skip_special_tokens,
                                 clean_up_tokenization_spaces)[0]

    # -- saving --------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> tuple[str, ...]:
        """Write vocab.json, merges.txt and tokenizer_config.json, readable by
        Hugging Face transformers and keras-hub."""
        paths = write_hf_files(self.vocabulary, directory)
        config = {
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "unk_token": self.unk_token,
            "pad_token": self.pad_token,
            "add_prefix_space": False,
            "errors": "replace",
            "clean_up_tokenization_spaces": False,
        }
        config_path = Path(directory) / "tokenizer_config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return tuple(str(p) for p in [*paths, config_path])

    def __repr__(self) -> str:
        return (f"GPT2Tokenizer(vocab_size={self.vocab_size}, source={self.vocabulary.source!r}, "
                f"split_special_tokens={self.split_special_tokens}, "
                f"padding_side={self.padding_side!r}, pad_token={self.pad_token!r})")


def clean_up_tokenization(text: str) -> str:
    """Hugging Face's `clean_up_tokenization` (off by default for GPT-2)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


__all__ = ["GPT2Tokenizer", "clean_up_tokenization"]
