"""Shared by ``tests/unit`` and ``tests/e2e``. Helper modules beside this file (``helpers``,
``tool_scripts``, ``checkpoint_files``, ``backbone_cases``, ``frameworks``) are importable from
both folders: setup.cfg puts ``tests`` on ``sys.path`` (``pythonpath``)."""

import os
from pathlib import Path

import pytest
import torch

# Deterministic, and no accidental downloads: tests build everything they use.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Subprocesses (tools run as scripts, fresh interpreters, torchrun) import this checkout's
# package, like the tests themselves, even where an editable install points elsewhere.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
