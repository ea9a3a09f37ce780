"""Lazy public faces for sft's subpackages (PEP 562): ``import sft`` loads a module on first use."""
from __future__ import annotations

import importlib


def attach(package: str, modules: dict[str, list[str]]):
    """Return ``(__getattr__, __dir__, __all__)`` for ``package``.

    ``modules`` maps each submodule to the public names it re-exports; ``package.<module>`` and
    ``package.<name>`` both resolve on first access, so importing the package costs nothing.
    """
    owner = {name: mod for mod, names in modules.items() for name in names}

    def __getattr__(name):
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        if name in owner:
            return getattr(importlib.import_module(f"{package}.{owner[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted([*modules, *owner])

    return __getattr__, __dir__, sorted([*modules, *owner])
