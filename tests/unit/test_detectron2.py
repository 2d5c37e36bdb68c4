"""detectron2 integration without training: backbones, the yacs registry, layer decay, the
configs' recipe, checkpoints (detectron2's loader and ours, official files converted on the fly).

Training runs (every config one step, the demo detector learning, resume, two processes) are
``tests/e2e/test_detectron2_training.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from functools import partial

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, get_cfg, instantiate  # noqa: E402
from detectron2.modeling import build_backbone as d2_build_backbone  # noqa: E402
from detectron2.solver.build import get_default_optimizer_params  # noqa: E402
from frameworks import D2_CONFIGS, one_thread  # noqa: E402

from hiera_backbones import build_backbone  # noqa: E402
from hiera_backbones.checkpoints import (  # noqa: E402
    OFFICIAL_CHECKPOINTS,
    CheckpointError,
    convert_checkpoint,
)
from hiera_backbones.detectron2 import (  # noqa: E402
    D2HVT,
    D2Hiera,
    HieraCheckpointer,
    add_hiera_config,
    get_hiera_lr_decay_rate,
)

CONFIGS = str(D2_CONFIGS)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


# ----------------------------------------------------------------------------- backbones
def test_hiera_backbone_is_our_model_with_detectron2_shapes():
    bb = D2Hiera("hiera_tiny_224", input_size=(64, 96), out_features=["res3", "res4", "res5"])
    ref = build_backbone("hiera_tiny_224", input_size=(64, 96), out_indices=(1, 2, 3),
                         out_norm=True)
    # Same parameters under the same names: converted files need no renaming.
    assert list(bb.state_dict()) == list(ref.state_dict())
    assert bb.size_divisibility == 32
    assert bb.padding_constraints == {"size_divisibility": 32}
    shapes = bb.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res3": (192, 8), "res4": (384, 16), "res5": (768, 32)}
    ref.load_state_dict(bb.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out, expected = bb.eval()(x), ref.eval()(x)
    assert list(out) == ["res3", "res4", "res5"]
    assert out["res4"].shape == (2, 384, 4, 6)
    for got, want in zip(out.values(), expected):
        assert torch.equal(got, want)
    assert D2Hiera("hiera_tiny_224", input_size=(64, 64), square_pad=64).padding_constraints == {
        "size_divisibility": 32, "square_size": 64}


def test_hvt_backbone_dense_mode_strides():
    bb = D2HVT("hvt_s_4", input_size=(128, 128), depth=4, pool_block_width=1)
    assert bb.pooling == "2d" and bb.patch_size == 4
    assert {k: v.stride for k, v in bb.output_shape().items()} == {
        "res2": 4, "res3": 8, "res4": 16, "res5": 32, "res6": 64}
    assert bb.size_divisibility == 64
    out = bb(torch.randn(1, 3, 128, 192))
    assert out["res2"].shape == (1, 384, 32, 48) and out["res6"].shape == (1, 384, 2, 3)


@pytest.mark.parametrize("make, match", [
    (lambda: D2Hiera("hiera_base_16x224"), "use an image model"),
    (lambda: D2Hiera("hiera_tiny_224", out_features=["res6"]), r"not a non-empty subset"),
    (lambda: D2Hiera("hiera_tiny_224", out_features=["res4", "res3"]), "finest first"),
    (lambda: D2Hiera("hiera_tiny_224", input_size=(64, 64), square_pad=48), "multiple of 32"),
    (lambda: D2Hiera("hiera_tiny_224", input_size=(100, 64)), "multiple of 32"),
    (lambda: D2HVT("hvt_s_4", pooling="1d"), "dense image mode"),
    (lambda: D2HVT("hvt_xl"), "use one of"),
])
def test_bad_backbone_arguments_raise_one_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_yacs_registry_builds_fpn_backbones():
    cfg = add_hiera_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_hiera_fpn_backbone"
    cfg.MODEL.HIERA.ARCH = "hiera_tiny_224"
    cfg.MODEL.HIERA.INPUT_SIZE = [64, 64]
    cfg.MODEL.HIERA.SQUARE_PAD = 64
    cfg.MODEL.FPN.NORM = "LN"
    fpn = d2_build_backbone(cfg)
    assert isinstance(fpn.bottom_up, D2Hiera) and fpn.padding_constraints == {"square_size": 64}
    assert list(fpn(torch.randn(1, 3, 64, 64))) == ["p2", "p3", "p4", "p5", "p6"]

    cfg.MODEL.BACKBONE.NAME = "D2Hiera"
    assert isinstance(d2_build_backbone(cfg), D2Hiera)

    cfg.MODEL.BACKBONE.NAME = "build_hvt_fpn_backbone"
    cfg.MODEL.HVT.INPUT_SIZE = [64, 64]
    fpn = d2_build_backbone(cfg)
    assert fpn.top_block is None  # HVT-S-4's fifth stage is P6
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def test_layer_decay_follows_layer_ids_and_works_as_lr_factor_func():
    bb = D2Hiera("hiera_tiny_224", input_size=(64, 64), stages=(1, 1, 1, 1))
    n = bb.num_layers
    f = partial(get_hiera_lr_decay_rate, num_layers=n, lr_decay_rate=0.5)
    # The package's one rule (hiera_backbones.layer_decay, the official Hiera training code's).
    for name, _ in bb.named_parameters():
        expected = n if name.startswith("out_norms.") else bb.get_layer_id(name)
        assert f("backbone.bottom_up." + name) == 0.5 ** (n - expected), name
    assert f("backbone.bottom_up.blocks.3.mlp.fc1.weight") == 1.0  # the last block
    assert f("roi_heads.box_predictor.cls_score.weight") == 1.0
    assert f("module.backbone.bottom_up.pos_embed") == 0.5**n
    with pytest.raises(ValueError, match="beyond num_layers"):
        f("backbone.bottom_up.blocks.9.mlp.fc1.weight")

    detector = torch.nn.Module()
    detector.backbone = torch.nn.Module()
    detector.backbone.bottom_up = bb
    groups = get_default_optimizer_params(detector, base_lr=1.0, lr_factor_func=f)
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lrs[id(bb.blocks[n - 1].mlp.fc1.weight)] == 1.0
    assert lrs[id(bb.blocks[0].mlp.fc1.weight)] == 0.5 ** (n - 1)
    assert lrs[id(bb.patch_embed.proj.weight)] == 0.5**n


# ----------------------------------------------------------------------------- configs
def test_configs_follow_the_paper_recipe():
    recipe = {  # arch, lr, drop path
        "mask_rcnn_hiera_tiny_100ep.py": ("hiera_tiny_224", 3.5e-5, 0.1),
        "mask_rcnn_hiera_small_100ep.py": ("hiera_small_224", 3.5e-5, 0.1),
        "mask_rcnn_hiera_base_100ep.py": ("hiera_base_224", 3.5e-5, 0.2),
        "mask_rcnn_hiera_base_plus_100ep.py": ("hiera_base_plus_224", 3.5e-5, 0.2),
        "mask_rcnn_hiera_large_100ep.py": ("hiera_large_224", 3e-5, 0.4),
        "mask_rcnn_hvt_s_4_dense_100ep.py": ("hvt_s_4", 1e-4, 0.1),
    }
    for name, (arch, lr, dp) in recipe.items():
        cfg = LazyConfig.load(os.path.join(CONFIGS, name))
        bottom_up = cfg.model.backbone.bottom_up
        assert (bottom_up.arch, cfg.optimizer.lr, bottom_up.drop_path_rate) == (arch, lr, dp)
        scheme, tag = cfg.train.init_checkpoint.split("://")
        assert scheme == "hiera_backbones" and tag in OFFICIAL_CHECKPOINTS
        assert cfg.optimizer.weight_decay == 0.1 and list(cfg.optimizer.betas) == [0.9, 0.999]
        assert cfg.train.max_iter * cfg.dataloader.train.total_batch_size / 118000 == (
            pytest.approx(100, abs=0.01))
        assert cfg.dataloader.image_size == cfg.model.backbone.square_pad == 1024
        assert cfg.model.backbone.norm == "LN" and cfg.model.backbone.bottom_up.out_norm
        assert cfg.model.proposal_generator.head.conv_dims == [-1, -1]
        assert cfg.model.roi_heads.box_head.conv_dims == [256] * 4
        assert cfg.model.roi_heads.box_head.conv_norm == cfg.model.roi_heads.mask_head.conv_norm
        assert cfg.model.roi_heads.mask_head.conv_norm == "LN"
        scale = cfg.dataloader.train.mapper.augmentations[1]
        assert (scale.min_scale, scale.max_scale) == (0.1, 2.0)


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def mae_file(tmp_path_factory):
    from hiera.hiera_mae import mae_hiera_tiny_224

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mae") / "mae_hiera_tiny_224.pth"
    torch.save({"model_state": mae_hiera_tiny_224(pretrained=False).state_dict()}, path)
    return path


def _tiny_detector(size=128):
    cfg = LazyConfig.load(os.path.join(CONFIGS, "mask_rcnn_hiera_tiny_100ep.py"))
    cfg.dataloader.image_size = size
    return instantiate(cfg.model)


def _missing_backbone_keys(incompatible) -> list[str]:
    return [k for k in incompatible.missing_keys
            if k.startswith("backbone.bottom_up.") and ".out_norms." not in k]


@contextlib.contextmanager
def _captured(log: logging.Logger):
    """Messages of ``log`` at INFO and above (detectron2's logger setup may stop propagation,
    so pytest's caplog would not see them)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


class _Recording:
    """Keeps the incompatible keys detectron2 reports when loading."""

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def test_converted_mae_checkpoint_loads_with_no_missing_backbone_keys(mae_file, tmp_path):
    dst = tmp_path / "mae_d2.pth"
    convert_checkpoint(str(mae_file), str(dst), to="detectron2", input_size=(128, 128))
    saved = torch.load(dst, weights_only=True)["model"]

    for cls in (DetectionCheckpointer, HieraCheckpointer):  # detectron2's own loader, and ours
        model = _tiny_detector(128)
        checkpointer = type("Recording", (_Recording, cls), {})(model)
        checkpointer.load(str(dst))
        assert _missing_backbone_keys(checkpointer.incompatible) == []
        assert checkpointer.incompatible.unexpected_keys == []
        bb = model.backbone.bottom_up
        assert torch.equal(bb.blocks[5].attn.qkv.weight,
                           saved["backbone.bottom_up.blocks.5.attn.qkv.weight"])
        assert torch.equal(bb.pos_embed, saved["backbone.bottom_up.pos_embed"])


def test_official_mae_file_is_converted_on_the_fly(mae_file, tmp_path):
    converted = tmp_path / "mae_d2.pth"
    convert_checkpoint(str(mae_file), str(converted), to="detectron2", input_size=(256, 256))
    model = _tiny_detector(256)
    checkpointer = type("Recording", (_Recording, HieraCheckpointer), {})(model)
    with _captured(checkpointer.logger) as lines:
        checkpointer.load(str(mae_file))
    assert any("hiera-official checkpoint of hiera_tiny_224: converting it on the fly" in line
               for line in lines)
    assert _missing_backbone_keys(checkpointer.incompatible) == []
    ref = torch.load(converted, weights_only=True)["model"]
    got = model.state_dict()
    for key, value in ref.items():
        assert torch.equal(got[key], value), key

    # A converted file made at another size is resized to the detector's, not skipped.
    again = _tiny_detector(128)
    HieraCheckpointer(again).load(str(converted))
    assert again.backbone.bottom_up.pos_embed.shape == (1, 32 * 32, 96)


def test_official_hvt_release_is_converted_on_the_fly(tmp_path):
    torch.manual_seed(0)
    release = tmp_path / "scale_hvt_ti_4.pth"
    torch.save({"model": build_backbone("hvt_s_4", num_classes=1000).state_dict(),
                "args": argparse.Namespace(pool_block_width=3)}, release)  # as the releases
    converted = tmp_path / "hvt_d2.pth"
    convert_checkpoint(str(release), str(converted), to="detectron2", input_size=(64, 64),
                       patch_size=4)
    cfg = LazyConfig.load(os.path.join(CONFIGS, "mask_rcnn_hvt_s_4_dense_100ep.py"))
    cfg.dataloader.image_size = 64
    model = instantiate(cfg.model)
    checkpointer = type("Recording", (_Recording, HieraCheckpointer), {})(model)
    with _captured(checkpointer.logger) as lines:
        checkpointer.load(str(release))
    assert any("hvt-official checkpoint of hvt_s_4: converting" in line for line in lines)
    assert _missing_backbone_keys(checkpointer.incompatible) == []
    got = model.state_dict()
    for key, value in torch.load(converted, weights_only=True)["model"].items():
        assert torch.equal(got[key], value), key
    assert got["backbone.bottom_up.patch_embed.proj.weight"].shape == (384, 3, 4, 4)


def test_checkpointer_refuses_wrong_architecture_and_pickles(mae_file, tmp_path, monkeypatch):
    cfg = LazyConfig.load(os.path.join(CONFIGS, "mask_rcnn_hiera_small_100ep.py"))
    cfg.dataloader.image_size = 64
    with pytest.raises(CheckpointError, match="holds hiera_tiny_224 weights"):
        HieraCheckpointer(instantiate(cfg.model)).load(str(mae_file))

    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _Recording()}, evil)
    # Refused even where mmengine's work-around turns torch's weights_only default off.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        HieraCheckpointer(torch.nn.Linear(1, 1)).load(str(evil))


