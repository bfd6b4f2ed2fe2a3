"""A package's public names loaded on first use (PEP 562), so that importing
the package (to read a data file, a prompts file, a task list) does not
import TensorFlow."""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, exports: dict[str, str], namespace: dict):
    """The `__getattr__` and `__dir__` of `package`, whose public names are
    `exports` (name -> module); a name is imported once, then kept in
    `namespace` (the package's globals)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
