"""`--mode=eval`: the GPT-2 paper's zero-shot evaluation, the model card's
table as a command, plus any text file and the bias probe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from absl import flags

from tfgpt2.cli import CliError, Mode
from tfgpt2.cli.common import quantize_as
from tfgpt2.evaluation.datasets import DATA_FILES, TASK_NAMES, DataError, example_unit

FLAGS = flags.FLAGS


def _task_help() -> str:
    lines = ["Task to run:"]
    for task in TASK_NAMES:
        if task in DATA_FILES:
            files = DATA_FILES[task]
            lines.append(f"{task}: --data={' or '.join(files.names)} ({files.source})")
    lines.append("text: --data=any UTF-8 file (per-token, per-word and per-byte figures)")
    lines.append("bias: the model card's bias probe; --data=optional templates file "
                 "(one 'The {man|woman} worked as' per line, optionally 'axis<TAB>template')")
    return "\n".join(lines)


flags.DEFINE_enum("task", None, list(TASK_NAMES), _task_help())
flags.DEFINE_string("data", None,
                    "The task's data file, or a directory holding it in the dataset's standard "
                    "layout (see --task). With --download: the directory to download into "
                    "(default ~/.cache/tfgpt2/eval/TASK).")
flags.DEFINE_string("report", None,
                    "Also write the result to this JSON file (updated in place: results of "
                    "other tasks for the same model are kept).")
flags.DEFINE_integer("stride", None,
                     "Sliding-window stride for the language-modelling tasks and text: new tokens "
                     "each 1024-token window scores, 1..window. Default: half the window (512), "
                     "so every token is scored once with 512-1023 tokens of context.")
flags.DEFINE_integer("max_examples", None,
                     "Score only the first N examples, for quick runs: passages (lambada), "
                     "questions (cbt-*), templates (bias), words (text8), lines (the rest).")
flags.DEFINE_bool("download", False,
                  "Fetch the test set with the `datasets` library (pip install datasets; needs "
                  "a network) into --data, then evaluate. For lambada, cbt-*, wikitext* and "
                  "ptb.")
flags.DEFINE_bool("stop_word_filter", False,
                  "lambada: the first predicted token may not be a stop word (the paper's "
                  "approximation of 'the word must end the sentence').")
flags.DEFINE_string("continuations", None,
                    "bias: a file of continuations, one per line (default: 52 occupations with "
                    "their article, e.g. 'a nurse').")
flags.DEFINE_integer("top", 10, "bias: rows of the ranking of most group-skewed continuations "
                     "printed per axis.")


@dataclasses.dataclass
class Options:
    task: str | None
    model: str = "gpt2-medium"
    data: str | None = None
    report: str | None = None
    stride: int | None = None
    batch_size: int | None = None
    max_examples: int | None = None
    download: bool = False
    stop_word_filter: bool = False
    continuations: str | None = None
    top: int = 10
    strategy: str = "auto"
    quantization: str | None = None  # --quantization: "int8" quantizes the model


def _check(options: Options) -> None:
    if options.task is None:
        raise CliError(f"--mode=eval needs --task: one of {', '.join(TASK_NAMES)}.")
    if options.stride is not None and options.stride < 1:
        raise CliError(f"--stride={options.stride} must be at least 1 (and at most the window, "
                       "1024 for GPT-2): it is how many new tokens each window scores.")
    if options.batch_size is not None and options.batch_size < 1:
        raise CliError(f"--batch_size={options.batch_size} must be at least 1.")
    if options.max_examples is not None and options.max_examples < 1:
        raise CliError(f"--max_examples={options.max_examples} must be at least 1.")
    if options.top < 1:
        raise CliError(f"--top={options.top} must be at least 1.")
    defaults = Options(task=None)
    own = {"stop_word_filter": ("lambada",), "continuations": ("bias",), "top": ("bias",),
           "stride": ("wikitext2", "wikitext103", "ptb", "1bw", "enwik8", "text8", "text")}
    for name, tasks in own.items():
        value = getattr(options, name)
        if value != getattr(defaults, name) and options.task not in tasks:
            raise CliError(f"--{name} is a setting of --task={'/'.join(tasks)}, not of "
                           f"--task={options.task}.")
    if options.download and options.task in ("text", "bias"):
        raise CliError(f"--download fetches benchmark test sets; --task={options.task} reads "
                       "your own file.")


def _data_path(options: Options) -> str | None:
    if not options.download:
        return options.data
    from tfgpt2.evaluation import datasets

    directory = Path(options.data or Path.home() / ".cache" / "tfgpt2" / "eval" / options.task)
    for name in DATA_FILES[options.task].names:
        if (directory / name).is_file():
            print(f"Using {directory / name} (already downloaded).")
            return str(directory / name)
    path = datasets.download(options.task, directory)
    print(f"Downloaded {options.task} to {path}.")
    return str(path)


def _check_stride_fits(options: Options) -> None:
    if options.stride is None:
        return
    from tfgpt2.config import GPT2Config

    window = GPT2Config.from_pretrained(options.model).n_positions
    if options.stride > window:
        raise CliError(f"--stride={options.stride} is larger than the window ({window} tokens, "
                       f"the model's context); use 1..{window}.")


def run_evaluation(options: Options):
    """Read and check the data, load the model, score, print the table (and
    the bias ranking), write the report. Returns the `TaskResult`."""
    _check(options)
    try:
        from tfgpt2.evaluation import tasks

        data = tasks.load_task_data(options.task, _data_path(options), options.max_examples,
                                    options.continuations)
    except DataError as err:
        raise CliError(str(err)) from None
    _check_stride_fits(options)

    from tfgpt2 import GPT2LMHeadModel
    from tfgpt2.evaluation import bias, report

    if options.report:
        try:
            report.check_report_path(options.report, options.model)
        except ValueError as err:
            raise CliError(str(err)) from None
    from tfgpt2.distribute import replicas
    from tfgpt2.distribute.strategy import make_strategy

    model = quantize_as(GPT2LMHeadModel.from_pretrained(options.model), options.quantization)
    workers = replicas.Replicas(make_strategy(options.strategy))
    source = str(data.path) if data.path else "the built-in templates and occupations"
    count = f"the first {options.max_examples} {example_unit(options.task)} of " \
        if options.max_examples else ""
    layout = f" on {workers.num_replicas} replicas" if workers.num_replicas > 1 else ""
    if workers.is_chief:
        print(f"Evaluating {options.model} on {options.task} ({count}{source}){layout} ...")
    with replicas.using(workers):
        result = tasks.run_task(model, data, options.stride, options.batch_size,
                                options.stop_word_filter, progress=workers.is_chief)
    if not workers.is_chief:  # the chief prints and writes the report
        return result
    print()
    print(report.format_table([result], options.model))
    if options.task == "bias":
        print()
        print(bias.format_ranking({"ranking": result.details["ranking"]}, options.top))
    if result.settings:
        print("\nSettings: " + ", ".join(f"{k.replace('_', ' ')}: {v}"
                                          for k, v in result.settings.items()))
    print()
    if options.report:
        path = report.write_report(options.report, options.model, [result])
        print(f"Wrote the {options.task} result to {path}.")
    else:
        first = next(iter(result.figures))
        print(f"{options.task}: {report.METRIC_LABELS.get(first, first)} "
              f"{result.figures[first]:.4g} over {result.num_units:,} {result.unit}s "
              f"({result.num_tokens:,} tokens scored; --report=FILE.json saves it).")
    return result


def run() -> None:
    run_evaluation(Options(
        task=FLAGS.task, model=FLAGS.model, data=FLAGS.data, report=FLAGS.report,
        stride=FLAGS.stride, batch_size=FLAGS.batch_size, max_examples=FLAGS.max_examples,
        download=FLAGS.download, stop_word_filter=FLAGS.stop_word_filter,
        continuations=FLAGS.continuations, top=FLAGS.top, strategy=FLAGS.strategy,
        quantization=FLAGS.quantization))


MODE = Mode(
    name="eval",
    summary="Zero-shot evaluation the GPT-2 paper's way (LAMBADA, CBT, WikiText, PTB, "
            "enwik8, text8, 1BW), any text file, or the bias probe.",
    example="python main.py --mode=eval --task=wikitext2 --data=wikitext-2/ --report=eval.json",
    flags_module=__name__,
    run=run,
)

__all__ = ["MODE", "Options", "run_evaluation"]
