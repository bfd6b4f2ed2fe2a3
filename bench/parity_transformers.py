"""Parity with Hugging Face transformers (PyTorch), both directions, on GPT-2
Medium sizes with seeded random weights:

1. a checkpoint written by tfgpt2's `save_pretrained` loads in transformers,
   and the logits agree on a left-padded batch;
2. a checkpoint written by transformers' `save_pretrained` (safetensors)
   loads in tfgpt2, and the logits agree;
3. greedy generation gives the same tokens.

    pip install -e ".[bench]" && python bench/parity_transformers.py

torch and transformers are bench-only dependencies (never in the test extra).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from tfgpt2 import GPT2Config, GPT2LMHeadModel  # noqa: E402


def left_padded_batch(rng, lengths, pad=50256):
    width = max(lengths)
    ids = np.full((len(lengths), width), pad, np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, width - n:] = rng.integers(0, 50257, n)
        mask[i, width - n:] = 1
    return ids, mask


def torch_logits(model, ids, mask):
    # transformers counts positions from the mask only in generate(); pass them.
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.inference_mode():
        out = model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                    position_ids=torch.as_tensor(positions))
    return out.logits.numpy()


def max_diff_on_real_tokens(a, b, mask):
    return float(np.abs(a - b)[mask.astype(bool)].max())


def main():
    rng = np.random.default_rng(0)
    ids, mask = left_padded_batch(rng, [24, 9, 1])
    config = GPT2Config.from_preset("gpt2-medium", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    ours = GPT2LMHeadModel.from_config(config, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        ours.save_pretrained(directory)
        theirs = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
        reference = torch_logits(theirs, ids, mask)
        mine = ours(ids, attention_mask=mask).logits.numpy()
        rows.append(("tfgpt2 checkpoint -> transformers", max_diff_on_real_tokens(mine, reference, mask)))

    with tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(1)
        hf_config = transformers.GPT2Config(n_layer=24, n_embd=1024, n_head=16)
        hf = transformers.GPT2LMHeadModel(hf_config).eval()
        hf.save_pretrained(directory, safe_serialization=True)
        loaded = GPT2LMHeadModel.from_pretrained(directory)
        reference = torch_logits(hf, ids, mask)
        mine = loaded(ids, attention_mask=mask).logits.numpy()
        rows.append(("transformers checkpoint -> tfgpt2", max_diff_on_real_tokens(mine, reference, mask)))

        prompt = ids[:1, -24:]
        with torch.inference_mode():
            hf_tokens = hf.generate(torch.as_tensor(prompt), max_new_tokens=32, min_new_tokens=32,
                                    do_sample=False, pad_token_id=50256).numpy()[0, 24:]
        our_tokens = loaded.generate(prompt, max_new_tokens=32, eos_token_id=[])[0, 24:]
        same = bool(np.array_equal(hf_tokens, our_tokens))

    print(f"\nGPT-2 Medium sizes, seeded random weights, left-padded batch {ids.shape}; "
          f"transformers {transformers.__version__}, torch {torch.__version__}\n")
    print("| direction | max abs logit difference (real tokens) |")
    print("|---|---|")
    for name, diff in rows:
        print(f"| {name} | {diff:.2e} |")
    print(f"\nGreedy, 32 new tokens: same tokens as transformers: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
