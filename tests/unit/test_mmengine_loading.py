"""mmengine's own checkpoints load on torch >= 2.6 through our loader of local files, with the
classes they hold allowed for that read only: torch's process-wide allowlist stays as it was,
so no other ``torch.load`` in the process accepts more after importing an adapter."""

from __future__ import annotations

import collections
import fractions
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from checkpoint_files import ReachesPastHistoryBuffer, RunsCode

pytest.importorskip("mmengine")
from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.runner.checkpoint import CheckpointLoader  # noqa: E402

from hiera_backbones.checkpoints import CheckpointError  # noqa: E402
from hiera_backbones.openmmlab.loading import (  # noqa: E402
    allow_mmengine_checkpoints,
    load_mmengine_local,
)


def _mmengine_like_checkpoint(path: str) -> None:
    """What mmengine's CheckpointHook saves besides tensors: a message hub with HistoryBuffers
    (numpy arrays, getattr(HistoryBuffer, 'mean')-style method references), scheduler
    milestones as a Counter, numpy scalars."""
    buffer = HistoryBuffer()
    for value in (1.0, 0.5, 0.25):
        buffer.update(value)
    torch.save({
        "meta": {"epoch": 2, "iter": 300, "seed": np.int64(7)},
        "state_dict": {"backbone.w": torch.ones(2, 2)},
        "message_hub": {"log_scalars": {"train/loss": buffer}},
        "param_schedulers": [{"milestones": collections.Counter({8: 1, 11: 1})}],
    }, path)


def test_importing_the_adapters_leaves_torchs_allowlist_alone():
    """Nothing of mmengine, numpy or ours joins torch's process-wide allowlist."""
    code = (
        "import torch\n"
        "before = list(torch.serialization.get_safe_globals())\n"
        "import hiera_backbones.mmdet, hiera_backbones.mmaction\n"
        # torch registers its own (DTensor, nested tensors) when those modules are imported
        "added = [g for g in torch.serialization.get_safe_globals() if g not in before]\n"
        "foreign = [g for g in added if not str(getattr(g, '__module__', g)).startswith('torch')]\n"
        "assert not foreign, foreign\n"
        "from mmengine.runner.checkpoint import CheckpointLoader\n"
        "from hiera_backbones.openmmlab.loading import load_mmengine_local\n"
        "assert CheckpointLoader._get_checkpoint_loader('/x/epoch_1.pth') is load_mmengine_local\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_mmengines_loader_reads_its_own_checkpoints_and_nothing_more(tmp_path):
    allow_mmengine_checkpoints()
    allow_mmengine_checkpoints()  # idempotent
    path = str(tmp_path / "iter_300.pth")
    _mmengine_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):  # plain torch.load: refused, as before
        torch.load(path)

    loaded = CheckpointLoader.load_checkpoint(path, map_location="cpu")
    buffer = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert buffer.mean() == pytest.approx(1.75 / 3) and buffer.current() == 0.25
    assert loaded["param_schedulers"][0]["milestones"] == collections.Counter({8: 1, 11: 1})
    assert loaded["meta"]["seed"] == 7 and torch.equal(loaded["state_dict"]["backbone.w"],
                                                       torch.ones(2, 2))
    with pytest.raises(FileNotFoundError, match="can not be found"):
        load_mmengine_local(str(tmp_path / "missing.pth"))

    for obj in (RunsCode(), ReachesPastHistoryBuffer()):
        evil = str(tmp_path / "evil.pth")
        torch.save({"state_dict": {}, "x": obj}, evil)
        with pytest.raises((CheckpointError, pickle.UnpicklingError)):
            CheckpointLoader.load_checkpoint(evil, map_location="cpu")
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") is None


def test_torchs_explicit_opt_out_still_applies(tmp_path, monkeypatch):
    """``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` made mmengine's own loader unpickle in full; it
    still does (the user's explicit choice, with a warning), and only then."""
    path = str(tmp_path / "old.pth")
    torch.save({"state_dict": {}, "meta": {"classes": collections.OrderedDict(a=1)},
                "lr": fractions.Fraction(1, 3)}, path)  # a class no allow-list has
    with pytest.raises(CheckpointError, match="fractions.Fraction"):
        load_mmengine_local(path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.warns(UserWarning, match="weights_only=False"):
        loaded = load_mmengine_local(path)
    assert loaded["lr"] == fractions.Fraction(1, 3)


def test_init_cfg_reads_a_trained_models_checkpoint(tmp_path):
    """``init_cfg=dict(type='Pretrained', checkpoint=<a file mmengine saved>)`` (e.g. AVA from a
    Kinetics run): our loader reads it with mmengine's classes allowed for that read."""
    from hiera_backbones.mmdet import Hiera

    trained = Hiera(dict(base="hiera_tiny_224", embed_dim=16, num_heads=1), input_size=(64, 64))
    path = str(tmp_path / "epoch_3.pth")
    _mmengine_like_checkpoint(path)
    content = torch.load(path, weights_only=False)
    content["state_dict"] = {f"backbone.{k}": v for k, v in trained.state_dict().items()}
    torch.save(content, path)
    with pytest.raises(pickle.UnpicklingError):  # HistoryBuffer inside: plain torch.load refuses
        torch.load(path)

    fresh = Hiera(dict(base="hiera_tiny_224", embed_dim=16, num_heads=1), input_size=(64, 64),
                  init_cfg=dict(type="Pretrained", checkpoint=path))
    fresh.init_weights()
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, trained.state_dict()[name]), name
