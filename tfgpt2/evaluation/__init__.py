"""The GPT-2 paper's evaluation protocol: sliding-window scoring of token
streams, continuation scoring, the datasets' de-tokenizers and readers, the
choice tasks (LAMBADA, CBT) and the bias probe."""

from tfgpt2.evaluation.scoring import (ContinuationScore, ScoreResult, Window,
                                       score_continuations, score_tokens, sliding_windows)

__all__ = ["ContinuationScore", "ScoreResult", "Window", "score_continuations", "score_tokens",
           "sliding_windows"]
