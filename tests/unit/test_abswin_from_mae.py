"""MAE / official Hiera weights as the start of an abs-win Hiera (facebookresearch/hiera#45):
``hiera-convert --abs-win`` / ``read_backbone_weights(abs_win=True)`` / an abs-win model's
``init_cfg``.

The rule (``checkpoints.hiera_formats.to_abs_win``): window part = mean of the learned
``pos_embed`` over the mask-unit windows (8x8 tokens), background = the rest on the original
token grid. At the pretraining size the abs-win model is the MAE model (stage maps within fp32
rounding of the official model's and of our plain Hiera's); at another size the window part
tiles and only the background is interpolated, which differs from resizing the whole embedding
(the plain model's rule) by design."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import sharpen_

from hiera_backbones import build_backbone
from hiera_backbones.checkpoints import CheckpointError, convert_checkpoint, read_backbone_weights
from hiera_backbones.checkpoints.cli import main as convert_main
from hiera_backbones.checkpoints.load import backbone_weights_for
from hiera_backbones.checkpoints.metadata import read_own_state
from hiera_backbones.models import Hiera
from hiera_backbones.parity import (
    FP32_RTOL,
    assert_maps_close,
    official_hiera,
    official_stage_maps,
)

ABS_WIN_TINY = dict(base="hiera_tiny_224", abs_win=True, global_pos_size=(56, 56))


@pytest.fixture(scope="module")
def mae_file(tmp_path_factory):
    """An official-layout MAE file (``{"model_state": ...}`` with decoder tensors) holding an
    official Hiera-T with sharpened random weights; returns (official model, path)."""
    torch.manual_seed(0)
    official = sharpen_(official_hiera("hiera_tiny_224"))
    state = dict(official.state_dict())
    state["decoder_embed.weight"] = torch.randn(512, 768)
    state["mask_token"] = torch.zeros(1, 1, 512)
    path = tmp_path_factory.mktemp("mae") / "mae_hiera_tiny_224.pth"
    torch.save({"model_state": state}, path)
    return official, path


def _x(size):
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))


def _abs_win_model(weights, **kwargs):
    model = Hiera(ABS_WIN_TINY, **{**weights.build_kwargs, **kwargs}).eval()
    model.load_state_dict(weights.backbone, strict=True)
    return model


def test_decomposition(mae_file):
    official, path = mae_file
    weights = read_backbone_weights(str(path), abs_win=True)
    assert weights.arch == "hiera_tiny_224_custom"
    assert weights.build_kwargs == dict(input_size=(224, 224), abs_win=True,
                                        global_pos_size=(56, 56))
    bg, win = weights.backbone["pos_embed"], weights.backbone["pos_embed_win"]
    assert bg.shape == (1, 96, 56, 56) and win.shape == (1, 96, 8, 8)
    learned = official.pos_embed.detach().reshape(1, 56, 56, 96).permute(0, 3, 1, 2)
    units = learned.reshape(1, 96, 7, 8, 7, 8)
    torch.testing.assert_close(win, units.mean(dim=(2, 4)), rtol=0, atol=1e-6)
    # The background has zero mean over the windows; bg + tiled window = the learned embedding.
    assert bg.double().reshape(1, 96, 7, 8, 7, 8).mean(dim=(2, 4)).abs().max() < 1e-6
    rebuilt = bg + win.tile(1, 1, 7, 7)
    assert (rebuilt - learned).abs().max() <= 2 * torch.finfo(torch.float32).eps * 2
    # Nothing else changes; the MAE-only tensors are dropped as usual.
    plain = read_backbone_weights(str(path))
    assert set(weights.backbone) == set(plain.backbone) | {"pos_embed_win"}
    assert all(torch.equal(v, plain.backbone[k]) for k, v in weights.backbone.items()
               if not k.startswith("pos_embed"))
    assert weights.dropped == plain.dropped and "mask_token" in weights.dropped


def test_equal_size_resize_is_identity():
    """Our abs-win path does not interpolate at the background's own size; even if it did,
    PyTorch's antialiased bicubic at equal size would be the identity up to rounding."""
    bg = torch.randn(1, 96, 56, 56)
    model = Hiera(ABS_WIN_TINY).eval()
    with torch.no_grad():
        model.pos_embed.copy_(bg)
        model.pos_embed_win.zero_()
        assert torch.equal(model._pos_embed((56, 56)).transpose(1, 2).reshape(1, 96, 56, 56), bg)
    same = F.interpolate(bg, size=(56, 56), mode="bicubic", align_corners=False, antialias=True)
    assert (same - bg).abs().max() <= 1e-5 * bg.abs().max()


