"""De-tokenizers: undo each benchmark's tokenization artefacts so GPT-2 reads
text like the web text it was trained on, as the GPT-2 paper did.

Each function works line by line and keeps the line breaks, so the number of
lines, and hence the dataset's word count, is the original's. Scores are
always divided by the ORIGINAL dataset's units (`tfgpt2.evaluation.units`),
so a de-tokenizer changes what the model reads, never what it is scored per.

The paper calls its de-tokenizers invertible: the original text can be
rebuilt from the de-tokenized one, so scoring one is scoring the other. The
`retokenize_*` functions are those inverses; they restore the original
exactly when the text follows the dataset's conventions (every punctuation
mark a token of its own), with one exception each docstring names:
a token that itself ends in a punctuation mark (an abbreviation such as
`U.S.` in WikiText or 1BW) is split by the inverse as if the mark had been
moved there.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Punctuation that attaches to the word before it, as a token of its own
# (followed by a space or the end of the line).
_CLOSING_PUNCT = re.compile(r" ([.,;:!?]+|%)(?= |$)")
_CLOSING_PUNCT_INVERSE = re.compile(r"(?<=\S)([.,;:!?]+|%)(?= |$)")
_OPEN_BRACKET = re.compile(r"([(\[{]) ")
_OPEN_BRACKET_INVERSE = re.compile(r"([(\[{])(?=\S)")
_CLOSE_BRACKET = re.compile(r" ([)\]}])")
_CLOSE_BRACKET_INVERSE = re.compile(r"(?<=\S)([)\]}])")
# Clitics split off by the Penn Treebank convention ("do n't", "it 's").
_PTB_CLITIC = re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)(?= |$)", re.IGNORECASE)
_PTB_CLITIC_INVERSE = re.compile(r"(?<=[^\s'])(n't|'s|'re|'ve|'m|'ll|'d)(?=[\s.,;:!?%)\]}\"]|$)",
                                 re.IGNORECASE)
# ... and by Moses, which WikiText used ("don 't", "it 's").
_MOSES_CLITIC = re.compile(r"(?<=[A-Za-z]) ('(?:s|t|re|ve|m|ll|d))(?= |$)", re.IGNORECASE)
_MOSES_CLITIC_INVERSE = re.compile(r"(?<=[A-Za-z])('(?:s|t|re|ve|m|ll|d))(?=[\s.,;:!?%)\]}\"]|$)",
                                   re.IGNORECASE)
# A plural possessive: "players ' " -> "players' ".
_POSSESSIVE = re.compile(r"(?<=s) '(?= |$)")
_POSSESSIVE_INVERSE = re.compile(r"(?<=s)'(?= |$)")


def _per_line(text: str, transform: Callable[[str], str]) -> str:
    """Apply `transform` to every line; a final line break stays as it is."""
    lines = text.split("\n")
    last = lines.pop() if text.endswith("\n") else None
    out = [transform(line) for line in lines]
    return "\n".join(out + ([last] if last is not None else []))


def _pair_quotes(line: str) -> str:
    """Spaced double quotes, taken in pairs: ` " word " ` -> ` "word" `."""
    parts = line.split(" ")
    out: list[str] = []
    opening = True
    glue_next = False
    for part in parts:
        if part == '"':
            if opening:
                out.append('"')
                glue_next = True
            else:
                if out:
                    out[-1] += '"'
                else:
                    out.append('"')
                glue_next = False
            opening = not opening
            continue
        if glue_next and out:
            out[-1] += part
        else:
            out.append(part)
        glue_next = False
    if glue_next:  # an opening quote at the end of the line keeps its form
        out[-1] = out[-1][:-1] + '"'
    return " ".join(out)


def _unpair_quotes(line: str) -> str:
    """Inverse of `_pair_quotes`: quotes alternate opening / closing."""
    out: list[str] = []
    opening = True
    for i, ch in enumerate(line):
        if ch != '"':
            out.append(ch)
            continue
        before = line[i - 1] if i else " "
        after = line[i + 1] if i + 1 < len(line) else " "
        if opening:
            out.append('" ' if after != " " else '"')
        else:
            out.append(' "' if before != " " else '"')
        opening = not opening
    return "".join(out)


def detokenize_punctuation(line: str) -> str:
    """Undo the spacing a word tokenizer puts around punctuation in one line:
    ` ,` ` .` ` ;` ` :` ` !` ` ?` ` %` join the word before, brackets hug
    what they enclose, and spaced double quotes pair up (`" a "` -> `"a"`)."""
    line = _CLOSING_PUNCT.sub(r"\1", line)
    line = _OPEN_BRACKET.sub(r"\1", line)
    line = _CLOSE_BRACKET.sub(r"\1", line)
    return _pair_quotes(line)


def retokenize_punctuation(line: str) -> str:
    """Inverse of `detokenize_punctuation`."""
    line = _unpair_quotes(line)
    line = _CLOSE_BRACKET_INVERSE.sub(r" \1", line)
    line = _OPEN_BRACKET_INVERSE.sub(r"\1 ", line)
    return _CLOSING_PUNCT_INVERSE.sub(r" \1", line)


# ----------------------------------------------------------------------------
# WikiText (WikiText-2 and WikiText-103, `wiki.test.tokens` / `wiki.test.raw`)
# ----------------------------------------------------------------------------

_HEADING = re.compile(r"^((?:= )+)(.*?)((?: =)+)$")
_HEADING_INVERSE = re.compile(r"^(=+) (.*) (=+)$")
_NUMBER_SEPARATOR_INVERSE = re.compile(r"(?<=\d)([,.])(?=\d)")
_HYPHEN_INVERSE = re.compile(r"(?<=\S)-(?=\S)")


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization, line by line.

    Undoes:
      - the space every line starts and ends with (` Text . ` -> `Text.`);
      - the number and hyphen separators: ` @-@ ` -> `-`, ` @,@ ` -> `,`,
        ` @.@ ` -> `.` (`1 @,@ 000` -> `1,000`, `well @-@ known` ->
        `well-known`);
      - spaced headings: `= = Career = =` -> `== Career ==` (wiki markup);
      - the spaces before `, . ; : ! ? %`, inside brackets and quotes, and
        before Moses-split clitics (`it 's` -> `it's`, `don 't` -> `don't`,
        `players '` -> `players'`).
    Keeps `<unk>`: it stands for a word the dataset removed, which no
    rewriting can restore.

    Inverse: `wikitext_retokenize` (exact on WikiText's format, except after
    abbreviations that end in a full stop, such as `U.S.`).

    Example:
    >>> print(wikitext_detokenize(" = = Career = = \\n The well @-@ known actor 's 1 @,@ 000 roles . \\n"))
    == Career ==
    The well-known actor's 1,000 roles.
    <BLANKLINE>
    """
    def line_rule(line: str) -> str:
        line = line.removeprefix(" ")
        line = line.removesuffix(" ")
        line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
        heading = _HEADING.match(line)
        if heading and heading.group(1).count("=") == heading.group(3).count("="):
            level = heading.group(1).count("=")
            line = f"{'=' * level} {heading.group(2)} {'=' * level}"
        line = _MOSES_CLITIC.sub(r"\1", line)
        line = _POSSESSIVE.sub("'", line)
        return detokenize_punctuation(line)

    return _per_line(text, line_rule)


