"""Shared by ``tests/unit`` and ``tests/e2e``: fixtures (seeding; MMAction2 data sets and scope)
and the environment. Helper modules beside this file (``helpers``,
``tool_scripts``, ``checkpoint_files``, ``backbone_cases``, ``frameworks``) are importable from
both folders: setup.cfg puts ``tests`` on ``sys.path`` (``pythonpath``)."""

import os
import sys
import urllib.error
from collections.abc import Iterator
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


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    """An empty download cache (``HIERA_BACKBONES_CACHE``) and no network: a download attempt
    fails as it would offline. Put files where a download would land to serve tags."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HIERA_BACKBONES_CACHE", str(cache))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    os.makedirs(cache)
    return cache


def _forget_visualizers() -> None:
    visualization = sys.modules.get("mmengine.visualization")
    if visualization is not None:
        pending = [visualization.Visualizer]
        while pending:
            cls = pending.pop()
            cls._instance_dict.clear()
            pending.extend(cls.__subclasses__())


@pytest.fixture(autouse=True)
def _no_leftover_visualizers():
    """mmengine keeps visualizers by name for the whole process (``ManagerMixin``), and
    MMDetection's default runtime names its ``'visualizer'``: a Runner built in one test would
    get the visualizer of an earlier test, which writes into that test's temporary folder, gone
    once the test passed (``tmp_path_retention_policy``). None survives a test (its teardown)
    or precedes one (module-scoped fixtures set up before it ran after the last teardown);
    runners built earlier keep theirs."""
    _forget_visualizers()
    yield
    _forget_visualizers()


# ----------------------------------------------------------------- MMAction2 (unit and e2e)


@pytest.fixture()
def mmaction_scope() -> Iterator[None]:
    """Unscoped type names (data preprocessors, losses) resolve in MMAction2's registries."""
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmaction"):
        yield


@pytest.fixture(scope="module")
def motion_data(tmp_path_factory) -> Path:
    """The seeded moving-shapes recognition set (64 train / 32 val clips)."""
    from hiera_backbones.data.video_data import make_motion_videos

    root = tmp_path_factory.mktemp("video") / "motion_shapes"
    make_motion_videos(str(root), num_train=64, num_val=32, seed=0)
    return root


@pytest.fixture(scope="module")
def ava_data(tmp_path_factory) -> Path:
    """The seeded AVA-format set (64 train / 24 val videos of 5 s)."""
    from hiera_backbones.data.video_data import make_ava_shapes

    root = tmp_path_factory.mktemp("video") / "ava_shapes"
    make_ava_shapes(str(root), num_train_videos=64, num_val_videos=24, seconds=5, seed=0)
    return root
