"""MMAction2's own ``tools/train.py`` and ``tools/test.py`` (shipped in the wheel under
``mmaction/.mim/tools``) on the shipped Hiera-L AVA v2.2 config, as a user runs them: the config
file unchanged, shortened only by ``--cfg-options`` (one epoch, batch size, no loader workers),
the official weights tag served from the download cache, and the data in MMAction2's documented
AVA layout under ``data/ava`` of the working directory: rawframes ``img_%05d.jpg`` at 30 fps from
second 900, the v2.2 CSVs, the pbtxt label map, the proposals pickle.

The label map lists the 80 AVA action ids while the split annotates only the few shapes actions,
so most evaluated classes have no ground truth in it: MMAction2 1.2's AVA evaluation then returns
``np.NAN`` for them, a name numpy 2 removed, unless the adapter's
:func:`hiera_backbones.compat.patch_numpy2_removed_names` is in place (``custom_imports``).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmaction")
pytest.importorskip("mmdet")

import mmaction  # noqa: E402
from checkpoint_files import in_download_cache  # noqa: E402
from frameworks import AVA_CONFIGS, MMACTION_CONFIGS  # noqa: E402

from hiera_backbones.data.video_data import AVA_ACTIONS, make_ava_shapes  # noqa: E402

MMACTION_TOOLS = Path(mmaction.__file__).resolve().parent / ".mim" / "tools"
HIERA_L_AVA = MMACTION_CONFIGS / AVA_CONFIGS[0]
assert "hiera-large" in HIERA_L_AVA.name
TAG = "hiera_large_16x224:mae_k400_ft_k400"  # the config's backbone init_cfg
NUM_AVA_ACTIONS = 80
MAP_LINE = re.compile(r"mAP/overall: (\S+)")


def _ava_label_map(path: Path) -> list[int]:
    """The 80 AVA action ids: the shapes actions under their names, the rest as in a custom class
    list whose actions the split never shows."""
    names = dict(AVA_ACTIONS)
    with open(path, "w") as f:
        for action_id in range(1, NUM_AVA_ACTIONS + 1):
            name = names.get(action_id, f"action {action_id}")
            f.write(f'item {{\n  name: "{name}"\n  id: {action_id}\n}}\n')
    return list(range(1, NUM_AVA_ACTIONS + 1))


@pytest.fixture(scope="module")
def ava_workdir(tmp_path_factory) -> Path:
    """A working directory with ``data/ava`` in the AVA layout (one train and one validation
    video, 5 s at 30 fps from second 900: one keyframe each after the excluded one) and a download
    cache holding a random Hiera-L in the official file format under the config's tag."""
    from hiera import hiera_large_16x224

    work = tmp_path_factory.mktemp("ava_own_tools")
    paths = make_ava_shapes(str(work / "data" / "ava"), num_train_videos=1, num_val_videos=1,
                            size=(128, 160), seconds=5, fps=30, timestamp_start=900, seed=3)
    label_ids = _ava_label_map(Path(paths["label_map"]))
    with open(paths["ann_val"]) as f:
        annotated = {int(row[6]) for row in csv.reader(f)}
    assert annotated and not set(label_ids) <= annotated  # classes without ground truth
    cache = work / "cache"
    cache.mkdir()
    torch.manual_seed(0)
    official = hiera_large_16x224(pretrained=False)
    torch.save({"model_state": official.state_dict()}, in_download_cache(cache, TAG))
    return work


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HIERA_BACKBONES_CACHE": str(cwd / "cache")}
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=str(cwd),
                         env=env, timeout=1500)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    return text


SHORTEN = [
    "train_cfg.max_epochs=1",
    "train_dataloader.batch_size=1",
    "train_dataloader.num_workers=0",
    "train_dataloader.persistent_workers=False",
    "val_dataloader.num_workers=0",
    "val_dataloader.persistent_workers=False",
    "test_dataloader.num_workers=0",
    "test_dataloader.persistent_workers=False",
    "default_hooks.logger.interval=1",
]


def test_mmaction_own_train_and_test_tools_on_hiera_large_ava(ava_workdir):
    work = ava_workdir
    text = _run([str(MMACTION_TOOLS / "train.py"), str(HIERA_L_AVA), "--work-dir", "work",
                 "--cfg-options", *SHORTEN], work)
    # The config's tag was served from the download cache and converted on the fly.
    assert f"loaded hiera_large_16x224 weights from {in_download_cache(work / 'cache', TAG)}" \
        in text, text[-4000:]
    train_maps = [float(v) for v in MAP_LINE.findall(text)]
    assert len(train_maps) == 1, text[-4000:]  # validated once, at the last (only) epoch
    checkpoint = work / "work" / "epoch_1.pth"
    assert checkpoint.is_file()

    text = _run([str(MMACTION_TOOLS / "test.py"), str(HIERA_L_AVA), str(checkpoint),
                 "--work-dir", "test", "--cfg-options", *SHORTEN], work)
    test_maps = [float(v) for v in MAP_LINE.findall(text)]
    assert len(test_maps) == 1, text[-4000:]
    # A mean over the classes with ground truth (NaN for the others, left out), so a number in
    # [0, 1]; the test run evaluates the weights validation evaluated, on the same split.
    for value in train_maps + test_maps:
        assert 0.0 <= value <= 1.0
    assert test_maps[0] == pytest.approx(train_maps[0], abs=1e-4)
    assert "Per-class results" in text and "AP: nan" in text
