"""Lazy module attributes (PEP 562): a package's public names load on first use, so that importing the package
(and every command inside it, for `--help`) does not load torch or transformers. Standard library only."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(module_name: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """The `__getattr__` and `__dir__` of module `module_name` whose names `exports` (name -> the module that
    defines it) are imported on first access and then kept on the module:

        __getattr__, __dir__ = lazy_exports(__name__, {"FGCLIPModel": "fgclip.model"})
    """
    module = sys.modules[module_name]

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(module, name, value)  # resolved once
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
