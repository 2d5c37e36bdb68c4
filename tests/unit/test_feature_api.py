"""The timm-style feature API, architecture resolution and the one layer-decay rule."""

from __future__ import annotations

import pytest
import torch

from hiera_backbones import build_backbone
from hiera_backbones.layer_decay import layer_decay_rules, lr_scale
from hiera_backbones.models import HVT, Hiera
from hiera_backbones.models.base import take_indices

SMALL_HIERA = dict(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1))


def _hiera(**kwargs):
    torch.manual_seed(0)
    return build_backbone("hiera_tiny_224", **SMALL_HIERA, input_size=(64, 64), **kwargs).eval()


def _hvt(**kwargs):
    torch.manual_seed(0)
    return build_backbone(
        "hvt_s_4", embed_dim=32, num_heads=2, depth=4, pool_block_width=1, pooling="2d",
        input_size=(64, 64), patch_size=4, **kwargs,
    ).eval()


@pytest.mark.parametrize("make", [_hiera, _hvt], ids=["hiera", "hvt"])
def test_forward_intermediates_indices_match_forward(make):
    model = make()
    x = torch.randn(2, 3, 64, 64)
    n = model.num_stages
    with torch.no_grad():
        full = model(x)
        final, every = model.forward_intermediates(x, stop_early=False)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        picked = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
        nhwc = model.forward_intermediates(x, indices=[1], output_fmt="NHWC",
                                           intermediates_only=True)
    assert len(full) == len(every) == n
    for a, b in zip(full, every):
        assert torch.equal(a, b)
    assert len(last_two) == 2 and all(torch.equal(a, b) for a, b in zip(last_two, full[-2:]))
    assert torch.equal(picked[0], full[0]) and torch.equal(picked[1], full[-1])
    assert torch.equal(nhwc[0], full[1].movedim(1, -1))
    assert final.dim() == 3 and final.shape[0] == 2 and final.shape[-1] == model.stage_channels[-1]
    # feature_info describes every stage, with the strides the maps have.
    assert [f["stage"] for f in model.feature_info] == list(range(n))
    assert [f["num_chs"] for f in model.feature_info] == [m.shape[1] for m in full]
    assert [f["reduction"] for f in model.feature_info] == [64 // m.shape[-1] for m in full]


def test_forward_intermediates_stop_early_and_norm():
    model = _hiera(out_indices=(1, 2), out_norm=True)
    x = torch.randn(1, 3, 64, 64)
    calls = []
    hook = model.blocks[-1].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        normed = model.forward_intermediates(x, indices=[1, 2], norm=True, intermediates_only=True)
        plain = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        out = model(x)
    hook.remove()
    assert not calls  # stage 3's block never ran
    assert all(torch.equal(a, b) for a, b in zip(normed, out))
    assert not torch.allclose(normed[0], plain[0])
    with pytest.raises(ValueError, match=r"stages \[3\] have no output norm"):
        model.forward_intermediates(x, indices=[3], norm=True)
    for bad in (0, 5, [4], [2, 1], [-5]):
        with pytest.raises(ValueError, match="indices"):
            model.forward_intermediates(x, indices=bad)
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NLC")


def test_take_indices_follows_timm():
    timm_features = pytest.importorskip("timm.models._features")
    for indices in (None, 1, 3, [0, 2], [-1], [-3, -1], (1, 2, 3)):
        ours = take_indices(4, indices)
        theirs, _ = timm_features.feature_take_indices(4, indices)
        assert ours == list(theirs), indices


@pytest.mark.parametrize("name", ["hiera_tiny_224", "hiera_base_plus_224", "hiera_huge_16x224"])
def test_stage_info_needs_no_model_and_matches_it(name):
    with torch.device("meta"):
        model = build_backbone(name)
    info = Hiera.stage_info(name)
    assert [i["num_chs"] for i in info] == model.stage_channels
    assert [i["reduction"] for i in info] == model.stage_strides
    assert HVT.stage_info("hvt_s_4", patch_size=4) == [
        dict(num_chs=384, reduction=4 * 2**k) for k in range(5)]
    assert [i["reduction"] for i in Hiera.stage_info(name, q_pool=1)] == [4, 8, 8, 8]


def test_arch_is_a_name_or_a_dict_and_recorded_truthfully():
    with torch.device("meta"):
        tiny = Hiera("hiera_tiny_224")
        same = Hiera(dict(base="hiera_base_224", stages=(1, 2, 7, 2)))
        custom = Hiera(dict(base="hiera_base_16x224", embed_dim=32, stages=(1, 1, 2, 1)))
        overridden = build_backbone("hiera_base_224", embed_dim=32)
        alias = build_backbone("scale_hvt_ti_4")
    assert tiny.arch == "hiera_tiny_224" and same.arch == "hiera_tiny_224"
    assert custom.arch == "hiera_base_16x224_custom" and overridden.arch == "hiera_base_224_custom"
    assert custom.arch_config["embed_dim"] == 32 and custom.arch_config["stages"] == (1, 1, 2, 1)
    assert custom.spatial_dims == 3 and custom.stage_channels == [32, 64, 128, 256]
    assert alias.arch == "scale_hvt_ti_4" and alias.is_arch("hvt_s_4")
    assert not alias.is_arch("hvt_s_2") and not tiny.is_arch("hiera_small_224")
    with pytest.raises(ValueError, match="not Hiera architecture arguments"):
        Hiera(dict(base="hiera_tiny_224", drop_path_rate=0.1))
    with pytest.raises(ValueError, match="unknown Hiera arch 'hiera_tiny'.*did you mean"):
        Hiera("hiera_tiny")
    with pytest.raises(TypeError, match="model name or a dict"):
        Hiera(3)


def test_one_layer_decay_rule_for_detectron2_and_openmmlab():
    """detectron2's lr_factor_func and the OpenMMLab constructor's rules give every backbone
    parameter the same scale; the last block and new layers (output norms, neck, heads) the
    base lr."""
    d2 = pytest.importorskip("hiera_backbones.detectron2")
    model = torch.nn.Module()
    model.backbone = _hvt(out_norm=True)
    model.neck = torch.nn.Linear(2, 2)
    n = model.backbone.num_layers
    rules = layer_decay_rules(model, 0.5)
    for name, (scale, _) in rules.items():
        d2_name = name.replace("backbone.", "backbone.bottom_up.", 1)
        assert d2.get_hiera_lr_decay_rate(d2_name, 0.5, n) == scale, name
        assert lr_scale(name, 0.5, n, "backbone.") == scale
    # The official Hiera training code's ids: the rest shares the last block's id.
    assert rules["backbone.patch_embed.proj.weight"][0] == 0.5**n
    assert rules[f"backbone.blocks.{n - 1}.mlp.fc2.weight"][0] == 1.0
    assert rules["backbone.blocks.0.mlp.fc2.weight"][0] == 0.5 ** (n - 1)
    assert rules["backbone.out_norms.0.weight"][0] == 1.0
    assert "neck.weight" not in rules and lr_scale("neck.weight", 0.5, n, "backbone.") == 1.0
    assert rules["backbone.blocks.0.pos_embed"] == (0.5 ** (n - 1), True)  # no weight decay
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        layer_decay_rules(model, 1.5)
