"""The de-tokenizers and unit counts on samples written in each dataset's
real format: what each undoes, the round trip where the paper claims
invertibility, and unit counts equal to hand counts."""

import pytest
from eval_support import (LM1B, LM1B_DETOKENIZED, PTB, PTB_DETOKENIZED, WIKITEXT,
                          WIKITEXT_DETOKENIZED)

from tfgpt2.evaluation import detokenizers as dt
from tfgpt2.evaluation import units


def test_wikitext_undoes_its_artefacts():
    assert dt.wikitext_detokenize(WIKITEXT) == WIKITEXT_DETOKENIZED


def test_wikitext_round_trip():
    assert dt.wikitext_retokenize(dt.wikitext_detokenize(WIKITEXT)) == WIKITEXT


def test_wikitext_keeps_line_count():
    assert WIKITEXT_DETOKENIZED.count("\n") == WIKITEXT.count("\n")


def test_ptb_undoes_its_artefacts():
    assert dt.ptb_detokenize(PTB) == PTB_DETOKENIZED


def test_ptb_round_trip():
    assert dt.ptb_retokenize(dt.ptb_detokenize(PTB)) == PTB


def test_lm1b_undoes_its_artefacts():
    assert dt.lm1b_detokenize(LM1B) == LM1B_DETOKENIZED


def test_lm1b_round_trip():
    assert dt.lm1b_retokenize(dt.lm1b_detokenize(LM1B)) == LM1B


def test_round_trip_exception_documented_for_abbreviations():
    """The one known gap: a token ending in a full stop followed by another."""
    line = "He moved to the U.S. in 2001 .\n"
    assert dt.lm1b_detokenize(line) == "He moved to the U.S. in 2001.\n"
    assert dt.lm1b_retokenize(dt.lm1b_detokenize(line)) != line


def test_prose_detokenize_latex_quotes_and_clitics():
    # LAMBADA's plain-text release and CBT: `` '' quotes, PTB clitics.
    assert (dt.prose_detokenize("`` i do n't know , '' she said . `` fine . ''\n")
            == "\"i don't know,\" she said. \"fine.\"\n")
    assert dt.prose_detokenize('he said " come here , tom " to him .') == \
        'he said "come here, tom" to him.'


def test_wikitext_heading_levels_must_match():
    # Unbalanced `=` runs are text, not a heading: only spacing rules apply.
    assert dt.wikitext_detokenize(" = = a = \n") == "= = a =\n"


# --- unit counts, against hand counts -------------------------------------


def test_word_counts_equal_hand_counts():
    # WikiText sample, line by line (tokens + 1 end-of-line each):
    #   " "                          0 + 1
    #   " = Valkyria Chronicles III = "  5 + 1
    #   " "                          0 + 1
    #   " = = Gameplay = = "         5 + 1
    sample = " \n = Valkyria Chronicles III = \n \n = = Gameplay = = \n"
    assert units.count_words(sample) == 1 + 6 + 1 + 6
    # PTB: "no it was n't a good year" is 7 tokens, + <eos>.
    assert units.count_words(" no it was n't a good year \n") == 8
    # 1BW: 'He said : " It does n't matter , " .' -> He said : " It does n't
    # matter , " . = 11 tokens, + </s>.
    assert units.count_words("He said : \" It does n't matter , \" .\n") == 12
    # A last line without its line break still ends a sentence.
    assert units.count_words("a b\nc") == 3 + 2
    assert units.count_words("") == 0


def test_word_counts_are_taken_on_the_original_not_the_detokenized_text():
    # De-tokenizing glues tokens together; the unit count must not move.
    # Hand count, tokens + 1 per line: blank 0+1, "= Valkyria Chronicles III ="
    # 5+1, blank 0+1, the Senjō paragraph 41+1, blank 0+1, "= = Gameplay = ="
    # 5+1, blank 0+1, the game paragraph 52+1, "= = = Plot = = =" 7+1.
    assert units.count_words(WIKITEXT) == 1 + 6 + 1 + 42 + 1 + 6 + 1 + 53 + 8
    assert units.count_whitespace_words(WIKITEXT_DETOKENIZED) < units.count_words(WIKITEXT)


def test_byte_and_character_counts_equal_hand_counts():
    assert units.count_bytes("abc") == 3
    assert units.count_bytes("Senjō") == 6          # ō is 2 bytes in UTF-8
    assert units.count_bytes("戦場") == 6            # 3 bytes each
    assert units.count_bytes(b"\xff\xfe") == 2      # raw bytes, even invalid UTF-8
    assert units.count_characters("Senjō 戦場") == 8
    assert units.count_characters("anarchism originated as a term") == 30
    assert units.count_whitespace_words(" two  words\n") == 2


@pytest.mark.parametrize("function", [dt.wikitext_detokenize, dt.ptb_detokenize,
                                      dt.lm1b_detokenize, dt.prose_detokenize])
def test_detokenizers_keep_lines_and_empty_text(function):
    assert function("") == ""
    assert function("a\n\nb\n").count("\n") == 3
