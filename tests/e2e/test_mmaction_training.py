"""MMAction2 training runs: the demo configs (``configs/mmaction/*-mini_*``) trained from scratch
on the synthetic sets of :mod:`hiera_backbones.data.video_data` through mmengine's ``Runner`` with
MMAction2's own datasets, pipelines and metrics (``AccMetric``, ``AVAMetric``), for Hiera and HVT,
checked to learn; resuming, ``tools/mma_train.py`` on the trained checkpoints, and (slow) a
2-process ``torchrun``.

Everything runs on CPU, on one intra-op thread. Each recognition run is a module-scoped fixture
(trained once, the first time a test asks for it), so every test also passes alone.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmaction")
pytest.importorskip("decord")

#: Every test resolves unscoped type names in MMAction2's registries.
pytestmark = pytest.mark.usefixtures("mmaction_scope")

from frameworks import (  # noqa: E402
    AVA_CONFIGS,
    AVA_DEMOS,
    K400_CONFIGS,
    MMACTION_CONFIGS,
    RECOG_DEMOS,
    one_thread,
    save_official_video_files,
)
from mmaction.evaluation import AVAMetric  # noqa: E402
from mmaction.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from tool_scripts import TOOLS, load_tool  # noqa: E402

import hiera_backbones.mmaction  # noqa: E402, F401  registers the models

CONFIGS = str(MMACTION_CONFIGS)
TOOL = str(TOOLS / "mma_train.py")
#: Recognition: 4 balanced classes, 32 validation videos, so chance is 25% and a chance-level
#: classifier reaches 75% with probability < 1e-8 (binomial); measured 100% for both backbones.
MIN_TOP1 = 0.75
#: AVA: the trained model must beat the best of several random scorings (same proposals, same
#: AVAMetric) by this much. Random: ~0.42 mAP (max ~0.49 over 10 seeds); measured 0.83 (HVT),
#: 0.88 (Hiera).
AVA_MARGIN = 0.15


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The models here are tiny: a second intra-op thread gains little, and when the cores are
    shared (another job running) OpenMP's spin-waiting made these tests up to 8x slower
    (measured). One thread keeps the run time predictable; module-scoped, so the training
    fixtures run on it too."""
    with one_thread():
        yield




@pytest.fixture(scope="module")
def official_video_files(tmp_path_factory):
    """Official-format files ({"model_state": ...}) of the video MAE and fine-tuned Hiera-B."""
    return save_official_video_files(tmp_path_factory.mktemp("official"))


# ---------------------------------------------------------------------- end to end
def _rebase(obj, old: str, new: str):
    if isinstance(obj, str):
        return new + obj[len(old):] if obj.startswith(old) else obj
    if isinstance(obj, dict):
        return {k: _rebase(v, old, new) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_rebase(v, old, new) for v in obj)
    return obj


def _demo_cfg(name: str, data_root, work_dir) -> Config:
    """A demo config reading its data from ``data_root`` instead of ``data/...``."""
    cfg = Config.fromfile(os.path.join(CONFIGS, name))
    cfg = Config(_rebase(cfg.to_dict(), cfg.data_root, str(data_root) + "/"),
                 filename=cfg.filename)
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.logger.interval = 50
    return cfg


def _last_scalar(runner: Runner, key: str) -> float:
    return float(runner.message_hub.get_scalar(key).current())


@dataclass
class RecognitionRun:
    """A recognition demo trained from scratch: its config, work dir and runner, and the
    validation top-1 after training."""

    cfg: Config
    work_dir: Path
    runner: Runner
    top1: float


def _train_recognition(backbone: str, data_root, root: Path) -> RecognitionRun:
    # As the test did: MMAction2's default scope, and ``root`` the working directory.
    with DefaultScope.overwrite_default_scope("mmaction"), pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cfg = _demo_cfg(RECOG_DEMOS[backbone], data_root, root / "work")
        start = time.time()
        runner = Runner.from_cfg(cfg)
        runner.train()
        top1 = _last_scalar(runner, "val/acc/top1")
        print(f"{backbone}: val top-1 {top1:.3f} after {time.time() - start:.0f}s")
    return RecognitionRun(cfg, root / "work", runner, top1)


