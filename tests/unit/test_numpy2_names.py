"""Names numpy 2 removed that the frameworks still read (``hiera_backbones.compat``).

* The scan: every ``np.<name>`` (and ``from numpy import <name>``) in the installed mmaction2,
  mmdet, mmcv, mmengine, detectron2, pycocotools and fvcore sources that the installed numpy
  lacks is listed in ``NUMPY2_READERS`` (patched) or ``NUMPY2_UNREACHED`` (documented): an
  upgrade that reads a new removed name fails here.
* AVA evaluation (MMAction2's ``AVAMetric``) on a split where label-map classes have detections
  but no ground truth: their AP is NaN and the mAP is the mean over the others, as MMAction2
  intends; without the adapter the same evaluation raises (the host bug is still there).
* The patch is scoped: numpy itself and other modules are unchanged; the restored names mean
  what they meant.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hiera_backbones import compat

SCANNED = ("mmaction", "mmdet", "mmcv", "mmengine", "detectron2", "pycocotools", "fvcore")
#: Hits of the scan that are not numpy 2 removals, or not importable modules.
NOT_NUMPY2 = {
    # A typo for np_boxes in MMDetection's Flickr30k metric: no numpy ever had it.
    ("mmdet.evaluation.metrics.flickr30k_metric", "boxes"),
}
#: Folders of scripts shipped as package data (OpenMMLab's ``.mim/tools``): run by hand, never
#: imported by us; our tools run only ``train.py`` / ``test.py`` / ``analysis_tools/get_flops.py``,
#: which read none.
SCRIPT_FOLDERS = (".mim",)


def _numpy_names_missing(source: str) -> Iterator[str]:
    """Attribute names read from the numpy module (``np.X``, ``numpy.X``, ``from numpy import
    X``) that the installed numpy does not have; submodules are followed (``np.lib.X``)."""
    tree = ast.parse(source)
    aliases = {"numpy"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name == "numpy")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "numpy":
            yield from (a.name for a in node.names if a.name != "*" and not hasattr(np, a.name))
        if not isinstance(node, ast.Attribute):
            continue
        chain, cur = [], node
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if not (isinstance(cur, ast.Name) and cur.id in aliases):
            continue
        obj = np
        for name in reversed(chain):
            if not isinstance(obj, type(np)):
                break  # an attribute of a numpy function or type, not of a module
            if not hasattr(obj, name):
                yield name
                break
            obj = getattr(obj, name)


def _scan(package: str) -> dict[str, set[str]]:
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} is not installed")
    found: dict[str, set[str]] = {}
    for root in spec.submodule_search_locations:
        base = os.path.dirname(root)
        for folder, folders, files in os.walk(root):
            folders[:] = [name for name in folders if name not in SCRIPT_FOLDERS]
            for file in files:
                if not file.endswith(".py"):
                    continue
                path = os.path.join(folder, file)
                with open(path, encoding="utf-8", errors="replace") as f:
                    try:
                        with warnings.catch_warnings():  # their invalid escape sequences
                            warnings.simplefilter("ignore")
                            names = set(_numpy_names_missing(f.read()))
                    except SyntaxError:
                        continue
                if names:
                    module = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                    found.setdefault(module.removesuffix(".__init__"), set()).update(names)
    return found


def test_every_removed_name_the_frameworks_read_is_patched_or_documented():
    if hasattr(np, "NAN"):
        pytest.skip(f"numpy {np.__version__} still has the names numpy 2 removed")
    found: dict[str, set[str]] = {}
    for package in SCANNED:
        found.update(_scan(package))
    found = {
        module: names - {name for mod, name in NOT_NUMPY2 if mod == module}
        for module, names in found.items()
    }
    found = {module: names for module, names in found.items() if names}
    known = {module: set(names) for module, names in compat.NUMPY2_READERS.items()}
    known.update({module: set(names) for module, (names, _) in compat.NUMPY2_UNREACHED.items()})
    assert found == known
    # Every restored name has a meaning in the shim.
    for names in compat.NUMPY2_READERS.values():
        assert set(names) <= set(compat._NUMPY2_REMOVED)


# -------------------------------------------------------------------------- AVA evaluation
LABEL_MAP = "".join(
    f'item {{\n  name: "{name}"\n  id: {i}\n}}\n'
    for i, name in ((1, "walk"), (2, "stand"), (3, "sit"), (4, "dance"))
)
# Two keyframes of one video; ground truth only for actions 1 and 2 (3 and 4 have none).
GROUND_TRUTH = (
    "vid00000001,0902,0.100,0.100,0.400,0.900,1,0\n"
    "vid00000001,0902,0.500,0.100,0.900,0.900,2,1\n"
    "vid00000001,0903,0.100,0.100,0.400,0.900,1,0\n"
)
BOXES = {902: [[0.1, 0.1, 0.4, 0.9], [0.5, 0.1, 0.9, 0.9]], 903: [[0.1, 0.1, 0.4, 0.9]]}
# Scores over index 0 (background) + the 4 actions, per box. Action 1: both true boxes score
# highest, AP 1. Action 2: the wrong box of 902 and the box of 903 outrank the true one, so
# precision at its recall is 1/3: AP 1/3. Actions 3 and 4: detections, no ground truth.
SCORES = {
    902: [[0.0, 0.9, 0.6, 0.5, 0.5], [0.0, 0.1, 0.3, 0.5, 0.5]],
    903: [[0.0, 0.8, 0.7, 0.5, 0.5]],
}
EXPECTED_MAP = (1.0 + 1.0 / 3.0) / 2


def _ava_split(root: Path) -> dict[str, str]:
    files = {
        "ann_file": root / "ava_val_v2.2.csv",
        "exclude_file": root / "ava_val_excluded_timestamps_v2.2.csv",
        "label_file": root / "ava_action_list_v2.2_for_activitynet_2019.pbtxt",
    }
    files["ann_file"].write_text(GROUND_TRUTH)
    files["exclude_file"].write_text("")
    files["label_file"].write_text(LABEL_MAP)
    return {key: str(path) for key, path in files.items()}


AVA_EVAL = """
import contextlib, io, json, sys
import torch
from mmaction.evaluation import AVAMetric

