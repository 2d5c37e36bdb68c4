"""SAM 2 / SAM 2.1 HieraDet trunks and timm's abs-win Hiera: parity of every stage map with timm
(weights copied through our converter from files saved the way timm and SAM 2 publish them),
the SAM 2 release layout into every target, the size rule, and the backbone contract.

Errors are ``max |ours - timm| / max |timm|`` per stage map (:mod:`hiera_backbones.parity`):
relative to the map's scale, bounded by ``FP32_RTOL``."""

from __future__ import annotations

import urllib.error

import pytest
import timm
import torch
from checkpoint_files import load_with_detectron2, load_with_mmengine, save_sam2_release
from helpers import sharpen_

from hiera_backbones import build_backbone, list_models
from hiera_backbones.checkpoints import (
    OFFICIAL_CHECKPOINTS,
    CheckpointError,
    convert_checkpoint,
    read_backbone_weights,
)
from hiera_backbones.models import HieraDet
from hiera_backbones.parity import assert_maps_close, timm_reference, timm_stage_maps

SAM2_SIZES = ("tiny", "small", "base_plus", "large")


def _timm_file(tmp_path_factory, name: str, **kwargs):
    """timm's ``name`` with sharpened random weights, and its state dict saved with torch.save
    (what timm's hub files hold, head included)."""
    torch.manual_seed(0)
    model = sharpen_(timm.create_model(name, pretrained=False, num_classes=0, **kwargs)).eval()
    path = tmp_path_factory.mktemp(name) / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _ours_via_converter(path, **build) -> torch.nn.Module:
    weights = read_backbone_weights(str(path))
    model = build_backbone(weights.arch, **{**weights.build_kwargs, **build}).eval()
    model.load_state_dict(weights.backbone, strict=True)
    return model


def _parity(ours, reference, size, batch=1):
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = ours(x)
    return assert_maps_close(got, timm_stage_maps(reference, x))


@pytest.fixture(scope="module")
def sam2_tiny(tmp_path_factory):
    return _timm_file(tmp_path_factory, "sam2_hiera_tiny")


@pytest.fixture(scope="module")
def abswin_small(tmp_path_factory):
    return _timm_file(tmp_path_factory, "hiera_small_abswin_256")


def test_new_models_are_registered():
    assert {f"sam2_hiera_{s}" for s in SAM2_SIZES} <= set(list_models("sam2_*"))
    assert {"hiera_small_abswin_256", "hiera_base_abswin_256"} <= set(list_models("*abswin*"))


