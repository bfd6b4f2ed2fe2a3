"""tfgpt2 command line: `python main.py --mode=generate --prompt="..."`.

Thin by design: flags in, library calls out.
"""

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "generate", ["generate"], "What to run.")
flags.DEFINE_string("model", "gpt2-medium",
                    "Hub name (gpt2, gpt2-medium, org/name) or a checkpoint directory "
                    "(Hugging Face safetensors or OpenAI model.ckpt).")
flags.DEFINE_multi_string("prompt", ["Hello, I'm a language model,"],
                          "Prompt text; repeat the flag for a batch.")
flags.DEFINE_integer("max_new_tokens", 40, "New tokens per prompt.")
flags.DEFINE_bool("do_sample", True, "Sample (True) or decode greedily (False).")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature (> 0).")
flags.DEFINE_integer("top_k", 50, "Top-k filter for sampling; 0 disables it.")
flags.DEFINE_float("top_p", 1.0, "Nucleus (top-p) filter for sampling, in (0, 1].")
flags.DEFINE_integer("num_beams", 1, "Beam search width (with --nodo_sample).")
flags.DEFINE_integer("num_return_sequences", 1, "Continuations per prompt.")
flags.DEFINE_float("repetition_penalty", 1.0, "CTRL repetition penalty (1 = off).")
flags.DEFINE_integer("seed", None, "Seed for reproducible sampling.")
flags.DEFINE_bool("stream", False, "Print tokens as they are generated (one prompt).")


def generate():
    import tfgpt2

    model = tfgpt2.GPT2LMHeadModel.from_pretrained(FLAGS.model)
    settings = dict(max_new_tokens=FLAGS.max_new_tokens, do_sample=FLAGS.do_sample,
                    temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
                    num_beams=FLAGS.num_beams, num_return_sequences=FLAGS.num_return_sequences,
                    repetition_penalty=FLAGS.repetition_penalty, seed=FLAGS.seed)
    if FLAGS.stream:
        if len(FLAGS.prompt) != 1:
            raise app.UsageError("--stream takes exactly one --prompt.")
        streamer = tfgpt2.TextStreamer(model.tokenizer)
        model.generate(FLAGS.prompt[0], streamer=streamer, **settings)
        return
    texts = model.generate(list(FLAGS.prompt), **settings)
    for i, text in enumerate(texts):
        print(f"--- {i} ---\n{text}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        {"generate": generate}[FLAGS.mode]()
    except (ValueError, TypeError, OSError) as err:  # bad flags or files: say what, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(app.run(main))
