"""The canonical units each benchmark's figures are per, counted on the
ORIGINAL dataset text (before any de-tokenizing), as the GPT-2 paper
divides: words for the word-level benchmarks, bytes for enwik8, characters
for text8.
"""

from __future__ import annotations


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # the break after the last line does not start another
    return lines if text else []


def count_words(text: str) -> int:
    """Words as word-level language models count them: the whitespace-
    separated tokens of every line plus one end-of-line token per line (the
    `<eos>` of WikiText and PTB, the `</s>` of the One Billion Word
    benchmark), blank lines included, as the standard loaders of these
    benchmarks do.

    Example:
    >>> count_words(" = Title = \\n \\n Hello , world . \\n")  # 3 + 0 + 4 tokens, 3 lines
    10
    """
    return sum(len(line.split()) + 1 for line in _lines(text))


def count_whitespace_words(text: str) -> int:
    """Whitespace-separated words, no end-of-line tokens: the per-word unit
    for arbitrary text (`--task=text`).

    Example:
    >>> count_whitespace_words("Hello,  world.\\nBye")
    3
    """
    return len(text.split())


def count_bytes(data: bytes | str) -> int:
    """UTF-8 bytes (enwik8's unit).

    Example:
    >>> count_bytes("naïve")
    6
    """
    return len(data.encode("utf-8") if isinstance(data, str) else data)


def count_characters(text: str) -> int:
    """Unicode characters (text8's unit; text8 is ASCII, so also bytes).

    Example:
    >>> count_characters("naïve")
    5
    """
    return len(text)
