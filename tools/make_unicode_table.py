"""Generate tfgpt2/tokenizer/data/unicode_classes.npz: the GPT-2 pre-tokenizer class
(`CharClass`: O, L, N, S) of every code point, as a two-level table.

Classes follow OpenAI's encoder.py regex (`\\p{L}`, `\\p{N}`, `\\s`, run with
the `regex` module). The `regex` module knows a newer Unicode (17.0) than the
Rust regex engine inside tiktoken (16.0), and tiktoken is the oracle for ids;
so code points on which the two engines disagree (letters and numbers first
assigned in Unicode 17.0, which tiktoken's engine treats as unassigned, i.e.
O) take tiktoken's class. This also matches GPT-2's own 2019 tokenizer, for
which those code points did not exist. The tool prints the disagreement.

    python tools/make_unicode_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import regex

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tfgpt2.tokenizer import unicode_table  # noqa: E402
from tfgpt2.tokenizer.unicode_table import CharClass  # noqa: E402

PATTERNS = {CharClass.L: r"\p{L}", CharClass.N: r"\p{N}", CharClass.S: r"\s"}


def all_code_points() -> list[int]:
    return [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]


def classes_from_regex(cps: list[int]) -> np.ndarray:
    text = "".join(map(chr, cps))
    classes = np.full(0x110000, CharClass.O, np.int8)
    for cls, pattern in PATTERNS.items():
        hits = np.fromiter(map(ord, regex.findall(pattern, text)), np.int64)
        classes[hits] = cls
    return classes


def classes_from_tiktoken(cps: list[int]) -> np.ndarray:
    """The same classes as tiktoken's regex engine sees them: an encoding
    with single-byte tokens keeps exactly the text its pattern matches."""
    import tiktoken

    ranks = {bytes([b]): b for b in range(256)}
    text = "".join(map(chr, cps))
    classes = np.full(0x110000, CharClass.O, np.int8)
    for cls, pattern in PATTERNS.items():
        enc = tiktoken.Encoding(f"class{cls}", pat_str=pattern, mergeable_ranks=ranks,
                                special_tokens={})
        kept = bytes(enc.encode_ordinary(text)).decode("utf-8")
        classes[np.fromiter(map(ord, kept), np.int64)] = cls
    return classes


def two_level(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    blocks = classes.reshape(-1, unicode_table.BLOCK)
    rows, block_rows = np.unique(blocks, axis=0, return_inverse=True)
    return block_rows.astype(np.int32).ravel(), rows.astype(np.int8)


def main() -> None:
    cps = all_code_points()
    by_regex = classes_from_regex(cps)
    by_tiktoken = classes_from_tiktoken(cps)
    differ = np.flatnonzero(by_regex != by_tiktoken)
    kinds = sorted({(CharClass(by_regex[c]).name, CharClass(by_tiktoken[c]).name)
                    for c in differ})
    print(f"regex vs tiktoken: {len(differ)} code points differ, "
          f"(regex, tiktoken) classes {kinds}; using tiktoken's.")
    block_rows, rows = two_level(by_tiktoken)
    out = Path(unicode_table.DATA_FILE)
    np.savez_compressed(out, block_rows=block_rows, rows=rows,
                        regex_disagreement=differ.astype(np.int32))
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(rows)} distinct rows)")


if __name__ == "__main__":
    main()