@pytest.fixture(scope="module")
def hiera_recognition(motion_data, tmp_path_factory) -> RecognitionRun:
    return _train_recognition("hiera", motion_data, tmp_path_factory.mktemp("hiera_recognition"))


@pytest.fixture(scope="module")
def hvt_recognition(motion_data, tmp_path_factory) -> RecognitionRun:
    """The HVT run; the resume, tool and checkpoint tests reuse its checkpoints."""
    return _train_recognition("hvt", motion_data, tmp_path_factory.mktemp("hvt_recognition"))


@pytest.mark.parametrize("backbone", ["hiera", "hvt"])
def test_recognition_trains_and_evaluates(backbone, request, tmp_path, monkeypatch):
    run: RecognitionRun = request.getfixturevalue(f"{backbone}_recognition")
    monkeypatch.chdir(tmp_path)
    assert run.top1 >= MIN_TOP1

    # Multi-clip, multi-crop testing (2 clips x 3 crops per video, probabilities averaged).
    views = []
    model = run.runner.model
    hook = model.backbone.register_forward_hook(lambda m, i, o: views.append(i[0].shape[0]))
    try:
        metrics = run.runner.test()
    finally:
        hook.remove()
    assert set(views) == {6}
    assert metrics["acc/top1"] >= MIN_TOP1