# ----------------------------------------------------------------------------- parity with timm
@pytest.mark.parametrize("size", [(1024, 1024), (640, 640), (256, 384)])
def test_sam2_tiny_matches_timm(sam2_tiny, size):
    """640: the 14 / 7 windows of stages 3-4 need padding (40 -> 42, 20 -> 21)."""
    reference, path = sam2_tiny
    ours = _ours_via_converter(path)
    assert ours.arch == "sam2_hiera_tiny"
    errors = _parity(ours, reference, size)
    assert [e.shape[2:] for e in errors] == [(size[0] // s, size[1] // s) for s in (4, 8, 16, 32)]


@pytest.mark.parametrize(
    "name, size",
    [
        pytest.param("sam2_hiera_base_plus", (256, 256), id="base_plus-256"),  # 2 heads, 14x14
        pytest.param("sam2_hiera_large", (256, 256), marks=pytest.mark.slow),  # windows 16 / 8
        pytest.param("sam2_hiera_small", (1024, 1024), marks=pytest.mark.slow),
        pytest.param("sam2_hiera_base_plus", (1024, 1024), marks=pytest.mark.slow),
        pytest.param("sam2_hiera_large", (1024, 1024), marks=pytest.mark.slow),
    ],
)
def test_other_sam2_trunks_match_timm(tmp_path_factory, name, size):
    reference, path = _timm_file(tmp_path_factory, name)
    ours = _ours_via_converter(path)
    assert ours.arch == name
    _parity(ours, reference, size)


@pytest.mark.parametrize("size", [(256, 256), (320, 384)])
def test_abswin_small_matches_timm(abswin_small, size):
    """timm fixes the abs-win token grid at construction, so its model is built for ``size``
    (no parameter depends on it); ours runs any allowed size with the same weights."""
    reference, path = abswin_small
    ours = _ours_via_converter(path)
    assert ours.arch == "hiera_small_abswin_256" and not hasattr(ours.blocks[1], "proj")
    if size != (256, 256):
        ref_state = reference.state_dict()
        reference = timm_reference("hiera_small_abswin_256", size)
        reference.load_state_dict(ref_state)
    _parity(ours, reference, size)


@pytest.mark.slow
def test_abswin_base_matches_timm(tmp_path_factory):
    reference, path = _timm_file(tmp_path_factory, "hiera_base_abswin_256")
    ours = _ours_via_converter(path)
    assert ours.arch == "hiera_base_abswin_256"
    _parity(ours, reference, (256, 256))


# ----------------------------------------------------------------------------- SAM 2 release files
@pytest.fixture(scope="module")
def release_file(tmp_path_factory, sam2_tiny):
    path = tmp_path_factory.mktemp("release") / "sam2.1_hiera_tiny.pt"
    return path, save_sam2_release(path, sam2_tiny[0].state_dict())


@pytest.mark.parametrize("target", ["backbone", "detectron2", "mmdet"])
def test_sam2_release_converts_for_every_target(release_file, sam2_tiny, target, tmp_path):
    src, rest = release_file
    dst = tmp_path / f"{target}.pth"
    meta = convert_checkpoint(str(src), str(dst), to=target)
    assert meta["arch"] == "sam2_hiera_tiny" and meta["source_format"] == "sam2-release"
    assert meta["dropped"] == sorted(rest)  # the rest of SAM 2, listed
    backbone = build_backbone("sam2_hiera_tiny").eval()
    if target == "detectron2":
        incompatible = load_with_detectron2(str(dst), backbone)
        assert not incompatible.missing_keys and not incompatible.unexpected_keys
    elif target == "mmdet":
        load_with_mmengine(str(dst), backbone)  # raises on any missing or unexpected key
    else:
        state = torch.load(dst, weights_only=True)["state_dict"]
        backbone.load_state_dict(state, strict=True)
    _parity(backbone, sam2_tiny[0], (256, 256))


def test_sam2_release_verify_and_reread(release_file, tmp_path):
    dst = tmp_path / "b.pth"
    meta = convert_checkpoint(str(release_file[0]), str(dst), input_size=(256, 256), verify=True)
    assert meta["verify_max_rel_error"] < 1e-5
    again = read_backbone_weights(str(dst))  # our own file, re-read
    assert again.arch == "sam2_hiera_tiny" and again.source_format == "hiera_backbones"


def test_abswin_converts_and_verifies(abswin_small, tmp_path):
    meta = convert_checkpoint(str(abswin_small[1]), str(tmp_path / "m.pth"), to="mmdet",
                              verify=True)
    assert meta["arch"] == "hiera_small_abswin_256" and meta["source_format"] == "hiera-timm"
    assert meta["verify_max_rel_error"] < 1e-5


def test_unknown_parts_are_refused(release_file, sam2_tiny, tmp_path):
    content = torch.load(release_file[0], weights_only=True)
    content["model"]["mystery_head.weight"] = torch.zeros(3)
    torch.save(content, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="mystery_head"):
        read_backbone_weights(str(tmp_path / "odd.pt"))
    content = torch.load(release_file[0], weights_only=True)
    content["model"]["image_encoder.trunk.extra.weight"] = torch.zeros(3)
    torch.save(content, tmp_path / "odd_trunk.pt")
    with pytest.raises(CheckpointError, match="extra.weight"):
        read_backbone_weights(str(tmp_path / "odd_trunk.pt"))
    state = {k: v for k, v in sam2_tiny[0].state_dict().items() if k != "blocks.3.proj.weight"}
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError):
        read_backbone_weights(str(tmp_path / "broken.pth"))


def test_hub_tags_name_the_release_files(monkeypatch, tmp_path):
    for size in SAM2_SIZES:
        assert OFFICIAL_CHECKPOINTS[f"sam2_hiera_{size}:sa1b"] == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_{size}.pt"
        )
        assert OFFICIAL_CHECKPOINTS[f"sam2.1_hiera_{size}:sa1b"] == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{size}.pt"
        )
    monkeypatch.setenv("HIERA_BACKBONES_CACHE", str(tmp_path / "cache"))

    def offline(url, dst, progress=True):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError, match=r"sam2\.1_hiera_large\.pt.*pass its local path"):
        convert_checkpoint("sam2.1_hiera_large:sa1b", str(tmp_path / "o.pth"))


