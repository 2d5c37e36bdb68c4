"""HVT conversions: official releases (DeiT-style files) and plain ViT / DeiT / MAE weights."""

from __future__ import annotations

import pytest
import timm
import torch
from checkpoint_files import hvt_classifier, save_deit, save_hvt_release, timm_vit

from hiera_backbones import build_backbone
from hiera_backbones.checkpoints import (
    CheckpointError,
    convert_checkpoint,
    load_backbone_checkpoint,
    read_backbone_weights,
)
from hiera_backbones.parity import assert_maps_close


@pytest.fixture(scope="module")
def hvt_release(tmp_path_factory):
    """An HVT-S-2 file laid out like the official releases (DeiT training code)."""
    torch.manual_seed(0)
    model = hvt_classifier("hvt_s_2")
    path = save_hvt_release(tmp_path_factory.mktemp("hvt") / "hvt_s_2.pth", model, "hvt_s_2")
    return path, model


def test_official_release_loads_strictly_and_classifies_the_same(hvt_release, tmp_path):
    path, model = hvt_release
    weights = read_backbone_weights(str(path))
    assert weights.source_format == "hvt-official" and weights.arch == "hvt_s_2"
    assert weights.backbone["blocks.6.pos_embed"].shape == (1, 48, 384)
    dst = tmp_path / "cls.pth"
    meta = convert_checkpoint(str(path), str(dst), to="backbone", keep_head=True, verify=True)
    assert meta["verify_max_abs_diff"] == meta["verify_max_rel_error"] == 0.0
    clf = build_backbone("hvt_s_2", num_classes=1000).eval()
    clf.load_state_dict(torch.load(dst, weights_only=True)["state_dict"], strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(clf.forward_logits(x), model.forward_logits(x))


def test_detection_targets_get_2d_weights_at_the_training_size(hvt_release, tmp_path):
    path, _ = hvt_release
    dst = tmp_path / "d2.pth"
    meta = convert_checkpoint(str(path), str(dst), to="detectron2", input_size=(512, 640),
                              patch_size=8)
    assert meta["build_kwargs"] == {"input_size": [512, 640], "pooling": "2d", "patch_size": 8}
    state = torch.load(dst, weights_only=True)["model"]
    assert state["backbone.bottom_up.patch_embed.proj.weight"].shape == (384, 3, 8, 8)
    assert state["backbone.bottom_up.blocks.6.pos_embed"].dim() == 4
    model = build_backbone("hvt_s_2", pooling="2d", input_size=(512, 640), patch_size=8)
    prefix = "backbone.bottom_up."
    model.load_state_dict({k[len(prefix):]: v for k, v in state.items()}, strict=True)
    # The same weights through the generic loader, straight from the release.
    other = build_backbone("hvt_s_2", pooling="2d", input_size=(512, 640), patch_size=8)
    load_backbone_checkpoint(other, str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  other.state_dict().values()))


def test_mmaction_target_gets_inflated_video_weights(hvt_release, tmp_path):
    path, _ = hvt_release
    dst = tmp_path / "mma.pth"
    meta = convert_checkpoint(str(path), str(dst), to="mmaction", input_size=(8, 224, 224))
    assert meta["build_kwargs"]["video"] is True
    state = torch.load(dst, weights_only=True)["state_dict"]
    assert state["backbone.patch_embed.proj.weight"].shape == (384, 3, 2, 16, 16)
    assert not state["backbone.pos_embed_temporal"].any()
    model = build_backbone("hvt_s_2", pooling="2d", video=True, input_size=(8, 224, 224))
    model.load_state_dict({k[len("backbone."):]: v for k, v in state.items()}, strict=True)
    with pytest.raises(CheckpointError, match="1D\\) HVT runs only at the size"):
        convert_checkpoint(str(path), str(tmp_path / "x.pth"), to="backbone",
                           input_size=(320, 320))


def test_vit_to_hvt_s_0_equals_a_class_token_free_vit(tmp_path):
    torch.manual_seed(0)
    vit = timm_vit()
    src = save_deit(tmp_path / "deit_s.pth", vit.state_dict())
    dst = tmp_path / "hvt_s_0.pth"
    with pytest.raises(CheckpointError, match="--num-heads"):
        convert_checkpoint(str(src), str(dst), arch="hvt_s_0")
    with pytest.raises(CheckpointError, match="--arch"):
        convert_checkpoint(str(src), str(dst), num_heads=6)
    with pytest.raises(CheckpointError, match="384 wide, hvt_ti_1 is 192"):
        convert_checkpoint(str(src), str(dst), arch="hvt_ti_1", num_heads=6)
    meta = convert_checkpoint(str(src), str(dst), arch="hvt_s_0", num_heads=6, keep_head=True)
    assert meta["source_format"] == "vit" and "cls_token" in meta["dropped"]
    assert "pos_embed[cls]" in meta["dropped"]
    # Reference: timm's ViT without class token, mean-pooled after the final norm, holding the
    # same weights; HVT-S-0 is exactly that model.
    ref = timm_vit(class_token=False)
    state = {k: v for k, v in vit.state_dict().items() if k != "cls_token"}
    state["pos_embed"] = state["pos_embed"][:, 1:]
    ref.load_state_dict(state, strict=True)
    hvt = build_backbone("hvt_s_0", num_classes=1000).eval()
    hvt.load_state_dict(torch.load(dst, weights_only=True)["state_dict"], strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert_maps_close([hvt.forward_logits(x)], [ref(x)])


def test_mae_vit_with_decoder_and_explicit_heads(tmp_path):
    """MAE-Lite style: ViT-Tiny shapes with 12 heads, weights under ``module.model.``, an MAE
    decoder alongside; stage embeddings start at zero (documented rule)."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_heads=12, pretrained=False)
    state = {f"module.model.{k}": v for k, v in vit.state_dict().items()}
    state["module.model.mask_token"] = torch.zeros(1, 1, 192)
    state["module.model.decoder_embed.weight"] = torch.zeros(128, 192)
    src = save_deit(tmp_path / "mae_lite.pth", state)  # MAE-Lite uses DeiT's layout
    dst = tmp_path / "hvt_ti_1.pth"
    meta = convert_checkpoint(str(src), str(dst), arch="hvt_ti_1", num_heads=12)
    assert meta["build_kwargs"]["num_heads"] == 12
    assert {"mask_token", "decoder_embed.weight", "head.weight"} - set(meta["dropped"]) == {
        "head.weight"}
    saved = torch.load(dst, weights_only=True)["state_dict"]
    assert not saved["blocks.0.pos_embed"].any()
    model = build_backbone("hvt_ti_1", num_heads=12)
    model.load_state_dict(saved, strict=True)
    assert model.blocks[1].attn.heads == 12
