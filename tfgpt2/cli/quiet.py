"""Quiet TensorFlow's and LiteRT's C++ start-up log lines.

TensorFlow prints 8-12 lines (oneDNN, CUDA, CPU features) when it starts,
partly before its logging is configured, so `TF_CPP_MIN_LOG_LEVEL` cannot
silence them all. `import tfgpt2` (so Python and notebooks) and the command
line route file descriptor 2 through a filter that drops those lines and
passes everything else on. `--tf_logs` (command line) or a user-set
`TF_CPP_MIN_LOG_LEVEL` keep everything.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# Info and warning lines, the CUDA probe's error on a machine without a GPU,
# and the start-up banners. Other errors and fatal lines pass.
_CPP_LOG_LINE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|"
    rb"E\d{4} [^\]]*\] failed call to cuInit|"
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called|"
    rb"To enable the following instructions: .* rebuild TensorFlow|"
    # oneDNN's int64 notice, printed as an error even on CPUs with AVX-512.
    rb"E\d{4} [^\]]*\] oneDNN supports DT_INT64 only on platforms with AVX-512|"
    # LiteRT's start-up info (XNNPACK delegate, accelerator registry).
    rb"INFO: (?:Created TensorFlow Lite XNNPACK delegate|\[[\w./-]+:\d+\] ))")
_installed = False
_OURS = "TFGPT2_SET_TF_CPP_MIN_LOG_LEVEL"


def _user_chose_a_level() -> bool:
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    return level is not None and level != os.environ.get(_OURS)


def quiet_tensorflow_logs() -> None:
    """Call before TensorFlow is imported (later, it still drops the lines
    printed from then on). Once per process."""
    global _installed
    if _installed or _user_chose_a_level():
        return  # done, or the user chose a level: respect it
    _installed = True
    # TensorFlow reads the level from the environment, so child processes
    # inherit it too; the marker tells them it was ours, not the user's.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = os.environ[_OURS] = "2"
    try:
        real_stderr = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb") as source, os.fdopen(real_stderr, "wb") as sink:
            for line in source:
                if not _CPP_LOG_LINE.match(line):
                    sink.write(line)
                    sink.flush()

    thread = threading.Thread(target=forward, name="tfgpt2-stderr-filter", daemon=True)
    thread.start()

    def drain():
        # Close our end of the pipe so the filter sees EOF and writes the rest.
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        thread.join(timeout=5)

    atexit.register(drain)
