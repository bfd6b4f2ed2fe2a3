"""Oracles and text for the tokenizer tests and bench/tokenizer.py.

- `tiktoken_gpt2()`: tiktoken built from the same local files (docs/tokenizer.md),
  the reference for ids. Test/bench only; package code never imports it.
- `real_corpus()`: >= 1 MB of real text found on any machine with the test
  extra installed (Python's stdlib sources, numpy/TensorFlow/Keras sources,
  licences and docs from site-packages), sorted by path, plus multilingual
  and emoji samples. Deterministic on a given machine.
"""

from __future__ import annotations

import functools
import site
import sysconfig
from pathlib import Path

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.lru_cache(maxsize=None)
def tiktoken_gpt2():
    import tiktoken
    import tiktoken.load

    from tfgpt2.tokenizer.vocab import offline_gpt2_directory

    data = offline_gpt2_directory()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        str(data / "vocab.bpe"), str(data / "encoder.json"))
    return tiktoken.Encoding("gpt2", pat_str=PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def oracle_ids(text: str, special_tokens: bool = True) -> list[int]:
    enc = tiktoken_gpt2()
    if special_tokens:
        return enc.encode(text, allowed_special="all")
    return enc.encode(text, disallowed_special=())


# Real sentences (news-, encyclopedia- and chat-like) in many scripts.
MULTILINGUAL = [
    "中华人民共和国是位于东亚的国家，首都北京。长江和黄河是中国最长的两条河流，"
    "孕育了古老的文明。今天的天气很好，我们去公园散步吧！",
    "東京は日本の首都であり、世界有数の大都市です。桜の季節には多くの人が花見を楽しみます。"
    "カタカナとひらがな、そして漢字を組み合わせて書きます。",
    "대한민국의 수도는 서울입니다. 한글은 세종대왕이 1443년에 창제하였습니다. 오늘 점심은 김치찌개를 먹었어요.",
    "اللغة العربية هي إحدى أكثر اللغات انتشاراً في العالم، ويتحدث بها أكثر من ٤٠٠ مليون نسمة. "
    "مرحباً بكم في موقعنا!",
    "हिन्दी भारत की राजभाषा है। दिल्ली भारत की राजधानी है और यहाँ की जनसंख्या बहुत अधिक है। "
    "नमस्ते, आप कैसे हैं?",
    "ภาษาไทยเป็นภาษาราชการของประเทศไทย กรุงเทพมหานครเป็นเมืองหลวง สวัสดีครับ ยินดีที่ได้รู้จัก",
    "Москва — столица России, крупнейший по численности населения город страны. "
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας. Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Καλημέρα σας!",
    "Le cœur a ses raisons que la raison ne connaît point. L'été dernier, nous sommes allés à "
    "Besançon ; c'était magnifique — n'est-ce pas ?",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Die Straße heißt Äußere "
    "Öhringer Straße.",
    "Tiếng Việt có dấu: Tôi yêu tiếng nước tôi từ khi mới ra đời. Hà Nội mùa thu đẹp lắm.",
    "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig. Český jazyk: Příliš žluťoučký "
    "kůň úpěl ďábelské ódy.",
    "עברית היא שפה שמית. ירושלים היא עיר עתיקה וחשובה. שלום עליכם!",
    "Türkçe: Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul'da ılık bir gün.",
    "Español: ¿Dónde está la biblioteca? ¡Qué sorpresa! El niño comió piña y jalapeños.",
    "Português: A ação de graças é celebrada em novembro; não há razão para pressa.",
    "Ελληνικά μαθηματικά: ∑ᵢ xᵢ² ≤ ∞, ∀ε>0 ∃δ>0; naïve café résumé coöperate façade.",
    "Math & symbols: ½ ¼ ¾ ² ³ ⁴ ① ② Ⅻ ℃ № ™ © ® § ¶ † ‡ • … ‰ ′ ″ ‹ › « » ¡ ¿",
]

EMOJI = [
    "I love it 😍😍😍! Family: 👨‍👩‍👧‍👦, skin tones: 👍🏻👍🏼👍🏽👍🏾👍🏿, flags: 🇺🇸🇫🇷🇯🇵🇧🇷🇮🇳",
    "Weather ☀️🌧️⛈️❄️ and hearts ❤️🧡💛💚💙💜🖤 🏳️‍🌈 🏴‍☠️ 👩🏽‍💻 🧑‍🚀 🤷‍♀️ #️⃣ 1️⃣",
    "Keycaps *️⃣ 🔟, zodiac ♈♉♊, cards 🂡🂢, mahjong 🀄, chess ♔♕♖, arrows ⬆️➡️⬇️⬅️",
]


_CODE = '''def merge(a, b):\n    """Merge two sorted lists."""\n    out = []\n    while a and b:\n''' \
    '''        out.append((a if a[0] <= b[0] else b).pop(0))\n    return out + a + b\n\n'''


def mixed_text(size: int, seed: int) -> str:
    """`size` UTF-8 bytes (or a few fewer) of every kind of text at once:
    multilingual sentences, emoji, code, numbers, `<|endoftext|>` and long
    runs of spaces, tabs and newlines, in a seeded random order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    parts = [
        lambda: MULTILINGUAL[rng.integers(len(MULTILINGUAL))] + " ",
        lambda: EMOJI[rng.integers(len(EMOJI))],
        lambda: _CODE,
        lambda: str(rng.integers(0, 10**12)) * int(rng.integers(1, 20)) + " ",
        lambda: "<|endoftext|>",
        lambda: "".join(rng.choice([" ", "\t", "\n", "\r\n"], int(rng.integers(1, 400)))),
    ]
    out, total = [], 0
    while total < size:
        out.append(parts[rng.integers(len(parts))]())
        total += len(out[-1].encode("utf-8"))
    text = "".join(out).encode("utf-8")[:size]
    return text.decode("utf-8", errors="ignore")  # drop a character cut in two


def _files(root: Path, pattern: str, limit_bytes: int, skip: tuple[str, ...] = ()) -> list[Path]:
    out, total = [], 0
    for path in sorted(root.glob(pattern)):
        if any(s in path.parts for s in skip) or not path.is_file():
            continue
        size = path.stat().st_size
        if size > 200_000:
            continue
        out.append(path)
        total += size
        if total >= limit_bytes:
            break
    return out


def _site_packages() -> Path:
    import numpy

    return Path(numpy.__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def real_corpus(min_bytes: int = 1_100_000) -> tuple[str, ...]:
    """Documents (str) totalling >= min_bytes UTF-8 bytes, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    packages = _site_packages()
    paths = (
        _files(stdlib, "*.py", 450_000)
        + _files(stdlib / "email", "*.py", 60_000)
        + _files(packages / "numpy", "**/*.py", 150_000, skip=("tests",))
        + _files(packages / "keras", "src/**/*.py", 150_000, skip=("tests",))
        + _files(packages / "tensorflow", "python/ops/*.py", 150_000)
        + _files(packages, "*.dist-info/LICENSE*", 150_000)
        + _files(packages, "*.dist-info/licenses/*", 100_000)
        + _files(packages, "**/*.md", 100_000)
        + _files(packages, "**/*.rst", 100_000)
    )
    docs = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
    docs += MULTILINGUAL + EMOJI
    size = sum(len(d.encode("utf-8")) for d in docs)
    if size < min_bytes:
        raise RuntimeError(f"found only {size} bytes of text for the corpus (site: "
                           f"{site.getsitepackages()}); the test extra is not installed?")
    return tuple(docs)


# ---------------------------------------------------------------------------
# The tokenizer under test, shared by the test modules of one pytest run.


@functools.lru_cache(maxsize=None)
def graph_tokenizer(special_tokens: bool = True):
    from tfgpt2.tokenizer import BytePairTokenizer

    return BytePairTokenizer(special_tokens=special_tokens)


def encode_batch(texts, special_tokens: bool = True) -> list[list[int]]:
    """Ids of many texts (str or bytes) in one graph call."""
    import tensorflow as tf

    data = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    strings = tf.constant(data, tf.string) if data else tf.zeros([0], tf.string)
    ids, splits = graph_tokenizer(special_tokens).encode_strings(strings)
    ids, splits = ids.numpy().tolist(), splits.numpy().tolist()
    return [ids[splits[i]:splits[i + 1]] for i in range(len(data))]


# ---------------------------------------------------------------------------
# Oracle for arbitrary bytes (not just valid UTF-8): Python's UTF-8 decoder
# finds the invalid units (maximal subparts, one U+FFFD each), the `regex`
# module splits the text with U+FFFD (class O) standing for each of them,
# and tiktoken's BPE encodes every piece's original bytes.


def _unit_lengths(data: bytes) -> tuple[str, list[int]]:
    """(text with U+FFFD for invalid units, byte length of each character)."""
    invalid: dict[int, int] = {}

    def record(err: UnicodeDecodeError):
        invalid[err.start] = err.end - err.start
        return "\ufffd", err.end

    import codecs

    codecs.register_error("tfgpt2_units", record)
    text = data.decode("utf-8", "tfgpt2_units")
    lengths, pos = [], 0
    for ch in text:
        n = invalid.pop(pos) if pos in invalid else len(ch.encode("utf-8"))
        lengths.append(n)
        pos += n
    assert pos == len(data)
    return text, lengths


def oracle_ids_for_bytes(data: bytes) -> list[int]:
    import regex

    enc = tiktoken_gpt2()
    text, lengths = _unit_lengths(data)
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    ids = []
    for match in regex.finditer(PATTERN, text):
        piece = data[offsets[match.start()]:offsets[match.end()]]
        ids.extend(enc._encode_single_piece(piece))
    return ids


# ---------------------------------------------------------------------------
# Hypothesis strategies weighted toward the pre-tokenizer's hard cases.

WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\xa0", "\x85", "\u1680",
              "\u2000", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
              "\x1c", "\x1f"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M",
                "'LL", "'lL", "'D", "'", "''", "'x", "'r", "'l"]
