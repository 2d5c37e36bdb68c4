"""What a framework's unit tests (``tests/unit/test_<framework>.py``) and its training runs
(``tests/e2e/test_<framework>_training.py``) share: where the configs are, the MMAction2 config
lists and official video files, and running on one intra-op thread (their data-set fixtures
are in ``conftest.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from tool_scripts import ROOT

D2_CONFIGS = ROOT / "configs" / "detectron2"
MMDET_CONFIGS = ROOT / "configs" / "mmdet"
MMACTION_CONFIGS = ROOT / "configs" / "mmaction"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread while the block runs. On a small shared CPU, OpenMP threads spinning
    against each other and other processes make the frameworks' many small ops many times slower
    and their time erratic (measured: a detectron2 demo step 0.5 s vs 3-11 s; MMAction2 tests up
    to 8x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- MMAction2
RECOG_DEMOS = {
    "hiera": "hiera-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py",
    "hvt": "hvt-mini_scratch_1xb8-8x2x1-15e_motion-shapes-rgb.py",
}
AVA_DEMOS = {
    "hiera": "hiera-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py",
    "hvt": "hvt-mini_scratch_1xb4-8x2x1-5e_ava-shapes-rgb.py",
}
K400_CONFIGS = [
    "hiera-base-16x224_mae-k400-pre_32xb8-16x4x1-150e_kinetics400-rgb.py",
    "hiera-base-plus-16x224_mae-k400-pre_32xb8-16x4x1-150e_kinetics400-rgb.py",
    "hiera-large-16x224_mae-k400-pre_64xb4-16x4x1-100e_kinetics400-rgb.py",
    "hiera-huge-16x224_mae-k400-pre_64xb4-16x4x1-100e_kinetics400-rgb.py",
    "hvt-s-4-16x224_in1k-pre_32xb8-16x4x1-150e_kinetics400-rgb.py",
    "hvt-s-1-16x224_in1k-pre_32xb8-16x4x1-150e_kinetics400-rgb.py",
]
AVA_CONFIGS = [
    "hiera-large-16x224_mae-k400-ft-pre_16xb8-16x4x1-30e-sgd_ava22-rgb.py",
    "hiera-huge-16x224_mae-k400-ft-pre_16xb8-16x4x1-30e-sgd_ava22-rgb.py",
    "hvt-s-1-16x224_k400-ft-pre_16xb8-16x4x1-30e-sgd_ava22-rgb.py",
]


def save_official_video_files(root: Path) -> tuple[dict[str, str], dict, dict]:
    """Official-format files (``{"model_state": ...}``) of the video MAE and the fine-tuned
    Hiera-B (400 classes) in ``root``: their paths (``"mae"``, ``"ft"``) and state dicts."""
    from hiera import hiera_base_16x224
    from hiera.hiera_mae import mae_hiera_base_16x224

    mae = mae_hiera_base_16x224(pretrained=False)
    ft = hiera_base_16x224(pretrained=False)  # 400 classes
    paths = {
        "mae": str(root / "mae_hiera_base_16x224.pth"),
        "ft": str(root / "hiera_base_16x224.pth"),
    }
    torch.save({"model_state": mae.state_dict()}, paths["mae"])
    torch.save({"model_state": ft.state_dict()}, paths["ft"])
    return paths, mae.state_dict(), ft.state_dict()