def test_resume_and_test_tool(hvt_recognition, tmp_path, monkeypatch):
    """Resume a run (mmengine's checkpoint, torch.load weights_only) and evaluate it with
    ``tools/mma_train.py --test`` in a fresh interpreter."""
    cfg = hvt_recognition.cfg
    monkeypatch.chdir(tmp_path)
    epochs = cfg.train_cfg.max_epochs
    # A copy of the run, so that the shared one stays as trained (mmengine's last_checkpoint
    # holds an absolute path: pointed at the copy).
    work = tmp_path / "work"
    shutil.copytree(hvt_recognition.work_dir, work)
    (work / "last_checkpoint").write_text(str(work / f"epoch_{epochs}.pth"))
    cfg_file = str(tmp_path / "hvt_demo.py")
    cfg.dump(cfg_file)
    tool = load_tool("mma_train")
    assert tool.main([cfg_file, "--work-dir", str(work), "--resume", "--cfg-options",
                      f"train_cfg.max_epochs={epochs + 1}",
                      f"train_cfg.val_begin={epochs + 1}"]) == 0
    log = max((os.path.join(work, d) for d in os.listdir(work)
               if os.path.isdir(os.path.join(work, d))), key=os.path.getmtime)
    text = open(os.path.join(log, os.path.basename(log) + ".log")).read()
    assert f"resumed epoch: {epochs}" in text
    assert os.path.exists(os.path.join(work, f"epoch_{epochs + 1}.pth"))

    out = subprocess.run(
        [sys.executable, TOOL, cfg_file, "--test", os.path.join(work, f"epoch_{epochs}.pth"),
         "--work-dir", str(tmp_path / "test")],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'acc/top1'" in out.stdout


def test_tool_checkpoint_kinds(hvt_recognition, official_video_files):
    """``--test CKPT``: an mmengine checkpoint goes to load_from; backbone weights (official
    files, model:tag names, converter output) to the backbone's and the head's init_cfg."""
    tool = load_tool("mma_train")
    work = hvt_recognition.work_dir
    paths, _, _ = official_video_files
    assert tool._is_mmengine_checkpoint(os.path.join(work, "epoch_15.pth"))
    assert not tool._is_mmengine_checkpoint(paths["ft"])
    assert not tool._is_mmengine_checkpoint("hiera_base_16x224:mae_k400_ft_k400")
    cfg = Config.fromfile(os.path.join(CONFIGS, K400_CONFIGS[0]))
    tool._use_weights_file(cfg, paths["ft"])
    assert cfg.model.backbone.init_cfg.checkpoint == paths["ft"]
    assert cfg.model.cls_head.init_cfg.checkpoint == paths["ft"]
    with pytest.raises(SystemExit, match="detection head"):
        tool._use_weights_file(Config.fromfile(os.path.join(CONFIGS, AVA_CONFIGS[0])),
                               paths["ft"])


def test_backbone_init_from_recognizer_checkpoint(hvt_recognition):
    """AVA starts from a Kinetics run: a recognizer checkpoint initializes a detection backbone
    that adds an output norm (kept at its initialization)."""
    cfg, work = hvt_recognition.cfg, hvt_recognition.work_dir
    ckpt = os.path.join(work, "epoch_15.pth")
    backbone = dict(cfg.model.backbone.to_dict(), out_norm=True,
                    init_cfg=dict(type="Pretrained", checkpoint=ckpt))
    model = MODELS.build(backbone)
    model.init_weights()
    state = torch.load(ckpt, weights_only=False)["state_dict"]  # this run's own file
    torch.testing.assert_close(model.blocks[2].attn.qkv.weight,
                               state["backbone.blocks.2.attn.qkv.weight"])
    torch.testing.assert_close(model.out_norms["2"].weight, torch.ones(64))


def _random_ava_map(root, num_classes: int, seeds: int = 5) -> list[float]:
    """AVAMetric of random scores on the validation proposals the dataset would use."""
    ann = os.path.join(root, "annotations")
    with open(os.path.join(ann, "ava_dense_proposals_val.FAIR.recall_93.9.pkl"), "rb") as f:
        proposals = pickle.load(f)
    results = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        metric = AVAMetric(
            ann_file=os.path.join(ann, "ava_val_v2.2.csv"),
            exclude_file=os.path.join(ann, "ava_val_excluded_timestamps_v2.2.csv"),
            label_file=os.path.join(ann, "ava_action_list_v2.2_for_activitynet_2019.pbtxt"),
            num_classes=num_classes)
        samples = []
        for key, props in proposals.items():
            video, second = key.split(",")
            props = props[props[:, 4] >= 0.9]
            scores = rng.random((len(props), num_classes)).astype(np.float32)
            samples.append(dict(video_id=video, timestamp=int(second), pred_instances=dict(
                bboxes=torch.from_numpy(props[:, :4]), scores=torch.from_numpy(scores))))
        metric.process([], samples)
        with contextlib.redirect_stdout(io.StringIO()):
            results.append(float(metric.compute_metrics(metric.results)["overall"]))
    return results


@pytest.mark.parametrize("backbone", ["hiera", "hvt"])
def test_ava_detection_trains_and_evaluates(backbone, ava_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # AVAMetric writes a temporary csv into the working directory
    cfg = _demo_cfg(AVA_DEMOS[backbone], ava_data, tmp_path / "work")
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    mean_ap = _last_scalar(runner, "val/mAP/overall")
    random = _random_ava_map(ava_data, cfg.model.roi_head.bbox_head.num_classes)
    print(f"{backbone}: AVA mAP {mean_ap:.3f} (random {np.mean(random):.3f}, max "
          f"{max(random):.3f}) after {time.time() - start:.0f}s")
    assert not math.isnan(mean_ap)
    assert mean_ap >= max(random) + AVA_MARGIN


@pytest.mark.slow
def test_distributed_launcher_on_cpu(motion_data, tmp_path):
    """``torchrun ... --launcher pytorch``: two CPU processes (gloo), one epoch."""
    cfg = _demo_cfg(RECOG_DEMOS["hvt"], motion_data, tmp_path / "work")
    cfg_file = str(tmp_path / "cfg.py")
    cfg.dump(cfg_file)
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(port), TOOL, cfg_file, "--launcher", "pytorch",
         "--cfg-options", "train_cfg.max_epochs=1", "train_cfg.val_begin=1"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Distributed training: True" in out.stdout + out.stderr
    assert os.path.exists(tmp_path / "work" / "epoch_1.pth")
