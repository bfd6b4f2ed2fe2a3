"""The committed class table against its two sources.

tiktoken's regex engine (Unicode 16.0) is the oracle for ids, so the table
follows it everywhere; OpenAI's `regex` module (newer Unicode, 17.0) agrees
except on code points first assigned after 16.0, which are listed in the data
file and must be exactly those where the engines disagree.
"""

import numpy as np
import pytest
import regex

from tfgpt2.tokenizer import unicode_table
from tfgpt2.tokenizer.unicode_table import CharClass

CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
PATTERNS = {CharClass.L: r"\p{L}", CharClass.N: r"\p{N}", CharClass.S: r"\s"}


@pytest.fixture(scope="module")
def table_classes():
    return unicode_table.classes_of(np.arange(0x110000))


def _classes(find_all) -> np.ndarray:
    classes = np.full(0x110000, CharClass.O, np.int64)
    for cls, pattern in PATTERNS.items():
        classes[np.fromiter(find_all(pattern), np.int64)] = cls
    return classes


def test_table_equals_tiktoken_engine_classes(table_classes):
    import tiktoken

    text = "".join(map(chr, CODE_POINTS))
    ranks = {bytes([b]): b for b in range(256)}

    def find_all(pattern):
        enc = tiktoken.Encoding("probe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        return map(ord, bytes(enc.encode_ordinary(text)).decode("utf-8"))

    assert np.array_equal(table_classes, _classes(find_all))


def test_table_equals_regex_module_except_documented_newer_code_points(table_classes):
    text = "".join(map(chr, CODE_POINTS))
    by_regex = _classes(lambda p: map(ord, regex.findall(p, text)))
    differ = set(np.flatnonzero(by_regex != table_classes).tolist())
    with np.load(unicode_table.DATA_FILE) as data:
        documented = set(data["regex_disagreement"].tolist())
    assert differ == documented
    # Only letters/numbers the regex module knows and the table calls O.
    assert all(table_classes[c] == CharClass.O for c in documented)
    assert len(documented) < 20_000


def test_some_known_classes():
    cps = [ord(c) for c in "aZé日 \t\n\xa0\u3000'!\u0301٣Ⅻ😀"]
    want = "LLLLSSSSSOOONNO"
    assert "".join(CharClass(c).name for c in unicode_table.classes_of(np.array(cps))) == want
