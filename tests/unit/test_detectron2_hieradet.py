"""detectron2 with SAM 2 / SAM 2.1 HieraDet trunks and abs-win Hiera, without training: the
``D2HieraDet`` backbone, yacs, layer decay, the new COCO configs built with their weights loaded
from random-weight files laid out as released (no downloads), and detectron2's own
``DetectionCheckpointer`` loading ``hiera_backbones://sam2.1_hiera_tiny:sa1b`` from the cache.

Training (one step of every config, the HieraDet demo detector learning) is
``tests/e2e/test_detectron2_training.py``."""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch

pytest.importorskip("detectron2")

from checkpoint_files import in_download_cache, save_random_sam2_release  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, get_cfg, instantiate  # noqa: E402
from detectron2.modeling import build_backbone as d2_build_backbone  # noqa: E402
from detectron2.solver.build import get_default_optimizer_params  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402
from frameworks import D2_CONFIGS, one_thread  # noqa: E402

from hiera_backbones import build_backbone  # noqa: E402
from hiera_backbones.checkpoints import CheckpointError  # noqa: E402
from hiera_backbones.detectron2 import (  # noqa: E402
    D2Hiera,
    D2HieraDet,
    HieraCheckpointer,
    add_hiera_config,
    get_hiera_lr_decay_rate,
)

CONFIGS = str(D2_CONFIGS)
SAM2_CONFIG = "mask_rcnn_sam2.1_hiera_base_plus_100ep.py"
ABSWIN_CONFIG = "mask_rcnn_hiera_small_abswin_100ep.py"
TINY = dict(embed_dim=32, num_heads=1, stages=(1, 1, 2, 1), window_spec=(8, 4, 4, 4),
            global_att_blocks=(3, 4))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


def _detector_with(bottom_up: torch.nn.Module) -> torch.nn.Module:
    detector = torch.nn.Module()
    detector.backbone = torch.nn.Module()
    detector.backbone.bottom_up = bottom_up
    return detector


class _Recording(DetectionCheckpointer):
    """detectron2's own checkpointer, keeping the incompatible keys it reports."""

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def _missing_backbone_keys(incompatible) -> list[str]:
    return [k for k in incompatible.missing_keys
            if k.startswith("backbone.bottom_up.") and ".out_norms." not in k]