def wikitext_retokenize(text: str) -> str:
    """Inverse of `wikitext_detokenize`: WikiText's own format back.

    Example:
    >>> print(wikitext_retokenize("== Career ==\\nThe well-known actor's 1,000 roles.\\n"), end="|")
     = = Career = = 
     The well @-@ known actor 's 1 @,@ 000 roles . 
    |
    """
    def line_rule(line: str) -> str:
        line = retokenize_punctuation(line)
        line = _POSSESSIVE_INVERSE.sub(" '", line)
        line = _MOSES_CLITIC_INVERSE.sub(r" \1", line)
        heading = _HEADING_INVERSE.match(line)
        if heading and len(heading.group(1)) == len(heading.group(3)):
            marks = " ".join("=" * len(heading.group(1)))
            line = f"{marks} {heading.group(2)} {marks}"
        line = _NUMBER_SEPARATOR_INVERSE.sub(r" @\1@ ", line)
        line = _HYPHEN_INVERSE.sub(" @-@ ", line)
        return f" {line} " if line else " "

    return _per_line(text, line_rule)


# ----------------------------------------------------------------------------
# Penn Treebank (Mikolov's `ptb.test.txt`)
# ----------------------------------------------------------------------------

# Mikolov's PTB has no digits: every number is the token N.
PTB_NUMBER = "1"
_PTB_N = re.compile(r"(?<!\S)N(?!\S)")
_PTB_N_INVERSE = re.compile(rf"(?<![\w.]){PTB_NUMBER}(?![\w.])")
_PTB_I = re.compile(r"(?<!\S)i(?=\s|'|$)")