LETTERS = ["a", "Z", "word", "I", "it", "don", "é", "ß", "ǅ", "ʰ", "日本", "ä", "Ω", "щ", "ا", "क",
           "ก", "ℌ", "ﬁ", "ᾖ"]
NUMBERS = ["0", "7", "42", "2024", "٣", "²", "½", "Ⅻ", "①", "𝟘", "१"]
MARKS = ["\u0301", "\u0308", "\u20dd", "\u093f", "\u0e31", "\u200d", "\ufe0f", "\U0001f3fd"]
OTHER = ["!", ".", "...", "-", "—", "_", "(", ")", "#", "@", "$", "€", "\ufffd", "\x00",
         "\x7f", "<", "|", ">", "<|", "|>", "<|endoftext|>", "<|endoftext", "endoftext|>",
         "😀", "👍🏽", "👨‍👩‍👧", "🇺🇸", "❤️", "🏳️‍🌈"]


def hard_texts():
    """Strings built from fragments of every hard case, plus arbitrary code points."""
    from hypothesis import strategies as st

    fragment = st.one_of(
        st.sampled_from(WHITESPACE), st.sampled_from(CONTRACTIONS), st.sampled_from(LETTERS),
        st.sampled_from(NUMBERS), st.sampled_from(MARKS), st.sampled_from(OTHER),
        st.text(min_size=1, max_size=3),
        st.characters(codec="utf-8").map(str),
    )
    return st.lists(fragment, max_size=24).map("".join)


