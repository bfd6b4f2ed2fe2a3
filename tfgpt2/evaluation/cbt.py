"""The Children's Book Test (CBT-CN: common nouns, CBT-NE: named entities):
choose which of 10 candidate words fills the blank of a sentence, given the
20 sentences before it.

Scoring rule (the GPT-2 paper's): for each candidate, the log-probability of
the query sentence from the blank to its end with the candidate filled in
(the candidate and the rest of the sentence after it), given the 20 context
sentences and the query up to the blank; the most probable candidate is the
prediction. The part before the blank is the same for every candidate, so
it is context, not scored. Context and query are de-tokenized with
`detokenizers.prose_detokenize`; a context longer than the model's window
keeps its most recent tokens.

File format (`cbtest_CN_test_2500ex.txt`, `cbtest_NE_test_2500ex.txt`):
questions of 21 lines separated by a blank line; lines 1-20 are `N sentence`,
line 21 is `21 query with XXXXX<TAB>answer<TAB><TAB>cand1|cand2|...|cand10`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from tfgpt2.distribute.replicas import current as current_replicas
from tfgpt2.evaluation import datasets
from tfgpt2.evaluation.detokenizers import prose_detokenize
from tfgpt2.evaluation.report import TaskResult
from tfgpt2.evaluation.scoring import ContinuationScore, score_choices

BLANK = "XXXXX"
_SENTINEL = "\ue000"  # a private-use character no rule touches


@dataclasses.dataclass(frozen=True)
class CbtQuestion:
    """One CBT question.

    Attributes:
      context: the 20 context sentences (line numbers removed).
      query: the 21st sentence, with `XXXXX` for the blank.
      answer: the right candidate.
      candidates: the candidates, in the file's order.
      line: the file line the question starts on (for messages).
    """

    context: tuple[str, ...]
    query: str
    answer: str
    candidates: tuple[str, ...]
    line: int = 0


def parse_cbt(text: str, source: str = "<text>", max_examples: int | None = None
              ) -> list[CbtQuestion]:
    """Parse CBT's 21-line format; DataError names the line at fault."""
    lines = text.replace("\r\n", "\n").split("\n")
    questions: list[CbtQuestion] = []
    block: list[tuple[int, str]] = []

    def close_block():
        if not block:
            return
        questions.append(_parse_question(block, source))
        block.clear()

    for number, line in enumerate(lines, 1):
        if line.strip():
            block.append((number, line))
            if len(block) == 21:
                close_block()
                if max_examples is not None and len(questions) >= max_examples:
                    return questions
        elif block:
            first = block[0][0]
            raise datasets.DataError(
                f"{source}: the question starting on line {first} has {len(block)} lines; CBT "
                "questions have 21 (20 numbered context sentences, then the query line).")
    if block:
        raise datasets.DataError(
            f"{source}: the question starting on line {block[0][0]} has {len(block)} lines; "
            "CBT questions have 21.")
    if not questions:
        raise datasets.DataError(f"{source} holds no CBT question.")
    return questions


def _parse_question(block: list[tuple[int, str]], source: str) -> CbtQuestion:
    sentences = []
    for expected, (number, line) in enumerate(block, 1):
        head, _, rest = line.partition(" ")
        if head != str(expected):
            raise datasets.DataError(
                f"{source} line {number} should start with its number {expected} and a space "
                f"(CBT's format), got {line[:40]!r}.")
        sentences.append(rest)
    number = block[-1][0]
    fields = sentences[-1].split("\t")
    if len(fields) != 4 or fields[2] != "":
        raise datasets.DataError(
            f"{source} line {number}: a CBT query line is 'query<TAB>answer<TAB><TAB>"
            f"candidates', got {len(fields)} tab-separated fields.")
    query, answer, _, candidate_field = fields
    if query.count(BLANK) != 1:
        raise datasets.DataError(f"{source} line {number}: the query must hold the blank "
                                 f"{BLANK} exactly once (found {query.count(BLANK)}).")
    candidates = tuple(c.strip() for c in candidate_field.split("|") if c.strip())
    if len(candidates) < 2:
        raise datasets.DataError(f"{source} line {number}: fewer than 2 candidates in "
                                 f"{candidate_field!r} (separate them with '|').")
    answer = answer.strip()
    if answer not in candidates:
        raise datasets.DataError(f"{source} line {number}: the answer {answer!r} is not among "
                                 f"the candidates {list(candidates)}.")
    return CbtQuestion(tuple(sentences[:-1]), query, answer, candidates, block[0][0])