# ----------------------------------------------------------------------------- backbones
def test_hieradet_backbone_is_our_model_with_detectron2_shapes():
    bb = D2HieraDet("sam2_hiera_tiny", input_size=(64, 96), out_features=["res3", "res5"])
    ref = build_backbone("sam2_hiera_tiny", input_size=(64, 96), out_indices=(1, 3),
                         out_norm=True)
    assert list(bb.state_dict()) == list(ref.state_dict())  # SAM 2's trunk names
    assert bb.size_divisibility == 32 and bb.padding_constraints == {"size_divisibility": 32}
    assert {k: (v.channels, v.stride) for k, v in bb.output_shape().items()} == {
        "res3": (192, 8), "res5": (768, 32)}
    ref.load_state_dict(bb.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out, expected = bb.eval()(x), ref.eval()(x)
    assert list(out) == ["res3", "res5"]
    for got, want in zip(out.values(), expected):
        assert torch.equal(got, want)
    assert D2HieraDet("sam2_hiera_tiny", square_pad=64).padding_constraints[
        "square_size"] == 64


@pytest.mark.parametrize("make, match", [
    (lambda: D2HieraDet("hiera_tiny_224"), "use one of sam2_hiera_tiny"),
    (lambda: D2HieraDet("sam2_hiera_tiny", out_features=["res6"]), "not a non-empty subset"),
    (lambda: D2HieraDet("sam2_hiera_tiny", input_size=(100, 64)), "multiple of 32"),
    (lambda: D2HieraDet("sam2_hiera_tiny", square_pad=48), "multiple of 32"),
    (lambda: D2HieraDet("sam2_hiera_tiny", freeze_at=-1), "freeze_at=-1"),
])
def test_bad_hieradet_arguments_raise_one_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_yacs_hieradet_fpn_and_freeze_at():
    cfg = add_hiera_config(get_cfg())
    assert cfg.MODEL.HIERADET.ARCH == "sam2_hiera_base_plus"
    cfg.MODEL.BACKBONE.NAME = "build_hieradet_fpn_backbone"
    cfg.MODEL.HIERADET.update(ARCH="sam2_hiera_tiny", INPUT_SIZE=[64, 64], SQUARE_PAD=64,
                              FREEZE_AT=2)
    cfg.MODEL.FPN.NORM = "LN"
    fpn = d2_build_backbone(cfg)
    assert isinstance(fpn.bottom_up, D2HieraDet) and fpn.padding_constraints == {
        "square_size": 64}
    assert list(fpn(torch.randn(1, 3, 64, 64))) == ["p2", "p3", "p4", "p5", "p6"]
    frozen = {n for n, p in fpn.bottom_up.named_parameters() if not p.requires_grad}
    # freeze_at=2: the stem (both position embeddings, patch embedding) and res2 (block 0).
    assert {"pos_embed", "pos_embed_window", "patch_embed.proj.weight"} <= frozen
    assert {n.split(".")[1] for n in frozen if n.startswith("blocks.")} == {"0"}
    cfg.MODEL.BACKBONE.NAME = "D2HieraDet"
    assert isinstance(d2_build_backbone(cfg), D2HieraDet)


def test_d2hiera_takes_abswin_archs():
    bb = D2Hiera("hiera_small_abswin_256", input_size=(64, 64), stages=(1, 1, 1, 1))
    assert bb.arch.startswith("hiera_small_abswin_256")
    out = bb(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "res2": (96, 16, 24), "res3": (192, 8, 12), "res4": (384, 4, 6), "res5": (768, 2, 3)}
    assert bb.get_layer_id("pos_embed_win") == 0


def test_layer_decay_ids_cover_hieradet():
    bb = D2HieraDet("sam2_hiera_tiny", input_size=(64, 64), **TINY)
    n = bb.num_layers
    assert n == 5
    f = partial(get_hiera_lr_decay_rate, num_layers=n, lr_decay_rate=0.5)
    assert f("backbone.bottom_up.pos_embed") == f("backbone.bottom_up.pos_embed_window") == 0.5**n
    assert f("backbone.bottom_up.patch_embed.proj.weight") == 0.5**n
    assert f("backbone.bottom_up.blocks.1.proj.weight") == 0.5 ** (n - 2)
    assert f("backbone.bottom_up.blocks.4.mlp.fc2.weight") == 1.0
    assert f("backbone.bottom_up.out_norms.3.weight") == 1.0
    groups = get_default_optimizer_params(_detector_with(bb), base_lr=1.0, lr_factor_func=f)
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lrs[id(bb.pos_embed_window)] == lrs[id(bb.patch_embed.proj.weight)] == 0.5**n
    assert lrs[id(bb.blocks[0].attn.qkv.weight)] == 0.5 ** (n - 1)


# ----------------------------------------------------------------------------- configs + weights
def test_configs_state_their_recipe():
    sam2 = LazyConfig.load(os.path.join(CONFIGS, SAM2_CONFIG))
    bottom_up = sam2.model.backbone.bottom_up
    assert bottom_up._target_ is D2HieraDet and bottom_up.arch == "sam2_hiera_base_plus"
    assert (sam2.optimizer.lr, bottom_up.drop_path_rate) == (3.5e-5, 0.2)
    decay = sam2.optimizer.params.lr_factor_func
    assert decay.keywords == dict(num_layers=24, lr_decay_rate=0.9)
    assert set(sam2.optimizer.params.overrides) == {"pos_embed", "pos_embed_window"}
    assert sam2.train.init_checkpoint == "hiera_backbones://sam2.1_hiera_base_plus:sa1b"
    abswin = LazyConfig.load(os.path.join(CONFIGS, ABSWIN_CONFIG))
    assert abswin.model.backbone.bottom_up.arch == "hiera_small_abswin_256"
    assert (abswin.optimizer.lr, abswin.model.backbone.bottom_up.drop_path_rate) == (3.5e-5, 0.1)
    assert set(abswin.optimizer.params.overrides) == {"pos_embed", "pos_embed_win"}
    for cfg, name in ((sam2, SAM2_CONFIG), (abswin, ABSWIN_CONFIG)):
        with open(os.path.join(CONFIGS, name)) as f:
            assert "The recipe is ours" in " ".join(f.read().split())
        assert cfg.dataloader.image_size == cfg.model.backbone.square_pad == 1024
        assert cfg.model.backbone.norm == "LN"
        assert cfg.model.roi_heads.box_head.conv_dims == [256] * 4
        scale = cfg.dataloader.train.mapper.augmentations[1]
        assert (scale.min_scale, scale.max_scale) == (0.1, 2.0)
        assert cfg.train.max_iter == 184375


def _built(name: str, size: int = 128):
    cfg = LazyConfig.load(os.path.join(CONFIGS, name))
    cfg.dataloader.image_size = size  # the position embedding and padding follow it
    return cfg, instantiate(cfg.model)


def test_sam2_config_builds_and_loads_its_init_checkpoint(offline_cache):
    """The SAM 2.1 B+ config as a tool runs it: the model built, then
    ``train.init_checkpoint`` (the hub tag) loaded by detectron2's own checkpointer from the
    cache, offline, with no backbone key missing; a release file by path through ours."""
    tag = "sam2.1_hiera_base_plus:sa1b"
    trunk = save_random_sam2_release(in_download_cache(offline_cache, tag), "sam2_hiera_base_plus")
    cfg, model = _built(SAM2_CONFIG)
    checkpointer = _Recording(model)
    checkpointer.load(cfg.train.init_checkpoint)
    assert _missing_backbone_keys(checkpointer.incompatible) == []
    assert checkpointer.incompatible.unexpected_keys == []
    bottom_up = model.backbone.bottom_up
    assert isinstance(bottom_up, D2HieraDet)
    for key in ("pos_embed", "pos_embed_window", "blocks.23.mlp.fc2.weight", "blocks.2.proj.bias"):
        assert torch.equal(bottom_up.state_dict()[key], trunk[key]), key

    again = instantiate(cfg.model)  # HieraCheckpointer, the release file by its path
    HieraCheckpointer(again).load(in_download_cache(offline_cache, tag))
    assert torch.equal(again.backbone.bottom_up.blocks[12].attn.qkv.weight,
                       trunk["blocks.12.attn.qkv.weight"])
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.randint(0, 255, (3, 128, 96), dtype=torch.uint8)}])
    assert "instances" in out


