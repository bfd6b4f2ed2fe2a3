"""The command line: `tfgpt2` (the installed console command),
`python -m tfgpt2` and the repository's `python main.py` all run `run()`.
Each mode's flags and work live in its own module (`tfgpt2/cli/`); this one
picks the mode, checks that every flag given belongs to it, and dispatches."""

import sys

from tfgpt2.cli.quiet import quiet_tensorflow_logs

if "--tf_logs" not in sys.argv:
    quiet_tensorflow_logs()  # before anything imports TensorFlow

from absl import app, flags  # noqa: E402

from tfgpt2.cli import CliError, common, evaluate, finetune, flag_spelling, generate  # noqa: E402
from tfgpt2.cli import export as export_mode  # noqa: E402

MODES = {mode.name: mode
         for mode in (generate.MODE, finetune.MODE, evaluate.MODE, export_mode.MODE)}

flags.DEFINE_enum("mode", "generate", list(MODES), "What to run; see the modes above.")
FLAGS = flags.FLAGS


def _usage() -> str:
    """--help: every mode with an example, then each mode's own flags."""
    lines = ["tfgpt2: GPT-2 in TensorFlow/Keras (`tfgpt2`, `python -m tfgpt2` and "
             "`python main.py` take the same flags).", "", "Modes:"]
    for m in MODES.values():
        lines += [f"  --mode={m.name:<9} {m.summary}", f"      e.g. {m.example}"]
    for m in MODES.values():
        lines += ["", f"Flags of --mode={m.name}:", _flags_help(m.flags_module)]
    lines += ["", "Flags of every mode:", _flags_help(common.__name__), "",
              "`--helpfull` also lists absl's own flags."]
    return "\n".join(lines)


def _flags_help(module: str) -> str:
    return "\n".join(line for line in FLAGS.module_help(module).splitlines()
                     if line.strip() and line.strip() != f"{module}:")


def _check_flags_belong(mode) -> None:
    """Refuse a flag that belongs to another mode rather than ignore it."""
    owners = {mode_.flags_module: mode_.name for mode_ in MODES.values()}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        for flag in module_flags:
            if not flag.present:
                continue
            if module == common.__name__:
                users = common.USED_BY.get(flag.name)
                if users and mode.name not in users:
                    raise CliError(f"--{flag.name} is a flag of "
                                   f"{' and '.join(f'--mode={m}' for m in users)}, not of "
                                   f"--mode={mode.name}.")
            elif module in owners and module != mode.flags_module:
                raise CliError(f"--{flag.name} is a flag of --mode={owners[module]}, not of "
                               f"--mode={mode.name}.")


def main(argv):
    try:
        if len(argv) > 1:
            raise CliError(f"Unexpected arguments {argv[1:]}: every setting is a --flag "
                           "(python main.py --help lists them).")
        mode = MODES[FLAGS.mode]
        _check_flags_belong(mode)
        mode.run()
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as err:  # bad settings or files: what, not where
        print(f"error: {flag_spelling(str(err), list(FLAGS))}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The entry point: parse the flags and run the mode (exits)."""
    # absl prints the main module's docstring as the usage.
    sys.modules["__main__"].__doc__ = _usage()
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in sys.argv[1:]):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # absl's own exits 1
    app.run(main)
