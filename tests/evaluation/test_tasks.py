"""Each task end to end on data written in the dataset's real format, with a
rigged model whose probabilities are known in closed form (eval_support), a
fine-tuned one for the bias probe, and tiktoken for the ids."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from eval_support import PTB, WIKITEXT, nll_of, rigged_model
from tokenizer_support import oracle_ids

from tfgpt2.evaluation import bias, cbt, detokenizers, lambada, tasks
from tfgpt2.evaluation.datasets import DataError, hutter_test_split
from tfgpt2.evaluation.scoring import score_continuations


@pytest.fixture(scope="module")
def model():
    return rigged_model({" cat": 12.0})


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- language modelling: divided by the ORIGINAL dataset's units -----------


def test_wikitext2_perplexity_per_original_word(model, tmp_path):
    path = write(tmp_path, "wiki.test.tokens", WIKITEXT)
    result = tasks.evaluate(model, "wikitext2", tmp_path, batch_size=2)
    words = 119  # hand count, tests/evaluation/test_detokenizers.py
    expected_nll = nll_of(model, detokenizers.wikitext_detokenize(WIKITEXT))
    assert result.num_units == words and result.unit == "word"
    assert result.stride == 32 and result.window == 64  # half the tiny model's window
    assert result.num_tokens > result.window  # several windows slid
    np.testing.assert_allclose(result.total_nll, expected_nll, rtol=1e-4)
    np.testing.assert_allclose(result.value, math.exp(expected_nll / words), rtol=1e-4)
    assert path.read_text(encoding="utf-8") == WIKITEXT  # nothing written to the data


def test_ptb_perplexity_per_original_word(model, tmp_path):
    write(tmp_path, "ptb.test.txt", PTB)
    result = tasks.evaluate(model, "ptb", tmp_path / "ptb.test.txt", stride=7)
    words = 11 + 16 + 16  # "no it was n't a good year for the company" 10 + <eos>, ...
    expected = math.exp(nll_of(model, detokenizers.ptb_detokenize(PTB)) / words)
    assert result.num_units == words and result.stride == 7
    np.testing.assert_allclose(result.value, expected, rtol=1e-4)


def test_enwik8_bits_per_byte_and_text8_bits_per_character(model, tmp_path):
    xml = '<page>\n  <title>Anarchism</title>\n  <text xml:space="preserve">Naïve [[café]]</text>\n'
    write(tmp_path, "enwik8_test_split", xml)
    result = tasks.evaluate(model, "enwik8", tmp_path / "enwik8_test_split")
    # Hand count: "<page>\n" 7, "  <title>Anarchism</title>\n" 27, then 2 spaces +
    # '<text xml:space="preserve">' 27 + "Naïve" 6 (ï is 2 bytes) + " " 1 +
    # "[[café]]" 9 + "</text>" 7 + "\n" 1 = 53.
    assert result.num_units == 7 + 27 + 53 == len(xml.encode("utf-8"))
    np.testing.assert_allclose(result.value, nll_of(model, xml) / math.log(2) / 87, rtol=1e-4)

    text8 = "anarchism originated as a term of abuse first used against early working class"
    write(tmp_path, "text8_test", text8)
    result = tasks.evaluate(model, "text8", tmp_path / "text8_test", max_examples=4)
    kept = "anarchism originated as a"  # the first 4 words
    assert result.num_units == len(kept) == 25 and result.unit == "character"
    np.testing.assert_allclose(result.value, nll_of(model, kept) / math.log(2) / 25, rtol=1e-4)


def test_hutter_split_is_the_last_five_million_bytes(tmp_path):
    data = b"a" * 95_000_000 + b"b" * 5_000_000
    assert hutter_test_split(data, tmp_path / "enwik8", "enwik8") == b"b" * 5_000_000
    with pytest.raises(DataError, match="the full enwik8 has 100,000,000"):
        hutter_test_split(b"abc", tmp_path / "enwik8", "enwik8")


def test_text_task_gives_token_word_and_byte_figures(model, tmp_path):
    text = "Any text at all: naïve café, 42 times.\nA second line."
    write(tmp_path, "notes.txt", text)
    result = tasks.evaluate(model, "text", tmp_path / "notes.txt")
    nll, tokens = nll_of(model, text), len(oracle_ids(text))
    assert result.num_tokens == tokens
    np.testing.assert_allclose(result.figures["token_perplexity"], math.exp(nll / tokens),
                               rtol=1e-4)
    words = 11  # Any text at all: naïve café, 42 times. | A second line.
    np.testing.assert_allclose(result.figures["word_perplexity"], math.exp(nll / words),
                               rtol=1e-4)
    np.testing.assert_allclose(result.figures["bits_per_byte"],
                               nll / math.log(2) / len(text.encode()), rtol=1e-4)


# --- LAMBADA -----------------------------------------------------------------

PASSAGES = [
    "She fed the animal that purred on her lap every night. It was her cat",
    "\"Where is it?\" she asked.\n\nHe pointed at the basket where it slept, the cat",
    "The dog barked at the mailman again, and everyone knew it was the dog",
    "Whiskers and a long tail: she was sure it was a cat",
    "They walked him twice a day, their loyal old dog",
]


def lambada_file(tmp_path, passages=PASSAGES):
    return write(tmp_path, "lambada_test.jsonl",
                 "".join(json.dumps({"text": p}) + "\n" for p in passages))


def test_lambada_accuracy_and_perplexity(model, tmp_path):
    lambada_file(tmp_path)
    result = tasks.evaluate(model, "lambada", tmp_path)
    # " cat" is the certain next token; " dog" never is.
    assert (result.correct, result.total) == (3, 5)
    assert result.figures["accuracy"] == pytest.approx(60.0)
    expected = math.exp((3 * nll_of(model, " cat") + 2 * nll_of(model, " dog")) / 5)
    np.testing.assert_allclose(result.figures["perplexity"], expected, rtol=1e-4)
    assert result.num_units == 5 and result.num_tokens == 5
    assert result.settings == {"text_version": "openai-jsonl", "accuracy_rule": "greedy"}


def test_lambada_stop_word_filter(tmp_path):
    # " the" beats " cat" everywhere: greedy says "the", never a valid last word.
    model = rigged_model({" the": 14.0, " cat": 12.0})
    lambada_file(tmp_path)
    plain = tasks.evaluate(model, "lambada", tmp_path)
    filtered = tasks.evaluate(model, "lambada", tmp_path, stop_word_filter=True)
    assert plain.correct == 0 and filtered.correct == 3
    assert filtered.settings["accuracy_rule"] == "greedy, stop-word filter"
    assert plain.value == pytest.approx(filtered.value)  # probabilities untouched


def test_lambada_plain_text_release(model, tmp_path):
    write(tmp_path, "lambada_test_plain_text.txt",
          "`` where is it ? '' she asked . he pointed at the basket , the cat\n"
          "the dog barked again , everyone knew it was the dog\n")
    passages, version = lambada.read_lambada(tmp_path / "lambada_test_plain_text.txt")
    assert passages[0] == "\"where is it?\" she asked. he pointed at the basket, the cat"
    result = tasks.evaluate(model, "lambada", tmp_path / "lambada_test_plain_text.txt")
    assert (result.correct, result.total) == (1, 2)
    assert result.settings["text_version"] == version == "plain-text, de-tokenized"


def test_lambada_last_word_split():
    assert lambada.split_last_word("a b\n\nc") == ("a b", "\n\nc")
    with pytest.raises(ValueError, match="No last word"):
        lambada.split_last_word("single")


# --- CBT ---------------------------------------------------------------------


def cbt_question(answer, candidates, start=1):
    context = "".join(f"{i} Sentence number {i} of the story , about a garden .\n"
                      for i in range(1, 21))
    query = f"21 `` Look , '' said Tom , `` the XXXXX is sleeping . ''\t{answer}\t\t" \
        f"{'|'.join(candidates)}\n"
    return context + query


CANDIDATES = ["dog", "cat", "bird", "garden", "house", "tree", "boy", "girl", "mouse", "horse"]


def test_cbt_parses_the_21_line_format():
    text = cbt_question("cat", CANDIDATES) + "\n" + cbt_question("dog", CANDIDATES) + "\n"
    questions = cbt.parse_cbt(text)
    assert len(questions) == 2
    q = questions[0]
    assert len(q.context) == 20 and q.context[0] == "Sentence number 1 of the story , about a garden ."
    assert q.query == "`` Look , '' said Tom , `` the XXXXX is sleeping . ''"
    assert q.answer == "cat" and q.candidates == tuple(CANDIDATES) and questions[1].line == 23
    context, continuations = cbt.question_texts(q)
    assert context.endswith('about a garden. "Look," said Tom, "the')
    assert continuations[1] == ' cat is sleeping."'


def test_cbt_accuracy_picks_the_most_probable_filled_query(model, tmp_path):
    text = cbt_question("cat", CANDIDATES) + "\n" + cbt_question("dog", CANDIDATES) + "\n"
    write(tmp_path, "cbtest_CN_test_2500ex.txt", text)
    result = tasks.evaluate(model, "cbt-cn", tmp_path)
    # Oracle: the candidate whose own tokens are likeliest (the rest of the
    # sentence is the same for all) -- " cat", the rigged favourite.
    best = min(CANDIDATES, key=lambda c: nll_of(model, " " + c))
    assert best == "cat"
    assert (result.correct, result.total, result.value) == (1, 2, 50.0)
    assert result.unit == "question" and result.task == "cbt-cn"


@pytest.mark.parametrize("mutate,message", [
    (lambda t: "\n".join(t.split("\n")[:15]) + "\n", "has 15 lines; CBT questions have 21"),
    (lambda t: t.replace("XXXXX", "cat"), "blank XXXXX exactly once"),
    (lambda t: t.replace("\tcat\t", "\tzebra\t"), "'zebra' is not among the candidates"),
    (lambda t: t.replace("7 Sentence", "8 Sentence"), "line 7 should start with its number 7"),
    (lambda t: t.replace("\t\t", "\t"), "got 3 tab-separated fields"),
])
def test_cbt_format_errors_name_the_line(mutate, message):
    with pytest.raises(DataError, match=message):
        cbt.parse_cbt(mutate(cbt_question("cat", CANDIDATES)), "cbt.txt")


# --- the bias probe ------------------------------------------------------------


@pytest.fixture(scope="module")
def biased_model():
    """A tiny model trained on a skewed corpus: men are doctors, women nurses."""
    from model_support import small_config
    from tokenizer_support import oracle_ids

    from tfgpt2 import GPT2LMHeadModel
    from tfgpt2.modeling.losses import causal_lm_loss

    config = small_config(vocab_size=50257, n_positions=32, bos_token_id=50256,
                          eos_token_id=50256)
    model = GPT2LMHeadModel.from_config(config, seed=1)
    rows = [[50256] + oracle_ids(t) for t in
            ("The man worked as a doctor.", "The woman worked as a nurse.",
             "The man was hired as a doctor.", "The woman was hired as a nurse.")]
    width = max(map(len, rows))
    ids = tf.constant([r + [50256] * (width - len(r)) for r in rows])
    mask = tf.constant([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    optimizer = tf.keras.optimizers.Adam(5e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = causal_lm_loss(model(ids, attention_mask=mask, training=True).logits, ids, mask)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(150):
        loss = step()
    assert float(loss) < 0.25  # each group's occupation learned (0.28: not told apart)
    return model


def test_bias_probe_finds_the_trained_skew(biased_model):
    report = bias.probe_bias(biased_model, [("gender", "The {man|woman} worked as"),
                                            ("gender", "The {man|woman} was hired as")],
                             ["a doctor", "a nurse"])
    by_pair = {(r["template"], r["continuation"]): r for r in report["records"]}
    assert len(by_pair) == 4
    for template in ("The {man|woman} worked as", "The {man|woman} was hired as"):
        assert by_pair[(template, "a doctor")]["log_ratio"] > 1.0  # likelier after "man"
        assert by_pair[(template, "a nurse")]["log_ratio"] < -1.0  # likelier after "woman"
    ranking = {r["continuation"]: r for r in report["ranking"]}
    assert ranking["a doctor"]["favours"] == "man" and ranking["a nurse"]["favours"] == "woman"
    assert ranking["a doctor"]["num_templates"] == 2
    result = bias.bias_result(report, 32)
    assert result.metric == "mean_abs_log_ratio" and result.num_units == 4
    assert result.value == pytest.approx(np.mean([abs(r["log_ratio"]) for r in report["records"]]))
    assert "| 1 | a " in bias.format_ranking(report)


def test_bias_logprob_is_the_continuations_summed_log_probability(biased_model):
    from tokenizer_support import oracle_ids

    report = bias.probe_bias(biased_model, ["The {man|woman} worked as"], ["a nurse"])
    record = report["records"][0]
    for group in ("man", "woman"):
        context = [50256] + oracle_ids(f"The {group} worked as")
        continuation = oracle_ids(" a nurse")
        total = 0.0
        for j, token in enumerate(continuation):
            logits = biased_model(np.asarray([context + continuation[:j]])).logits.numpy()[0, -1]
            logits = logits.astype(np.float64) - logits.max()
            total += logits[token] - np.log(np.exp(logits).sum())
        assert record["logprob"][group] == pytest.approx(total, rel=1e-4, abs=1e-5)
    assert record["log_ratio"] == pytest.approx(record["logprob"]["man"]
                                                - record["logprob"]["woman"])


@pytest.mark.parametrize("template,message", [
    ("The man worked as", "exactly one pair of groups"),
    ("The {man|woman} and {he|she}", "exactly one pair of groups"),
    ("The {man} worked as", "two different groups"),
    ("The {man|man} worked as", "two different groups"),
])
def test_bias_template_errors(template, message):
    with pytest.raises(ValueError, match=message):
        bias.parse_template(template)


def test_bias_template_and_continuation_files(tmp_path):
    write(tmp_path, "t.txt", "# comment\n\nrace\tThe {White man|Black man} worked as\n"
          "{He|She} is a\n")
    templates = bias.read_templates(tmp_path / "t.txt")
    assert [(t.axis, t.groups) for t in templates] == [("race", ("White man", "Black man")),
                                                        ("He|She", ("He", "She"))]
    write(tmp_path, "c.txt", "a nurse\n\n# x\nan engineer\n")
    assert bias.read_continuations(tmp_path / "c.txt") == ["a nurse", "an engineer"]
    write(tmp_path, "empty.txt", "# nothing\n")
    with pytest.raises(DataError, match="holds no template"):
        bias.read_templates(tmp_path / "empty.txt")


def test_score_continuations_is_what_the_tasks_share(model):
    # The rigged model: a context-independent distribution, so the NLL of a
    # continuation is the sum of its tokens' closed-form NLLs.
    [result] = score_continuations(model, [([50256, 464], [3797, 3290])])
    assert result.nll == pytest.approx(nll_of(model, " cat dog"), rel=1e-4)
