"""LAMBADA: predict the last word of a passage.

Scoring rules (the GPT-2 paper's, stated exactly):
- Text version: OpenAI's `lambada_test.jsonl` (one `{"text": passage}` per
  line, de-tokenized, with case and paragraph breaks; the version the GPT-2
  paper evaluated and the model card's figures come from) is read as it is.
  The original release's `lambada_test_plain_text.txt` (one lower-case,
  tokenized passage per line) is accepted too and de-tokenized first with
  `detokenizers.prose_detokenize`; its figures are not comparable with the
  model card's.
- Target: the passage's last whitespace-separated word; the context is
  `<|endoftext|>` plus everything before the whitespace, and the target is
  tokenized with its leading space (` word`), as GPT-2 would write it.
- Perplexity: exp of the target words' NLL (all their tokens) averaged over
  passages, i.e. per target word.
- Accuracy (greedy): a passage is correct when greedy decoding from the
  context produces exactly the target's tokens (each target token is the
  most likely next token given the context and the target tokens before
  it); what greedy decoding would write after the word is not looked at.
- With `stop_word_filter=True` (off by default), the first token of the
  prediction may not be a stop word (`STOP_WORDS`, as a whole token, with or
  without its leading space): the paper's "stop-word filter as an
  approximation" of the constraint that the word must end the sentence.
  The model card's LAMBADA accuracies are believed to include such a
  filter; its exact form was not published.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from tfgpt2.evaluation import datasets
from tfgpt2.evaluation.detokenizers import prose_detokenize
from tfgpt2.evaluation.report import TaskResult, perplexity
from tfgpt2.evaluation.scoring import score_continuations

# Common English function words (articles, pronouns, prepositions,
# conjunctions, auxiliaries): what a LAMBADA target word almost never is.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())

_LAST_WORD = re.compile(r"^(.*\S)(\s+\S+)\s*$", re.DOTALL)


def read_lambada(path: Path, max_examples: int | None = None) -> tuple[list[str], str]:
    """Passages from `lambada_test.jsonl` (OpenAI's version) or a plain-text
    file with one passage per line (the original release). Returns the
    passages (plain text de-tokenized) and which version was read."""
    text = datasets.read_text(path)
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        raise datasets.DataError(f"{path} has no passages.")
    is_json = lines[0].lstrip().startswith("{")
    passages = []
    for number, line in enumerate(lines, 1):
        if is_json:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise datasets.DataError(
                    f"{path} line {number} is not valid JSON ({err.msg}); "
                    "lambada_test.jsonl holds one {\"text\": passage} per line.") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise datasets.DataError(
                    f"{path} line {number} has no \"text\" string; lambada_test.jsonl holds "
                    "one {\"text\": passage} per line.")
            passage = record["text"]
        else:
            passage = prose_detokenize(line.strip())
        if not _LAST_WORD.match(passage):
            raise datasets.DataError(f"{path} line {number} has no context before its last word: "
                                     f"{passage[:60]!r}.")
        passages.append(passage)
        if max_examples is not None and len(passages) >= max_examples:
            break
    return passages, ("openai-jsonl" if is_json else "plain-text, de-tokenized")


def split_last_word(passage: str) -> tuple[str, str]:
    """`(context, target)` with the target's leading whitespace kept.

    Example:
    >>> split_last_word("He opened the door and saw his dog")
    ('He opened the door and saw his', ' dog')
    """
    match = _LAST_WORD.match(passage)
    if not match:
        raise ValueError(f"No last word with context before it in {passage[:60]!r}.")
    return match.group(1), match.group(2)


def stop_word_token_ids(tokenizer) -> list[int]:
    """Ids of the tokens that are a whole stop word, with or without a
    leading space (` the`, `The`, ...)."""
    texts = tokenizer.batch_decode([[i] for i in range(tokenizer.vocab_size)])
    return [i for i, text in enumerate(texts)
            if text.removeprefix(" ").lower() in STOP_WORDS]


def evaluate_lambada(model, passages: list[str], stop_word_filter: bool = False,
                     batch_size: int = 8, progress: bool = False,
                     text_version: str = "openai-jsonl") -> TaskResult:
    """Last-word perplexity and greedy accuracy (see the module docstring).

    Args:
      model: a `GPT2LMHeadModel`.
      passages: LAMBADA passages, each ending with its target word.
      stop_word_filter: rule stop words out of the first predicted token.
      batch_size: passages per forward pass.
      progress: show a progress bar.
      text_version: recorded in the result's settings.

    Returns:
      A `TaskResult`: perplexity per target word (headline) and accuracy
      (percent), `correct` / `total`.

    Example:
    >>> passages, version = read_lambada(Path("lambada_test.jsonl"))
    >>> evaluate_lambada(model, passages).figures
    {'perplexity': ..., 'accuracy': ...}
    """
    if not passages:
        raise ValueError("No LAMBADA passages to score.")
    tokenizer = model.tokenizer
    contexts, targets = zip(*(split_last_word(p) for p in passages))
    context_ids = tokenizer(list(contexts), split_special_tokens=True)["input_ids"]
    target_ids = tokenizer(list(targets), split_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    requests = [([eos] + c, t) for c, t in zip(context_ids, target_ids)]
    excluded = stop_word_token_ids(tokenizer) if stop_word_filter else None
    scores = score_continuations(model, requests, batch_size=batch_size,
                                 excluded_first_tokens=excluded, progress=progress)
    total_nll = float(np.sum([s.nll for s in scores]))
    correct = sum(s.greedy for s in scores)
    figures = {"perplexity": perplexity(total_nll, len(scores)),
               "accuracy": 100.0 * correct / len(scores)}
    return TaskResult(
        task="lambada", metric="perplexity", value=figures["perplexity"], unit="passage",
        num_units=len(scores), num_tokens=int(sum(s.num_tokens for s in scores)),
        total_nll=total_nll, stride=None, window=model.config.n_positions, correct=correct,
        total=len(scores), figures=figures,
        settings={"text_version": text_version,
                  "accuracy_rule": "greedy, stop-word filter" if stop_word_filter else "greedy"})
