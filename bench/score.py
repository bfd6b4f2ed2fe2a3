"""Scoring throughput: tfgpt2's sliding-window `score_tokens` against
transformers' PyTorch perplexity loop, on the same GPT-2 Medium weights and
the same tokens, in one run.

    python bench/score.py                       # batch sizes 1, 2 and 4
    python bench/score.py --batch_sizes=4 --repeats=5

Protocol (docs/benchmarks.md): fp32, a seeded random GPT-2 Medium written by
`save_pretrained` (loaded by both), window 1024, stride 512. The text is
real (the tests' corpus of Python, numpy, Keras and TensorFlow sources and
docs), cut to 1024 + k * 512 tokens so that both sides run exactly the same
windows. `--task=text` runs `score_tokens` at its default batch (1 window
per pass on a CPU).
The PyTorch side is the loop of transformers' "Perplexity of fixed-length
models" guide at its documented stride of 512 (one window per forward pass,
`labels` with -100 on the context). Tokens/s counts scored tokens (all but
the first) per second, median of --repeats runs after a warm-up run that is
reported on its own (tracing included). Peers alternate run by run so that
machine noise hits them alike. The total NLL column is the parity check:
both sides' sums of -log p over the same scored tokens.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np
from absl import app, flags

from bench_support import random_medium_checkpoint

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["1", "2", "4"], "tfgpt2 windows per forward pass.")
flags.DEFINE_integer("windows", 7, "Windows per run: the text is 1024 + (windows - 1) * 512 "
                     "tokens.")
flags.DEFINE_integer("stride", 512, "Sliding-window stride (both sides).")
flags.DEFINE_integer("repeats", 3, "Timed runs per system (median).")
flags.DEFINE_integer("threads", os.cpu_count() or 1, "CPU threads for PyTorch.")
flags.DEFINE_string("checkpoint_dir", None,
                    "Reuse a saved random Medium checkpoint here (written if missing).")

WINDOW = 1024


def corpus_ids(num_tokens: int) -> np.ndarray:
    import tokenizer_support

    from tfgpt2 import GPT2Tokenizer

    text = "\n\n".join(tokenizer_support.real_corpus())
    ids = GPT2Tokenizer.from_pretrained("gpt2-medium").encode(text[: num_tokens * 8])
    if len(ids) < num_tokens:
        raise SystemExit(f"the corpus gave only {len(ids)} tokens; need {num_tokens}.")
    return np.asarray(ids[:num_tokens], np.int32)


class TfGpt2:
    """`score_tokens` at one batch size; the batch sizes share one model."""

    def __init__(self, model, batch_size):
        self.name = f"tfgpt2 score_tokens, batch {batch_size}"
        self.batch_size = batch_size
        self.model = model

    def total_nll(self, ids):
        from tfgpt2.evaluation import score_tokens

        result = score_tokens(self.model, ids, window=WINDOW, stride=FLAGS.stride,
                              batch_size=self.batch_size)
        return result.total_nll, result.num_scored


class TorchRecipe:
    """transformers' guide: windows begin every `stride` tokens, each scores
    the tokens the previous one did not, targets before them set to -100."""

    name = "transformers (PyTorch) guide loop, batch 1"

    def __init__(self, directory):
        import torch
        from transformers import GPT2LMHeadModel

        torch.set_num_threads(FLAGS.threads)
        self.torch = torch
        self.model = GPT2LMHeadModel.from_pretrained(directory).eval()

    def total_nll(self, ids):
        torch = self.torch
        input_ids = torch.as_tensor(ids[None], dtype=torch.long)
        length = input_ids.size(1)
        total, count, previous_end = 0.0, 0, 0
        with torch.no_grad():
            for begin in range(0, length, FLAGS.stride):
                end = min(begin + WINDOW, length)
                target_length = end - previous_end
                window_ids = input_ids[:, begin:end]
                labels = window_ids.clone()
                labels[:, :-target_length] = -100
                loss = self.model(window_ids, labels=labels).loss
                # The loss is a mean over the labels left after the model's
                # one-token shift; the guide's count (labels - 1) is one short
                # on every window after the first, so count them exactly.
                scored = int((labels[:, 1:] != -100).sum())
                total += float(loss) * scored
                count += scored
                previous_end = end
                if end == length:
                    break
        return total, count


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv):
    del argv
    directory = FLAGS.checkpoint_dir or os.path.join(tempfile.gettempdir(), "tfgpt2-bench-medium")
    os.makedirs(directory, exist_ok=True)
    random_medium_checkpoint(directory)
    ids = corpus_ids(WINDOW + (FLAGS.windows - 1) * FLAGS.stride)

    from tfgpt2 import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(directory)
    peers = [TorchRecipe(directory)] + [TfGpt2(model, int(b)) for b in FLAGS.batch_sizes]

    first, totals, times = {}, {}, {p.name: [] for p in peers}
    for peer in peers:
        first[peer.name], totals[peer.name] = timed(lambda peer=peer: peer.total_nll(ids))
        print(f"warm-up {peer.name}: {first[peer.name]:.1f} s", file=sys.stderr)
    for _ in range(FLAGS.repeats):
        for peer in peers:
            times[peer.name].append(timed(lambda peer=peer: peer.total_nll(ids))[0])

    reference_nll, scored = totals[peers[0].name]
    torch_rate = scored / statistics.median(times[peers[0].name])
    print(f"\nGPT-2 Medium fp32, {len(ids)} tokens ({scored} scored), window {WINDOW}, stride "
          f"{FLAGS.stride}, median of {FLAGS.repeats}; {os.cpu_count()} CPU threads; "
          f"load {os.getloadavg()[0]:.2f}\n")
    print("| system | scored tokens/s | vs transformers | first run (s) | total NLL | "
          "NLL - transformers' |")
    print("|---|---:|---:|---:|---:|---:|")
    for peer in peers:
        rate = scored / statistics.median(times[peer.name])
        nll, count = totals[peer.name]
        assert count == scored, (peer.name, count, scored)
        print(f"| {peer.name} | {rate:.1f} | {rate / torch_rate:.2f}x | "
              f"{first[peer.name]:.1f} | {nll:.2f} | {nll - reference_nll:+.4f} "
              f"({(nll - reference_nll) / reference_nll:+.1e}) |")


if __name__ == "__main__":
    app.run(main)
