"""The GPT-2 paper's evaluation protocol, the model card's table as code.

- `score_tokens`, `score_continuations`, `sliding_windows` (`scoring`): the
  batched log-likelihoods everything else is made of.
- `evaluate(model, task, data)` (`tasks`): one benchmark the paper's way:
  `lambada`, `cbt-cn`, `cbt-ne`, `wikitext2`, `wikitext103`, `ptb`, `1bw`,
  `enwik8`, `text8`; any text (`text`); the bias probe (`bias`,
  `probe_bias` for the records).
- `detokenizers`, `units`, `datasets`: the datasets' de-tokenizers, unit
  counts and readers.

Names load on first use, so reading a data file or the task list does not
import TensorFlow.
"""

from __future__ import annotations

from tfgpt2.lazy_names import lazy_attributes

_EXPORTS = {
    "ContinuationScore": "tfgpt2.evaluation.scoring",
    "ScoreResult": "tfgpt2.evaluation.scoring",
    "Window": "tfgpt2.evaluation.scoring",
    "score_continuations": "tfgpt2.evaluation.scoring",
    "score_tokens": "tfgpt2.evaluation.scoring",
    "sliding_windows": "tfgpt2.evaluation.scoring",
    "TaskResult": "tfgpt2.evaluation.report",
    "evaluate": "tfgpt2.evaluation.tasks",
    "probe_bias": "tfgpt2.evaluation.bias",
}
__all__ = ["ContinuationScore", "ScoreResult", "TaskResult", "Window", "evaluate", "probe_bias",
           "score_continuations", "score_tokens", "sliding_windows"]
assert sorted(__all__) == sorted(_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())