def ptb_detokenize(text: str) -> str:
    """Undo Mikolov's Penn Treebank preprocessing, line by line (one sentence
    per line).

    Undoes:
      - the space every line starts and ends with;
      - `N` for every number: it becomes the number `1` (PTB has no digits,
        so the inverse is exact), with `$ N` -> `$1`;
      - the split clitics: `do n't` -> `don't`, `it 's` -> `it's`, `'re`,
        `'ve`, `'m`, `'ll`, `'d`, and `investors '` -> `investors'`;
      - lower-casing: the first letter of a sentence and the pronoun `i`
        become capitals (PTB has no capitals, so the inverse is exact).
    Keeps `<unk>` (a removed word; nothing can restore it). PTB has no
    other punctuation to re-attach: the preprocessing removed it.

    Inverse: `ptb_retokenize` (exact on PTB's format).

    Example:
    >>> ptb_detokenize(" i do n't think the $ N million deal 's <unk> \\n")
    "I don't think the $1 million deal's <unk>\\n"
    """
    def line_rule(line: str) -> str:
        line = line.strip(" ")
        line = _PTB_N.sub(PTB_NUMBER, line).replace(f"$ {PTB_NUMBER}", f"${PTB_NUMBER}")
        line = _PTB_CLITIC.sub(r"\1", line)
        line = _POSSESSIVE.sub("'", line)
        line = _PTB_I.sub("I", line)
        return line[:1].upper() + line[1:]

    return _per_line(text, line_rule)


def ptb_retokenize(text: str) -> str:
    """Inverse of `ptb_detokenize`: Mikolov's format back.

    Example:
    >>> ptb_retokenize("I don't think the $1 million deal's <unk>\\n")
    " i do n't think the $ N million deal 's <unk> \\n"
    """
    def line_rule(line: str) -> str:
        line = line.lower()
        line = _POSSESSIVE_INVERSE.sub(" '", line)
        line = _PTB_CLITIC_INVERSE.sub(r" \1", line)
        line = line.replace(f"${PTB_NUMBER}", f"$ {PTB_NUMBER}")
        line = _PTB_N_INVERSE.sub("N", line)
        return f" {line} " if line else " "

    return _per_line(text, line_rule)


# ----------------------------------------------------------------------------
# One Billion Word benchmark (`news.en.heldout-00000-of-00050`)
# ----------------------------------------------------------------------------


def lm1b_detokenize(text: str) -> str:
    """Undo the One Billion Word benchmark's tokenization (one sentence per
    line, case kept).

    Undoes the spaces before `, . ; : ! ? %`, inside brackets and double
    quotes, and before Penn-Treebank clitics (`does n't` -> `doesn't`,
    `Obama 's` -> `Obama's`, `states '` -> `states'`).

    Inverse: `lm1b_retokenize` (exact on the benchmark's format, except
    after abbreviations that end in a full stop, such as `U.S.`).

    Example:
    >>> lm1b_detokenize('He said : " It does n\\'t matter , " and left .')
    'He said: "It doesn\\'t matter," and left.'
    """
    def line_rule(line: str) -> str:
        line = _PTB_CLITIC.sub(r"\1", line)
        line = _POSSESSIVE.sub("'", line)
        return detokenize_punctuation(line)

    return _per_line(text, line_rule)


def lm1b_retokenize(text: str) -> str:
    """Inverse of `lm1b_detokenize`."""
    def line_rule(line: str) -> str:
        line = retokenize_punctuation(line)
        line = _POSSESSIVE_INVERSE.sub(" '", line)
        return _PTB_CLITIC_INVERSE.sub(r" \1", line)

    return _per_line(text, line_rule)


# ----------------------------------------------------------------------------
# Tokenized prose: LAMBADA's plain-text release, the Children's Book Test
# ----------------------------------------------------------------------------

_LATEX_OPEN_QUOTE = re.compile(r"``\s?")
_LATEX_CLOSE_QUOTE = re.compile(r"\s?''")


def prose_detokenize(text: str) -> str:
    """Undo a Penn-Treebank-style tokenization of book prose (LAMBADA's
    plain-text release, the Children's Book Test): LaTeX-style quotes
    (` `` ` and ` '' `) become `"` attached to the quoted words, and the
    spaces before punctuation and clitics and inside brackets go.

    Not invertible (quote direction and case are not recorded), which does
    not matter where it is used: the choice tasks compare candidates under
    the same rewriting, and LAMBADA's reference version (OpenAI's
    `lambada_test.jsonl`) needs no de-tokenizing.

    Example:
    >>> prose_detokenize("`` i do n't know , '' she said .")
    '"i don\\'t know," she said.'
    """
    def line_rule(line: str) -> str:
        line = _PTB_CLITIC.sub(r"\1", line)
        line = _MOSES_CLITIC.sub(r"\1", line)
        line = _POSSESSIVE.sub("'", line)
        line = _CLOSING_PUNCT.sub(r"\1", line)
        line = _OPEN_BRACKET.sub(r"\1", line)
        line = _CLOSE_BRACKET.sub(r"\1", line)
        line = _LATEX_OPEN_QUOTE.sub('"', line)
        line = _LATEX_CLOSE_QUOTE.sub('"', line)
        return _pair_quotes(line)

    return _per_line(text, line_rule)


def identity(text: str) -> str:
    """For datasets scored as they are (enwik8's bytes, text8's characters,
    any text file)."""
    return text
