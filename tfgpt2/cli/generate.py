"""`--mode=generate`: continue prompts with a checkpoint."""

from __future__ import annotations

from absl import flags

from tfgpt2.cli import CliError, Mode
from tfgpt2.cli.common import quantize_as

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("prompt", ["Hello, I'm a language model,"],
                          "Prompt text; repeat the flag for a batch. An empty prompt starts "
                          "from <|endoftext|>.")
flags.DEFINE_integer("max_new_tokens", 40, "New tokens per prompt.")
flags.DEFINE_bool("do_sample", True,
                  "Sample (the default, as the model card's pipeline) or decode greedily "
                  "(--nodo_sample). With --num_beams > 1 the default is greedy beam search.")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature (> 0).")
flags.DEFINE_integer("top_k", 50, "Top-k filter for sampling; 0 disables it.")
flags.DEFINE_float("top_p", 1.0, "Nucleus (top-p) filter for sampling, in (0, 1].")
flags.DEFINE_integer("num_beams", 1, "Beam search width; > 1 implies --nodo_sample.")
flags.DEFINE_integer("num_return_sequences", 1, "Continuations per prompt.")
flags.DEFINE_float("repetition_penalty", 1.0, "CTRL repetition penalty (1 = off).")
flags.DEFINE_bool("stream", False, "Print the text as it is generated (one --prompt).")
flags.DEFINE_string("tflite", None,
                    "Generate with this .tflite (from --mode=export --format=tflite) in LiteRT "
                    "instead of TensorFlow; --model is not used then.")
flags.DEFINE_bool("truncate_prompt", False,
                  "Keep the prompt's last tokens when prompt + new tokens exceed the context.")
