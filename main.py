"""The command line from a checkout: the same as the installed `tfgpt2`
command and `python -m tfgpt2` (see tfgpt2/cli/main.py)."""

from tfgpt2.cli.main import run

if __name__ == "__main__":
    run()
