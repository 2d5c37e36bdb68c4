"""Reference implementations that live outside the pinned stack (SAM 2's own code, Hugging Face
transformers): ``requirements/install_references.sh`` installs them with ``pip --target`` into
a folder of their own, because they clash with the stack (see ``requirements/references.txt``).

Only the tests that compare with them see that folder: :func:`reference_modules` appends it
to the *end* of ``sys.path`` (the pinned packages always win) for as long as the test module's
fixture is open, and skips with the reason when the folder or a module is missing.

The folder is ``$HIERA_BACKBONES_REFERENCES``, default ``<repo>/.venv/references`` (where
``make env`` puts it)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

REFERENCES_ENV = "HIERA_BACKBONES_REFERENCES"
_ROOT = Path(__file__).resolve().parents[1]


def references_dir() -> Path:
    """The folder holding the reference packages."""
    return Path(os.environ.get(REFERENCES_ENV) or _ROOT / ".venv" / "references")


@contextmanager
def reference_modules(*names: str) -> Iterator[tuple[ModuleType, ...]]:
    """Imports ``names`` with the references folder at the end of ``sys.path`` and keeps it
    there until the block ends (lazy imports inside transformers need it); skips the calling
    test(s) with a clear reason when the folder or a module is missing."""
    folder = references_dir()
    how = f"install it with: bash requirements/install_references.sh {folder}"
    if not folder.is_dir():
        pytest.skip(f"reference folder {folder} is missing (${REFERENCES_ENV}); {how}")
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.append(entry)
    hydra_before = _hydra_initialized()
    try:
        try:
            modules = tuple(importlib.import_module(name) for name in names)
        except ImportError as err:
            pytest.skip(f"reference module not importable from {folder}: {err}; {how}")
        yield modules
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
        if not hydra_before and _hydra_initialized():
            # `import sam2` initialises Hydra's global config module; leave none behind.
            from hydra.core.global_hydra import GlobalHydra

            GlobalHydra.instance().clear()


def _hydra_initialized() -> bool:
    try:
        from hydra.core.global_hydra import GlobalHydra
    except ImportError:
        return False
    return GlobalHydra.instance().is_initialized()
