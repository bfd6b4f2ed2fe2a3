"""What a run tells its user, on stdout/stderr as plain lines: absl's log
lines are hidden by the command line's filter of TensorFlow's start-up noise
(they share its format), and a notebook shows prints as they come."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """A progress line (stdout)."""
    print(message, flush=True)


def warn(message: str) -> None:
    """Something the user should know but that does not stop the run (stderr)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
