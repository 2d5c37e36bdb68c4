"""Each load reads its checkpoint file once: one deserialization (``torch.load`` /
safetensors) per load through every path a user takes (OpenMMLab ``init_cfg``, the MMAction2
head, detectron2's checkpointer and ``hiera_backbones://`` paths, the converter), and the file is
hashed only where something is written from it (a converted file records the source's hash).
Counted by wrapping ``torch.load`` and the hash function, so a second read anywhere fails."""

from __future__ import annotations

import collections
import os

import pytest
import torch
from checkpoint_files import save_official, save_official_mae

import hiera_backbones.checkpoints.io as ckpt_io
from hiera_backbones import build_backbone
from hiera_backbones.checkpoints import convert_checkpoint, load_pretrained


class Reads:
    """``torch.load`` calls and hashes per file (absolute paths)."""

    def __init__(self, monkeypatch):
        self.loads: collections.Counter = collections.Counter()
        self.hashes: collections.Counter = collections.Counter()
        real_load, real_hash = torch.load, ckpt_io.sha256_file

        def load(f, *args, **kwargs):
            self.loads[os.path.abspath(f) if isinstance(f, (str, os.PathLike)) else f] += 1
            return real_load(f, *args, **kwargs)

        def sha256_file(path, *args, **kwargs):
            self.hashes[os.path.abspath(path)] += 1
            return real_hash(path, *args, **kwargs)

        monkeypatch.setattr(torch, "load", load)
        monkeypatch.setattr(ckpt_io, "sha256_file", sha256_file)

    def of(self, path) -> tuple[int, int]:
        path = os.path.abspath(path)
        return self.loads[path], self.hashes[path]


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """A fine-tuned official Hiera-T file (``{"model_state"}``, classifier included)."""
    from hiera import hiera_tiny_224

    torch.manual_seed(0)
    return save_official(tmp_path_factory.mktemp("read_once") / "hiera_tiny_224.pth",
                         hiera_tiny_224(pretrained=False))


@pytest.fixture(scope="module")
def mae_file(tmp_path_factory):
    """An official MAE Hiera-T file (decoder and fusion heads included)."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("read_once_mae")
    return save_official_mae(folder / "mae_hiera_tiny_224.pth", "hiera_tiny_224")


def test_openmmlab_init_cfg_reads_once_and_hashes_never(mae_file, tmp_path, monkeypatch):
    backbone = build_backbone("hiera_tiny_224", input_size=(64, 64))
    reads = Reads(monkeypatch)
    message = load_pretrained(backbone, str(mae_file))  # a backbone file, converted
    assert "converted on the fly" in message
    assert reads.of(mae_file) == (1, 0)

    # A trained model's checkpoint (mmengine layout): its backbone.* loads as it is.
    trained = tmp_path / "trained.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                "meta": {"epoch": 3}}, trained)
    other = build_backbone("hiera_tiny_224", input_size=(64, 64))
    assert "loaded the 'backbone.' weights" in load_pretrained(other, str(trained))
    assert reads.of(trained) == (1, 0)
    for name, tensor in other.state_dict().items():
        assert torch.equal(tensor, backbone.state_dict()[name]), name


def test_converter_reads_once_and_hashes_once(official_file, tmp_path, monkeypatch):
    reads = Reads(monkeypatch)
    meta = convert_checkpoint(str(official_file), str(tmp_path / "out.pth"), to="mmdet")
    assert reads.of(official_file) == (1, 1)
    assert meta["source_sha256"] == ckpt_io.sha256_file(str(official_file))


def test_mmaction_head_reads_once(official_file, monkeypatch):
    pytest.importorskip("mmaction")
    from hiera_backbones.mmaction import HieraHead

    head = HieraHead(num_classes=1000, in_channels=768)
    reads = Reads(monkeypatch)
    head.load_classifier(str(official_file))
    assert reads.of(official_file) == (1, 0)


def test_detectron2_checkpointer_and_path_handler_read_once(mae_file, offline_cache, monkeypatch):
    pytest.importorskip("detectron2")
    from detectron2.utils.file_io import PathManager

    from hiera_backbones.detectron2 import D2Hiera, HieraCheckpointer

    detector = torch.nn.Module()
    detector.backbone = torch.nn.Module()
    detector.backbone.bottom_up = D2Hiera("hiera_tiny_224", input_size=(64, 64))
    reads = Reads(monkeypatch)
    HieraCheckpointer(detector).load(str(mae_file))  # read by detectron2's path, converted
    assert reads.of(mae_file) == (1, 0)

    # hiera_backbones://: the source once (its hash names the converted file in the cache).
    local = PathManager.get_local_path(f"hiera_backbones://{mae_file}")
    assert reads.of(mae_file) == (2, 1)
    assert reads.of(local) == (0, 0)