def read_cbt(path: Path, max_examples: int | None = None) -> list[CbtQuestion]:
    return parse_cbt(datasets.read_text(path), str(path), max_examples)


def question_texts(question: CbtQuestion) -> tuple[str, list[str]]:
    """`(context, continuations)`: the de-tokenized text before the blank,
    and for each candidate the text from the blank to the end of the query
    (with the space before the blank, if any)."""
    context = prose_detokenize(" ".join(s.strip() for s in question.context))
    filled = prose_detokenize(question.query.strip().replace(BLANK, _SENTINEL))
    prefix, suffix = filled.split(_SENTINEL)
    space = " " if (not prefix or prefix.endswith(" ")) else ""
    prefix = prefix.rstrip(" ")
    full_context = f"{context} {prefix}" if prefix else context
    return full_context, [f"{space}{candidate}{suffix}" for candidate in question.candidates]


def evaluate_cbt(model, questions: list[CbtQuestion], task: str = "cbt-cn",
                 progress: bool = False) -> TaskResult:
    """Accuracy (percent) of choosing the most probable candidate. Each
    question is one forward pass: its context runs once and its candidates
    share the context's cached keys and values (`score_choices`).

    Args:
      model: a `GPT2LMHeadModel`.
      questions: from `read_cbt` / `parse_cbt`.
      task: `cbt-cn` or `cbt-ne` (the name recorded in the result).
      progress: show a progress bar.

    Returns:
      A `TaskResult` with `correct` / `total`; `total_nll` and `num_tokens`
      are those of the right answers' continuations.

    Example:
    >>> evaluate_cbt(model, read_cbt(Path("cbtest_CN_test_2500ex.txt")), "cbt-cn").value
    """
    if not questions:
        raise ValueError("No CBT questions to score.")
    tokenizer = model.tokenizer
    eos = tokenizer.eos_token_id
    contexts, continuations = zip(*(question_texts(q) for q in questions))
    context_ids = tokenizer(list(contexts), split_special_tokens=True)["input_ids"]
    flat = [c for group in continuations for c in group]
    flat_ids = tokenizer(flat, split_special_tokens=True)["input_ids"]
    bar = keras.utils.Progbar(len(questions), unit_name="question") if progress else None
    correct, gold_nll, gold_tokens = 0, 0.0, 0
    starts = np.cumsum([0] + [len(q.candidates) for q in questions])
    replicas = current_replicas()
    models = replicas.models(model)

    def work(qi, slot):
        choices = flat_ids[starts[qi]:starts[qi + 1]]
        return np.asarray([[s.nll, s.num_tokens, s.greedy] for s in
                           score_choices(models[slot], [eos] + context_ids[qi], choices)])

    # One question per replica call, combined in question order.
    for qi, scores in replicas.map(len(questions), work):
        question = questions[qi]
        group = [ContinuationScore(nll=float(n), num_tokens=int(w), greedy=bool(g))
                 for n, w, g in scores]
        if bar is not None:
            bar.add(1)
        best = int(np.argmax([s.logprob for s in group]))
        gold = question.candidates.index(question.answer)
        correct += int(best == gold)
        gold_nll += group[gold].nll
        gold_tokens += group[gold].num_tokens
    total = len(questions)
    return TaskResult(task=task, metric="accuracy", value=100.0 * correct / total,
                      unit="question", num_units=total, num_tokens=gold_tokens,
                      total_nll=gold_nll, stride=None, window=model.config.n_positions,
                      correct=correct, total=total)