# ----------------------------------------------------------------------------- backbone contract
def test_size_rule():
    model = build_backbone("sam2_hiera_tiny")
    assert model.size_multiple == (32, 32)
    with pytest.raises(ValueError, match=r"W=100 \(use 96 or 128\).*multiple of 32"):
        model(torch.zeros(1, 3, 96, 100))
    with pytest.raises(ValueError, match="input_size"):
        build_backbone("sam2_hiera_tiny", input_size=(1000, 1000))
    with pytest.raises(ValueError, match="multiple of the pooling stride"):
        HieraDet("sam2_hiera_tiny", window_spec=(8, 3, 14, 7))
    assert build_backbone("hiera_small_abswin_256").size_multiple == (32, 32)


def test_feature_api_and_metadata():
    model = build_backbone("sam2_hiera_tiny", out_indices=(1, 3)).eval()
    info = HieraDet.stage_info("sam2_hiera_base_plus")
    assert info == [dict(num_chs=c, reduction=s) for c, s in
                    zip((112, 224, 448, 896), (4, 8, 16, 32))]
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        outs = model(x)
        final, maps = model.forward_intermediates(x, indices=[0, -1], output_fmt="NHWC")
    assert [tuple(o.shape) for o in outs] == [(1, 192, 16, 24), (1, 768, 4, 6)]
    assert [tuple(m.shape) for m in maps] == [(1, 32, 48, 96), (1, 4, 6, 768)]
    assert final.shape == (1, 24, 768)
    assert model.get_layer_id("pos_embed_window") == 0 and model.num_layers == 12
    assert model.get_layer_id("blocks.11.mlp.fc2.weight") == 12
    assert model.no_weight_decay() == {"pos_embed", "pos_embed_window"}


def test_frozen_stages():
    model = build_backbone("sam2_hiera_tiny", frozen_stages=2, drop_path_rate=0.1).train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"pos_embed", "pos_embed_window", "patch_embed.proj.weight"} <= frozen
    assert all(n in frozen for n, _ in model.named_parameters() if n.startswith(("blocks.0.",
               "blocks.1.", "blocks.2.")))
    assert not any(n.startswith("blocks.3.") for n in frozen)
    assert not model.blocks[2].training and model.blocks[3].training
    abswin = build_backbone("hiera_small_abswin_256", frozen_stages=0)
    assert not abswin.pos_embed_win.requires_grad and abswin.blocks[0].ls1.gamma.requires_grad


def test_training_features_and_bf16():
    torch.manual_seed(0)
    model = build_backbone("sam2_hiera_tiny", drop_path_rate=0.2, grad_checkpointing=True,
                           out_norm=True).train()
    x = torch.randn(1, 3, 64, 64)
    sum(o.float().square().mean() for o in model(x)).backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
    assert model.pos_embed_window.grad is not None
    with torch.no_grad():
        model.eval()
        ref = model(x)
        got = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    for a, b in zip(got, ref):
        assert a.dtype == torch.bfloat16
        assert (a.float() - b).abs().max() <= 0.1 * b.abs().max()