files, boxes, scores = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
metric = AVAMetric(**files, num_classes=5)
metric.process([], [
    dict(video_id="vid00000001", timestamp=int(second), pred_instances=dict(
        bboxes=torch.tensor(boxes[second]), scores=torch.tensor(scores[second])))
    for second in boxes])
with contextlib.redirect_stdout(io.StringIO()) as printed:
    result = metric.compute_metrics(metric.results)
print(json.dumps({key: float(value) for key, value in result.items()}))
print(printed.getvalue(), file=sys.stderr)
"""


def _evaluate(tmp_path: Path, prelude: str) -> subprocess.CompletedProcess:
    import json

    files = _ava_split(tmp_path)
    # A fresh interpreter: which modules are patched is process-wide.
    return subprocess.run(
        [sys.executable, "-c", prelude + AVA_EVAL, json.dumps(files),
         json.dumps({str(k): v for k, v in BOXES.items()}),
         json.dumps({str(k): v for k, v in SCORES.items()})],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_ava_metric_on_a_split_where_classes_lack_ground_truth(tmp_path):
    pytest.importorskip("mmaction")
    import json

    out = _evaluate(tmp_path, "import hiera_backbones.mmaction\n")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Float64 means of exact fractions: only the last bits can differ.
    assert result["overall"] == pytest.approx(EXPECTED_MAP, rel=1e-12)
    assert result["person_movement"] == pytest.approx(EXPECTED_MAP, rel=1e-12)  # ids <= 14
    assert "Action: sit: AP: nan" in out.stderr and "Action: dance: AP: nan" in out.stderr
    assert "Action: walk: AP: 1.0000" in out.stderr
    assert "Action: stand: AP: 0.3333" in out.stderr


def test_ava_metric_without_the_adapter_still_fails_on_numpy2(tmp_path):
    """The host bug the patch works around (mmaction2 1.2.0 + numpy 2): if this starts passing,
    MMAction2 fixed it and the entry in NUMPY2_READERS can go."""
    pytest.importorskip("mmaction")
    if hasattr(np, "NAN"):
        pytest.skip("numpy 1.x has np.NAN")
    out = _evaluate(tmp_path, "")
    assert out.returncode != 0
    assert "np.NAN" in out.stderr and "AttributeError" in out.stderr


# --------------------------------------------------------------------------- the patch
def test_the_patch_is_scoped_and_idempotent():
    pytest.importorskip("mmaction")
    from mmaction.evaluation.functional.ava_evaluation import metrics

    import hiera_backbones.mmaction  # noqa: F401  applies the patch

    assert compat.patch_numpy2_removed_names() == []  # already applied
    assert metrics.np is not np and not hasattr(np, "NAN")  # numpy itself untouched
    assert np.isnan(metrics.np.NAN) and metrics.np.zeros is np.zeros
    assert metrics.np.ndarray is np.ndarray and metrics.np.__version__ == np.__version__
    assert "NAN" in dir(metrics.np) and "zeros" in dir(metrics.np)
    assert metrics.compute_average_precision(None, None) != metrics.compute_average_precision(
        None, None)  # NaN
    # Modules outside the table keep the real numpy.
    from mmaction.evaluation.functional import ava_utils

    assert ava_utils.np is np


def test_a_module_gets_only_the_names_it_reads(monkeypatch):
    import types

    module = types.ModuleType("fake_framework.metrics")
    module.np = np
    module.numpy = np
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(compat.NUMPY2_READERS, module.__name__, ("NAN", "trapz", "in1d"))
    assert compat.patch_numpy2_removed_names(("fake_framework",)) == [module.__name__]
    assert module.np is module.numpy and module.np is not np  # both aliases, one view
    if hasattr(np, "in1d"):
        return  # numpy < 2.4: nothing else to restore
    assert not hasattr(module.np, "Inf")  # not read by this module
    y, x = np.array([1.0, 4.0, 9.0]), np.array([0.0, 1.0, 3.0])
    assert module.np.trapz(y, x) == pytest.approx(2.5 + 13.0)
    a = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(module.np.in1d(a, [2, 3]), [False, True, True, False])
    np.testing.assert_array_equal(module.np.in1d(a, [2, 3], invert=True),
                                  [True, False, False, True])
    assert compat.patch_numpy2_removed_names(("fake_framework",)) == []


def test_a_module_that_does_not_import_is_skipped(monkeypatch):
    monkeypatch.setitem(compat.NUMPY2_READERS, "fake_missing_framework.metrics", ("NAN",))

    def no_module(name):
        raise ImportError(name)

    assert compat.patch_numpy2_removed_names(("fake_missing_framework",), no_module) == []
