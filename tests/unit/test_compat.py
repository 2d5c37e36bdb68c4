"""``hiera_backbones.compat`` next to the transformers a user may have: the MMAction2 adapter
imports with a transformers whose ``modeling_utils`` lacks what MMAction2's VindLU imports
(4.56 and later, 5.x), with transformers absent, and with a transformers VindLU can use.

Each case runs in a fresh interpreter (which modules are imported, and MMAction2's
``WITH_MULTIMODAL``, are process-wide) against a fake ``transformers`` package put first on
``PYTHONPATH``: fast, offline, and independent of whatever transformers is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tool_scripts import ROOT

pytest.importorskip("mmaction")
pytest.importorskip("importlib_metadata")  # mmaction.utils.dependency needs it

# What the adapter must give in every case: our backbone, and MMAction2's VindLU entries (the
# real models, or MMAction2's placeholders that raise ImportError when built).
CHECK_ADAPTER = """
import hiera_backbones.mmaction
from mmaction.registry import MODELS
from hiera_backbones.compat import patch_mmaction_multimodal

assert {"Hiera", "HVT", "HieraHead"} <= set(MODELS.module_dict)
assert "VindLURetrieval" in MODELS.module_dict
try:
    MODELS.build(dict(type="VindLURetrieval"))
except ImportError:
    print("vindlu-placeholder")
assert patch_mmaction_multimodal() is False  # a second call changes nothing, warns no more
# mmengine tries `from transformers import Adafactor` itself; the probe is this import:
print("adapter-ok", "transformers.modeling_utils" in sys.modules)
"""

# transformers absent: imports of it fail, and its distribution metadata is not found either
# (MMAction2 decides from the metadata; every sys.meta_path finder adds distributions, so a
# finder alone cannot hide an installed one).
HIDE_TRANSFORMERS = """
import importlib.abc
import sys

import importlib_metadata


class _NoTransformers(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "transformers":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTransformers())
_distribution = importlib_metadata.distribution


def _without_transformers(name):
    if name == "transformers":
        raise importlib_metadata.PackageNotFoundError(name)
    return _distribution(name)


importlib_metadata.distribution = _without_transformers
"""

MODELING_UTILS_5X = "class PreTrainedModel:\n    pass\n"  # what 4.56+ keeps of VindLU's import
MODELING_UTILS_4X = MODELING_UTILS_5X + "".join(
    f"\ndef {name}(*args, **kwargs):\n    pass\n"
    for name in ("apply_chunking_to_forward", "find_pruneable_heads_and_indices",
                 "prune_linear_layer")
)


def _fake_transformers(root: Path, version: str, modeling_utils: str) -> Path:
    """A ``transformers`` package with installed-distribution metadata, in ``root``."""
    package = root / "transformers"
    package.mkdir()
    (package / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (package / "modeling_utils.py").write_text(modeling_utils)
    dist = root / f"transformers-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n"
    )
    return root


def _run(code: str, path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True,
        cwd=ROOT, timeout=300, env=env,
    )


def _warnings(out: subprocess.CompletedProcess) -> list[str]:
    """Non-empty stderr lines other than the mmaction2#2714 (DRN wheel bug) warning."""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    return [line for line in lines if "mmaction2#2714" not in line]


def test_transformers_without_vindlu_helpers_one_warning(tmp_path):
    out = _run(CHECK_ADAPTER, _fake_transformers(tmp_path, "5.0.0", MODELING_UTILS_5X))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["vindlu-placeholder", "adapter-ok", "True"]
    warnings = _warnings(out)
    assert len(warnings) == 1, out.stderr
    assert "transformers 5.0.0" in warnings[0]
    assert "apply_chunking_to_forward" in warnings[0] and "VindLU" in warnings[0]
    assert "transformers>=4.28,<4.56" in warnings[0]


def test_transformers_absent(tmp_path):
    out = _run(HIDE_TRANSFORMERS + CHECK_ADAPTER)
    assert out.returncode == 0, out.stderr
    # MMAction2's own placeholders, nothing of transformers imported, and no warning of ours.
    assert out.stdout.split() == ["vindlu-placeholder", "adapter-ok", "False"]
    assert _warnings(out) == [], out.stderr


def test_transformers_older_than_vindlu_needs_is_not_imported(tmp_path):
    fake = _fake_transformers(tmp_path, "4.27.0", 'raise AssertionError("imported")\n')
    out = _run(CHECK_ADAPTER, fake)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["vindlu-placeholder", "adapter-ok", "False"]
    assert _warnings(out) == [], out.stderr


def test_transformers_with_vindlu_helpers_is_left_alone(tmp_path):
    """The probe only: importing the real VindLU needs a real transformers 4.28-4.55."""
    code = (
        "from hiera_backbones.compat import patch_mmaction_multimodal\n"
        "from mmaction.utils import dependency\n"
        "assert patch_mmaction_multimodal() is False and dependency.WITH_MULTIMODAL\n"
        "assert 'mmaction.models' not in sys.modules\n"
    )
    out = _run(code, _fake_transformers(tmp_path, "4.55.4", MODELING_UTILS_4X))
    assert out.returncode == 0, out.stderr
    assert _warnings(out) == [], out.stderr


def test_unrelated_transformers_import_error_is_not_swallowed(tmp_path):
    broken = "import a_dependency_transformers_lacks\n"
    out = _run(CHECK_ADAPTER, _fake_transformers(tmp_path, "5.0.0", broken))
    assert out.returncode != 0
    assert "No module named 'a_dependency_transformers_lacks'" in out.stderr
