"""Shared fixtures. The helpers in `model_support.py` and `tokenizer_support.py`
sit next to this file, which pytest puts on sys.path for every test folder."""