flags.DEFINE_string("prompts_file", None,
                    "Generate for every prompt of this file: plain text, one prompt per line, or "
                    ".jsonl, one {\"prompt\": ..., optional max_new_tokens, do_sample, "
                    "temperature, top_k, top_p, seed} per line. Needs --output_file; runs on "
                    "every replica of --strategy.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "The dtype the model computes in: bfloat16 loads the weights as bf16 (half the "
                  "memory) and runs its matmuls in bf16, with float32 logits and sampling; "
                  "faster for batches and long prompts on a CPU with AVX512-BF16 or AMX "
                  "(docs/precision.md). Not with --quantization=int8.")
flags.DEFINE_string("output_file", None,
                    "With --prompts_file: the JSONL written, one line per prompt in input order. "
                    "Rerunning the same command after an interruption resumes it.")


def settings() -> dict:
    """The `generate` keyword arguments the flags ask for."""
    # Beam search samples nothing unless asked explicitly: --num_beams=4
    # alone means greedy beam search, not an error about beam sampling.
    do_sample = FLAGS.do_sample if FLAGS["do_sample"].present else FLAGS.num_beams == 1
    return dict(max_new_tokens=FLAGS.max_new_tokens, do_sample=do_sample,
                temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
                num_beams=FLAGS.num_beams, num_return_sequences=FLAGS.num_return_sequences,
                repetition_penalty=FLAGS.repetition_penalty, seed=FLAGS.seed,
                truncate_prompt=FLAGS.truncate_prompt)


def load_model():
    """--model, in --precision, quantized as --quantization asks."""
    import tfgpt2

    if FLAGS.precision == "bfloat16" and FLAGS.quantization not in (None, "none"):
        raise CliError(f"--precision=bfloat16 and --quantization={FLAGS.quantization} do not "
                       "go together: int8 weights are dequantized to float32; choose one.")
    model = tfgpt2.GPT2LMHeadModel.from_pretrained(FLAGS.model, dtype=FLAGS.precision)
    return quantize_as(model, FLAGS.quantization)


def run() -> None:
    if FLAGS.prompts_file or FLAGS.output_file:
        return run_file()
    if FLAGS.stream and len(FLAGS.prompt) != 1:
        raise CliError(f"--stream prints one continuation: pass exactly one --prompt "
                       f"(got {len(FLAGS.prompt)}).")
    if FLAGS.tflite:
        return run_tflite()
    import tfgpt2

    model = load_model()
    if FLAGS.stream:
        model.generate(FLAGS.prompt[0], streamer=tfgpt2.TextStreamer(model.tokenizer), **settings())
        return
    texts = model.generate(list(FLAGS.prompt), **settings())
    for i, text in enumerate(texts):
        print(f"--- {i} ---\n{text}")


def run_file() -> None:
    """--prompts_file to --output_file on every replica (`generate_file`)."""
    if not (FLAGS.prompts_file and FLAGS.output_file):
        raise CliError("--prompts_file and --output_file go together: the prompts to read and "
                       "the JSONL file to write.")
    unsupported = [f"--{name}" for name in ("prompt", "num_beams", "num_return_sequences",
                                            "repetition_penalty", "stream", "tflite")
                   if FLAGS[name].present]
    if unsupported:
        raise CliError(f"{', '.join(unsupported)} is not available with --prompts_file (each "
                       "row samples or decodes greedily with its own settings and seed).")
    from tfgpt2.distribute.strategy import cluster_size
    from tfgpt2.generation import output_file, prompt_files

    try:  # bad input fails before the model loads
        prompt_files.read_prompts(FLAGS.prompts_file)
        if cluster_size() == 1:  # in a cluster only the chief writes, and checks, the output
            output_file.check_writable(FLAGS.output_file)
    except ValueError as err:
        raise CliError(str(err)) from None
    import tfgpt2
    from tfgpt2.distribute.strategy import make_strategy

    strategy = make_strategy(FLAGS.strategy)
    model = load_model()
    options = settings()
    result = tfgpt2.generate_file(
        model, FLAGS.prompts_file, FLAGS.output_file, strategy=strategy,
        batch_size=FLAGS.batch_size or 8, seed=FLAGS.seed,
        truncate_prompt=FLAGS.truncate_prompt,
        **{name: options[name] for name in ("max_new_tokens", "do_sample", "temperature",
                                            "top_k", "top_p")})
    if not result.wrote_output:
        print(f"Generated this worker's share of {result.rows} rows; the chief wrote "
              f"{result.output}.")
        return
    print(f"{result.output}: {result.rows} rows ({result.generated_rows} generated now, "
          f"{result.generated_tokens} new tokens; run seed {result.seed}).")


def run_tflite() -> None:
    """The same flags, with the .tflite in LiteRT (greedy or sampled)."""
    unsupported = [f"--{name}" for name in ("num_beams", "repetition_penalty", "model",
                                            "precision") if FLAGS[name].present]
    if unsupported:
        raise CliError(f"{', '.join(unsupported)} is not available with --tflite "
                       "(the .tflite decodes greedily or samples with top-k/top-p).")
    try:
        import ai_edge_litert  # noqa: F401 -- the runtime the runner needs
    except ImportError:
        raise CliError("--tflite runs the file in LiteRT, which is not installed: "
                       "pip install 'tfgpt2[litert]' (or pip install ai-edge-litert).") from None
    from tfgpt2.export.litert_runner import LiteRTRunner

    runner = LiteRTRunner(FLAGS.tflite)
    options = settings()
    options = dict(max_new_tokens=options["max_new_tokens"], do_sample=options["do_sample"],
                   temperature=options["temperature"], top_k=options["top_k"],
                   top_p=options["top_p"], truncate_prompt=options["truncate_prompt"])
    if FLAGS.stream:
        printer = _TokenPrinter(runner, FLAGS.prompt[0])
        runner.generate(FLAGS.prompt[0], seed=FLAGS.seed, streamer=printer, **options)
        printer.end()
        return
    index = 0
    for prompt in FLAGS.prompt:
        for copy in range(FLAGS.num_return_sequences):
            seed = None if FLAGS.seed is None else FLAGS.seed + copy
            print(f"--- {index} ---\n{runner.generate(prompt, seed=seed, **options)}")
            index += 1


class _TokenPrinter:
    """Print text as tokens arrive, holding back a split UTF-8 character."""

    def __init__(self, runner, prompt):
        self.runner, self.ids, self.printed = runner, [], 0
        print(prompt, end="", flush=True)

    def __call__(self, token):
        if token == self.runner.eos_token_id:
            return
        self.ids.append(token)
        text = self.runner.detokenize(self.ids)
        if not text.endswith("\ufffd"):
            print(text[self.printed:], end="", flush=True)
            self.printed = len(text)

    def end(self):
        print(self.runner.detokenize(self.ids)[self.printed:], flush=True)


MODE = Mode(
    name="generate",
    summary="Continue one or more prompts (sampling, greedy or beam search).",
    example='python main.py --mode=generate --prompt="Hello, I\'m a language model," '
            "--max_new_tokens=40",
    flags_module=__name__,
    run=run,
)
