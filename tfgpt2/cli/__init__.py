"""The command line's parts. Each mode is a module that defines its own absl
flags and a `run()`; `main.py` only picks the mode and dispatches.

A flag belongs to the module that defines it (absl records that), so the
command line can refuse a flag of another mode instead of ignoring it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable


class CliError(Exception):
    """A usage mistake: printed as one line, without help text or traceback."""


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    summary: str  # one line for --help
    example: str  # a command that works as written
    flags_module: str  # the module whose flags belong to this mode
    run: Callable[[], None]


def flag_spelling(message: str, flag_names) -> str:
    """Rewrite Python argument spellings in a library message as the flags a
    command-line user types: `truncate_prompt=True` -> `--truncate_prompt`,
    `do_sample=False` -> `--nodo_sample`, `top_k=5` -> `--top_k=5`."""
    names = "|".join(sorted(map(re.escape, flag_names), key=len, reverse=True))
    if not names:
        return message

    def replace(match):
        name, value = match.group(1), match.group(2)
        if value == "True":
            return f"--{name}"
        if value == "False":
            return f"--no{name}"
        return f"--{name}={value}"

    return re.sub(rf"(?<![\w-])({names})=([\w.+-]+)", replace, message)
