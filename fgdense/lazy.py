"""Public names of a package imported on first use, so that importing the package (and every tool's
``--help``, and the tools' argument checks) stays quick: torch and transformers load only when a name that
needs them is used."""

from __future__ import annotations

import sys
from importlib import import_module


def lazy_exports(package: str, public: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``), whose ``public`` names (name ->
    relative module defining it) are imported when first asked for, then kept."""

    def __getattr__(name):
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(public[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
