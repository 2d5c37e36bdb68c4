"""The repository's root, and the scripts in ``tools/`` as modules, so tests call their
``main(argv)`` (or any function) in-process.

``tools/`` is not a package: :func:`load_tool` imports ``tools/<name>.py`` from its file with
importlib, under the module name ``tools_<name>`` (nothing is added to ``sys.path``, so a
script cannot shadow or be shadowed by another module called ``benchmark`` or ``convert``).
Every test loads tools this way."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

#: The repository root (tests live in ``tests/unit`` and ``tests/e2e``).
ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py``, imported once per session."""
    key = f"tools_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]
