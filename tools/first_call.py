"""Time a new user's first tokenizer call in this (fresh) process.

    python tools/first_call.py [--cold] [--repeat N] [--guard]

Each measurement runs in its own fresh Python process: `import tensorflow`,
`import tfgpt2`, `GPT2Tokenizer.from_pretrained('gpt2-medium')`, its first
call, then a second instance and its first call; then the first `generate`
of a small random model (2 layers), compilation included. `--cold` points the table
cache at an empty directory first (the first run after installing);
without it the cache is warm (run once untimed to fill it). Prints one line
per run and the medians. `--guard` then exits with status 1 if a median
passes its limit (`LIMITS`): generous bounds that catch a return to
multi-second first calls, kept here rather than in the unit tests because a
wall-clock bound fails on any loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, time
t0 = time.perf_counter()
import tensorflow as tf
t1 = time.perf_counter()
import tfgpt2
t2 = time.perf_counter()
from tfgpt2 import GPT2Tokenizer
tok = GPT2Tokenizer.from_pretrained("gpt2-medium")
t3 = time.perf_counter()
ids = tok("hello world")["input_ids"]
t4 = time.perf_counter()
tok2 = GPT2Tokenizer.from_pretrained("gpt2-medium")
ids2 = tok2("hello world")["input_ids"]
t5 = time.perf_counter()
assert ids == ids2 == [31373, 995], ids
from tfgpt2 import GPT2Config, GPT2LMHeadModel
model = GPT2LMHeadModel.from_config(GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128),
                                    seed=0)
t6 = time.perf_counter()
model.generate([[1, 2, 3]], max_new_tokens=16)
t7 = time.perf_counter()
model.generate("Hello there", max_new_tokens=16, do_sample=True)
t8 = time.perf_counter()
print(json.dumps({"import tensorflow": t1 - t0, "import tfgpt2": t2 - t1,
                  "from_pretrained": t3 - t2, "first call": t4 - t3,
                  "from_pretrained + first call": t4 - t2,
                  "second instance + call": t5 - t4,
                  "first generate, small model": t7 - t6,
                  "first text generate, sampled": t8 - t7}))
"""


# Seconds, on medians: ~5x what a quiet 2-core machine takes (0.3, 0.04,
# 1-2 and 1-2 s), well under what the old paths took (3-8 s, tens of s).
LIMITS = {"from_pretrained + first call": 2.0, "second instance + call": 0.5,
          "first generate, small model": 12.0, "first text generate, sampled": 12.0}


def run_once(cache_dir: str) -> dict[str, float]:
    env = dict(os.environ, TFGPT2_CACHE_DIR=cache_dir, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="empty table cache for every run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--guard", action="store_true", help="exit 1 if a median passes LIMITS")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="tfgpt2_cache_") as warm_dir:
        if not args.cold:
            run_once(warm_dir)  # fills the cache, untimed
        for _ in range(args.repeat):
            if args.cold:
                with tempfile.TemporaryDirectory(prefix="tfgpt2_cache_") as cold_dir:
                    runs.append(run_once(cold_dir))
            else:
                runs.append(run_once(warm_dir))
            print(" ".join(f"{k}={v:.3f}s" for k, v in runs[-1].items()), flush=True)
    print(f"median of {len(runs)} ({'cold' if args.cold else 'warm'} cache):")
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    for key, value in medians.items():
        print(f"  {key}: {value:.3f} s")
    over = {k: v for k, v in medians.items() if args.guard and k in LIMITS and v > LIMITS[k]}
    if over:
        sys.exit("over the limit: " + ", ".join(f"{k} {v:.2f} s > {LIMITS[k]} s"
                                                for k, v in over.items()))


if __name__ == "__main__":
    main()
