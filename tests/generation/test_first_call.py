"""A notebook user's first `generate` on a small model is quick. A generous
guard in a fresh process (it must catch a return to tens of seconds, not
measure); the numbers for the record come from tools/first_call.py."""

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, time
    import tensorflow as tf
    t0 = time.perf_counter()
    from tfgpt2 import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel.from_config(
        GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128), seed=0)
    t1 = time.perf_counter()
    model.generate([[1, 2, 3]], max_new_tokens=16)
    t2 = time.perf_counter()
    model.generate("Hello there", max_new_tokens=16, do_sample=True)
    t3 = time.perf_counter()
    print(json.dumps({"build": t1 - t0, "first generate": t2 - t1,
                      "first text generate, sampled": t3 - t2}))
""")


def test_first_generate_on_a_small_model_takes_seconds_not_tens():
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    times = json.loads(result.stdout.strip().splitlines()[-1])
    # ~1-2 s each on a quiet 2-core machine; the bound allows a loaded one.
    assert times["first generate"] < 12, times
    assert times["first text generate, sampled"] < 12, times
