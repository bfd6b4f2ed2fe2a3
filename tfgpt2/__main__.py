"""`python -m tfgpt2`: the command line (tfgpt2/cli/main.py)."""

from tfgpt2.cli.main import run

run()
