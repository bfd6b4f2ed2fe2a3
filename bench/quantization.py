"""int8 and bf16 drift: what `model.quantize("int8")` and
`from_pretrained(..., dtype="bfloat16")` change in GPT-2 Medium's outputs,
against the same model in fp32.

    python bench/quantization.py
    python bench/quantization.py --text=my_english.txt
    python bench/quantization.py --variants=bf16

Measured on the seeded random Medium every bench uses (real weights cannot
be downloaded on every machine that benches), in one process:
- the max |logit| error against fp32 over the 8-token bench prompt and over
  the text's first window, with the logits' own max for scale;
- greedy agreement: of 64 new greedy tokens after the bench's 8-token
  prompt, how many equal fp32's before the first difference, and fp32's
  margin (top-1 minus top-2 logit) at that position;
- the perplexity change on a real English text, scored with a sliding
  window (`tfgpt2.score_tokens`). Default text: this repository's README.md
  (~5k tokens; each 1024-token window of Medium takes ~20 s on 2 cores).
  On random weights the perplexity itself means nothing; its change is the
  drift.
Rows (--variants): int8 as `quantize` does it (every weight matmul and the
tied LM head), int8 on the blocks only (the LM head left fp32), to show the
head's share, and bf16 (weights and matmuls in bf16, float32 logits).
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench_support import leading_agreement, random_medium_checkpoint  # noqa: E402

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_list("text", [os.path.join(ROOT, "README.md")],
                  "English text files (globs) scored for the perplexity change.")
flags.DEFINE_integer("new_tokens", 64, "Greedy tokens compared.")
flags.DEFINE_integer("stride", 1024, "Sliding-window stride of the perplexity (1024: "
                     "disjoint windows, the quickest).")
flags.DEFINE_string("checkpoint_dir", None,
                    "Reuse a saved random Medium checkpoint here (written if missing).")
flags.DEFINE_list("variants", ["int8", "int8_blocks", "bf16"], "Rows: names from VARIANTS.")


def quantize_blocks_only(model):
    """The int8 rule on the blocks' matmuls only (the LM head stays fp32):
    the bench's comparison row, not a supported model state."""
    from tfgpt2.modeling.layers import Linear

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, Linear):
            layer.quantize("int8")


def load(directory, quantize=None, dtype=None):
    from tfgpt2 import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(directory, dtype=dtype)
    if quantize is not None:
        quantize(model)
    return model


# name -> (row label, directory -> the model measured, loaded and changed)
VARIANTS = {
    "int8": ("int8, every matmul and the LM head (quantize)",
             lambda d: load(d, quantize=lambda m: m.quantize("int8"))),
    "int8_blocks": ("int8, blocks only (LM head fp32)",
                    lambda d: load(d, quantize=quantize_blocks_only)),
    "bf16": ("bf16 weights and matmuls (dtype=\"bfloat16\"), float32 logits",
             lambda d: load(d, dtype="bfloat16")),
}


def main(argv):
    del argv
    from tfgpt2 import GPT2LMHeadModel, score_tokens

    directory = FLAGS.checkpoint_dir or os.path.join(tempfile.gettempdir(), "tfgpt2-bench-medium")
    os.makedirs(directory, exist_ok=True)
    random_medium_checkpoint(directory)
    files = sorted(path for pattern in FLAGS.text for path in glob.glob(pattern))
    text = "\n\n".join(open(path, encoding="utf-8").read() for path in files)
    reference = GPT2LMHeadModel.from_pretrained(directory)
    tokens = [50256] + reference.tokenizer.encode(text)
    prompt = np.random.default_rng(0).integers(0, 50257, size=(1, 8)).astype(np.int32)
    window = np.asarray(tokens[:reference.config.n_positions], np.int32)[None]
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)

    def outputs(model):
        greedy = np.asarray(model.generate(prompt, max_new_tokens=FLAGS.new_tokens,
                                           do_sample=False, eos_token_id=[]))[0, 8:]
        return dict(prompt_logits=model(prompt).logits.numpy(),
                    window_logits=model(window).logits.numpy(), greedy=greedy,
                    score=score_tokens(model, tokens, stride=FLAGS.stride, progress=True))

    base = outputs(reference)
    rows = []
    unknown = set(FLAGS.variants) - set(VARIANTS)
    if unknown:
        raise app.UsageError(f"unknown variants {sorted(unknown)}: choose from {sorted(VARIANTS)}")
    for name, make in (VARIANTS[v] for v in FLAGS.variants):
        start = time.perf_counter()
        model = make(directory)
        seconds = time.perf_counter() - start
        result = outputs(model)
        del model
        agree = leading_agreement(result["greedy"][None], base["greedy"][None])
        margin = ""
        if agree < FLAGS.new_tokens:  # fp32's margin where the two part
            prefix = np.concatenate([prompt[0], base["greedy"][:agree]])[None]
            top = np.sort(reference(prefix).logits.numpy()[0, -1])
            margin = f"{top[-1] - top[-2]:.3f}"
        rows.append((name, seconds,
                     np.abs(result["prompt_logits"] - base["prompt_logits"]).max(),
                     np.abs(result["window_logits"] - base["window_logits"]).max(),
                     agree, margin, np.exp(result["score"].mean_nll)))
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)

    fp32_ppl = np.exp(base["score"].mean_nll)
    scale = max(np.abs(base["prompt_logits"]).max(), np.abs(base["window_logits"]).max())
    print(f"\nGPT-2 Medium (seeded random weights), against fp32. Text: "
          f"{', '.join(os.path.relpath(p, ROOT) for p in files)} ({len(tokens):,} tokens, "
          f"stride {FLAGS.stride}); fp32 perplexity {fp32_ppl:.2f}; max |logit| {scale:.2f}\n")
    print(f"| weights | load and convert (s) | max logit error, 8-token prompt | max logit error, "
          f"{window.shape[1]}-token window | greedy tokens equal to fp32 | fp32 margin there | "
          f"perplexity | change |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, seconds, prompt_error, window_error, agree, margin, ppl in rows:
        print(f"| {name} | {seconds:.1f} | {prompt_error:.4f} | {window_error:.4f} | "
              f"{agree}/{FLAGS.new_tokens} | {margin or 'n/a'} | {ppl:.2f} | "
              f"{(ppl / fp32_ppl - 1) * 100:+.3f}% |")


if __name__ == "__main__":
    app.run(main)