def test_abswin_config_builds_and_loads_its_init_checkpoint(offline_cache):
    """The abs-win Hiera-S config: timm's file (the in12k classifier head included) where the
    tag's download lands, loaded through ``hiera_backbones://`` by detectron2's checkpointer."""
    import timm
    from safetensors.torch import save_file

    tag = "hiera_small_abswin_256:sbb2_e200_in12k"
    timm_model = timm.create_model("hiera_small_abswin_256", pretrained=False, num_classes=11821)
    state = {k: v.contiguous() for k, v in timm_model.state_dict().items()}
    save_file(state, in_download_cache(offline_cache, tag))
    cfg, model = _built(ABSWIN_CONFIG)
    checkpointer = _Recording(model)
    checkpointer.load(cfg.train.init_checkpoint)
    assert _missing_backbone_keys(checkpointer.incompatible) == []
    assert checkpointer.incompatible.unexpected_keys == []
    bottom_up = model.backbone.bottom_up
    for key in ("pos_embed", "pos_embed_win", "blocks.15.ls2.gamma", "blocks.3.attn.qkv.weight"):
        assert torch.equal(bottom_up.state_dict()[key], state[key]), key


# ----------------------------------------------------------------------------- stock tools
def test_stock_checkpointer_loads_sam2_tag_from_cache_and_fails_clearly_offline(offline_cache):
    tag = "sam2.1_hiera_tiny:sa1b"
    model = _detector_with(D2HieraDet("sam2_hiera_tiny", input_size=(64, 64)))
    with pytest.raises(CheckpointError, match=r"could not download .*sam2\.1_hiera_tiny\.pt.*"
                                              r"offline.*put it at"):
        DetectionCheckpointer(model).load(f"hiera_backbones://{tag}")

    trunk = save_random_sam2_release(in_download_cache(offline_cache, tag), "sam2_hiera_tiny")
    checkpointer = _Recording(model)
    checkpointer.load(f"hiera_backbones://{tag}")
    assert _missing_backbone_keys(checkpointer.incompatible) == []
    assert checkpointer.incompatible.unexpected_keys == []
    for key, value in trunk.items():
        assert torch.equal(model.backbone.bottom_up.state_dict()[key], value), key
    local = PathManager.get_local_path(f"hiera_backbones://{tag}")
    assert os.path.dirname(local) == str(offline_cache / "detectron2")
    assert "sam2_hiera_tiny-64x64" in os.path.basename(local)


def test_path_handler_reads_the_source_once_and_reuses_its_conversion(offline_cache, monkeypatch):
    """``hiera_backbones://``: one read of the source per load (it picks the backbone and names
    the converted file); a second load of the same source for the same backbone finds the
    converted file and writes nothing."""
    import hiera_backbones.detectron2.checkpoint as d2_adapter

    tag = "sam2.1_hiera_tiny:sa1b"
    save_random_sam2_release(in_download_cache(offline_cache, tag), "sam2_hiera_tiny")
    model = _detector_with(D2HieraDet("sam2_hiera_tiny", input_size=(64, 64)))  # alive: in use
    reads: list[str] = []
    real_read = d2_adapter.read_checkpoint
    monkeypatch.setattr(d2_adapter, "read_checkpoint", lambda p: reads.append(p) or real_read(p))
    first = PathManager.get_local_path(f"hiera_backbones://{tag}")
    written = os.stat(first).st_mtime_ns
    second = PathManager.get_local_path(f"hiera_backbones://{tag}")
    assert first == second and os.stat(second).st_mtime_ns == written
    assert len(reads) == 2  # once per load
    converted = torch.load(first, weights_only=True)["model"]
    trunk_keys = model.backbone.bottom_up.state_dict()
    assert set(converted) == {
        f"backbone.bottom_up.{k}" for k in trunk_keys if not k.startswith("out_norms.")
    }