def hard_bytes():
    """Byte strings: valid UTF-8 of hard texts, cut and spliced with raw bytes."""
    from hypothesis import strategies as st

    raw = st.one_of(
        st.binary(max_size=6),
        st.sampled_from([b"\x80", b"\xbf", b"\xc0\xaf", b"\xc2", b"\xe0\x80", b"\xe0\xa0",
                         b"\xed\xa0\x80", b"\xed\x9f\xbf", b"\xf0\x8f", b"\xf0\x90\x80",
                         b"\xf4\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf5", b"\xff", b"\xfe",
                         b"\xe2\x82", b"\xf0\x9f\x98"]),
    )
    part = st.one_of(hard_texts().map(lambda t: t.encode("utf-8")), raw)
    return st.lists(part, max_size=8).map(b"".join)


def regex_disagreement() -> frozenset[int]:
    """Code points the `regex` module classes differently from tiktoken's engine
    (newer Unicode); the table follows tiktoken (tools/make_unicode_table.py)."""
    import numpy as np

    from tfgpt2.tokenizer import unicode_table

    with np.load(unicode_table.DATA_FILE) as data:
        return frozenset(data["regex_disagreement"].tolist())


def hypothesis_settings(examples: int = 40):
    """A fixed, reasonably fast profile: deterministic examples (same in CI),
    no deadline (graph calls vary in time), no example database. Set
    TFGPT2_HYPOTHESIS_SCALE=10 for a 10x longer search."""
    import os

    from hypothesis import HealthCheck, settings

    scale = float(os.environ.get("TFGPT2_HYPOTHESIS_SCALE", "1"))
    return settings(max_examples=max(1, int(examples * scale)), deadline=None,
                    derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