def test_is_the_mae_model_at_the_pretraining_size(mae_file):
    official, path = mae_file
    weights = read_backbone_weights(str(path), abs_win=True)
    ours = _abs_win_model(weights)
    plain = read_backbone_weights(str(path))
    ours_plain = build_backbone(plain.arch, **plain.build_kwargs).eval()
    ours_plain.load_state_dict(plain.backbone, strict=True)
    x = _x((224, 224))
    with torch.no_grad():
        got = ours(x)
        plain_maps = ours_plain(x)
    assert_maps_close(got, official_stage_maps(official, x))
    # Against our plain Hiera (same kernels) the only difference is the rounding of
    # bg + tile(window) (<= 1 ulp of the embedding), carried through the blocks: measured
    # ~1e-6 of the map scale on sharpened weights.
    assert_maps_close(got, plain_maps)


def test_other_size_tiles_the_window_and_resizes_the_background(mae_file):
    _, path = mae_file
    weights = read_backbone_weights(str(path), abs_win=True, input_size=(448, 448))
    assert weights.build_kwargs["input_size"] == (448, 448)
    model = _abs_win_model(weights)
    bg, win = weights.backbone["pos_embed"], weights.backbone["pos_embed_win"]
    with torch.no_grad():
        pos = model._pos_embed((112, 112)).transpose(1, 2).reshape(1, 96, 112, 112)
    expected = F.interpolate(bg, size=(112, 112), mode="bicubic", antialias=True) + win.tile(
        1, 1, 14, 14
    )
    torch.testing.assert_close(pos, expected)
    # Not the plain model's rule (the whole learned embedding resized), by design.
    plain = read_backbone_weights(str(path), input_size=(448, 448)).backbone["pos_embed"]
    plain = plain.reshape(1, 112, 112, 96).permute(0, 3, 1, 2)
    assert (pos - plain).abs().max() > 1e-3 * plain.abs().max()
    with torch.no_grad():
        assert [tuple(m.shape[2:]) for m in model(_x((448, 448)))] == [(112, 112), (56, 56),
                                                                       (28, 28), (14, 14)]


def test_cli_verify_and_reread(mae_file, tmp_path, capsys):
    _, path = mae_file
    dst = tmp_path / "abswin_mmdet.pth"
    assert convert_main([str(path), str(dst), "--to", "mmdet", "--abs-win", "--verify",
                         "--input-size", "1024", "1024"]) == 0
    out = capsys.readouterr().out
    assert "hiera_tiny_224_custom" in out and "verified against the source model" in out
    state, meta = read_own_state(str(dst))
    assert meta["build_kwargs"] == dict(input_size=[1024, 1024], abs_win=True,
                                        global_pos_size=[56, 56])
    again = read_backbone_weights(str(dst))  # our own file, re-read as saved
    assert again.arch == "hiera_tiny_224_custom" and "pos_embed_win" in again.backbone
    assert again.build_kwargs["abs_win"] and again.build_kwargs["input_size"] == (1024, 1024)
    meta = convert_checkpoint(str(path), str(tmp_path / "b.pth"), abs_win=True, verify=True)
    assert meta["verify_max_rel_error"] < FP32_RTOL


def test_abs_win_model_loads_mae_weights_directly(mae_file):
    """What an adapter's ``init_cfg`` / checkpointer does: the built abs-win model reads the
    MAE file converted for it; a plain model still gets the plain weights."""
    official, path = mae_file
    model = Hiera(ABS_WIN_TINY, input_size=(256, 256)).eval()
    weights = backbone_weights_for(model, str(path))
    assert weights.arch == model.arch == "hiera_tiny_224_custom"
    model.load_state_dict(weights.backbone, strict=True)
    plain = build_backbone("hiera_tiny_224")
    assert "pos_embed_win" not in backbone_weights_for(plain, str(path)).backbone
    wrong = Hiera(dict(ABS_WIN_TINY, global_pos_size=(16, 16)))
    with pytest.raises(CheckpointError):
        backbone_weights_for(wrong, str(path))


def test_refusals(mae_file, tmp_path):
    with pytest.raises(CheckpointError, match="Hiera image weights only|plain image Hiera"):
        video = official_hiera("hiera_base_16x224")
        torch.save({"model_state": video.state_dict()}, tmp_path / "v.pth")
        read_backbone_weights(str(tmp_path / "v.pth"), abs_win=True)
