"""Numerical parity with the official implementation (hiera-transformer==0.1.4), fp32.

Maps are compared relative to their scale with the project's one fp32 bound
(:data:`hiera_backbones.parity.FP32_RTOL`, where its derivation and measurements are written).
"""

from __future__ import annotations

import pytest
import torch
from helpers import backbone_state, ours_from, sharpen_
from torch.overrides import TorchFunctionMode

from hiera_backbones import build_backbone
from hiera_backbones.models import HIERA_CONFIGS, resize_pos_embed
from hiera_backbones.parity import assert_maps_close, official_hiera, official_stage_maps


def _parity(name, x, official_kwargs=None, ours_kwargs=None, sharpen=False):
    official = official_hiera(name, **(official_kwargs or {}))
    if sharpen:
        sharpen_(official)
    ours = ours_from(official, name, **(ours_kwargs or {}))
    with torch.no_grad():
        got = ours(x)
    ref = official_stage_maps(official, x)
    assert_maps_close(got, ref)
    return official, ours


@pytest.mark.parametrize("name", ["hiera_tiny_224", "hiera_base_224", "hiera_base_plus_224"])
def test_image_parity_224(name):
    _parity(name, torch.randn(2, 3, 224, 224))


def test_image_parity_sharpened_weights():
    # Peaked attention: a wrong window assignment or token order would show at once.
    _parity("hiera_tiny_224", torch.randn(2, 3, 224, 224), sharpen=True)


@pytest.mark.parametrize("size", [(256, 320), (160, 416)])
def test_image_parity_non_224_built_at_size(size):
    _parity(
        "hiera_tiny_224",
        torch.randn(1, 3, *size),
        official_kwargs=dict(input_size=size),
        ours_kwargs=dict(input_size=size),
        sharpen=True,
    )


def test_video_parity_16x224():
    _parity("hiera_base_16x224", torch.randn(1, 3, 16, 224, 224))


def test_video_parity_other_size_built_at_size():
    size = (8, 160, 192)
    _parity(
        "hiera_base_16x224",
        torch.randn(1, 3, *size),
        official_kwargs=dict(input_size=size, stages=(1, 1, 2, 1)),
        ours_kwargs=dict(input_size=size, stages=(1, 1, 2, 1)),
        sharpen=True,
    )


def test_logits_match_official_probabilities():
    official = sharpen_(official_hiera("hiera_tiny_224"))
    ours = build_backbone("hiera_tiny_224", num_classes=1000).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        probs = official(x)  # eval mode: softmax
        logits = ours.forward_logits(x)
    assert_maps_close([logits.softmax(-1)], [probs])
    with torch.no_grad():
        raw = official.head.projection(official.norm(official(x, return_intermediates=True)[1][-1]
                                                     .flatten(1, 2).mean(1)))
    assert_maps_close([logits], [raw])


def test_mae_q_pool_2_matches_official():
    # The MAE encoder does not pool before the last stage; its stage-4 map stays 14x14.
    kwargs = dict(q_pool=2)
    official, ours = _parity(
        "hiera_tiny_224", torch.randn(1, 3, 224, 224), official_kwargs=kwargs,
        ours_kwargs=kwargs, sharpen=True,
    )
    assert ours.out_strides == [4, 8, 16, 16]


def test_pos_embed_resize_once_equals_on_the_fly():
    official = sharpen_(official_hiera("hiera_tiny_224"))
    at_224 = ours_from(official, "hiera_tiny_224")
    state = backbone_state(official)
    state["pos_embed"] = resize_pos_embed(state["pos_embed"], (56, 56), (128, 128))
    at_512 = build_backbone("hiera_tiny_224", input_size=(512, 512)).eval()
    at_512.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        on_the_fly, resized_once = at_224(x), at_512(x)
    for a, b in zip(on_the_fly, resized_once):
        assert torch.equal(a, b)
    # ... and the official model built at 512 with the resized embedding agrees too.
    official_512 = official_hiera("hiera_tiny_224", input_size=(512, 512))
    official_512.load_state_dict({**official.state_dict(), "pos_embed": state["pos_embed"]})
    assert_maps_close(on_the_fly, official_stage_maps(official_512, x))


def test_video_pos_embed_resize_rule():
    model = build_backbone("hiera_base_16x224", stages=(1, 1, 1, 1)).eval()
    grid = (4, 40, 48)
    pos = model._pos_embed(grid)
    spatial = torch.nn.functional.interpolate(
        model.pos_embed_spatial.reshape(1, 56, 56, -1).permute(0, 3, 1, 2), size=(40, 48),
        mode="bicubic", align_corners=False,
    ).flatten(2).transpose(1, 2)
    temporal = torch.nn.functional.interpolate(
        model.pos_embed_temporal.transpose(1, 2), size=4, mode="linear", align_corners=False
    ).transpose(1, 2)
    expected = spatial.repeat(1, 4, 1) + temporal.repeat_interleave(40 * 48, dim=1)
    # The same interpolations; only the broadcast-add order differs.
    assert_maps_close([pos], [expected])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["hiera_small_224", "hiera_large_224", "hiera_huge_224", "hiera_base_plus_16x224",
             "hiera_large_16x224"]
)
def test_parity_large_models(name):
    size = HIERA_CONFIGS[name]["input_size"]
    _parity(name, torch.randn(1, 3, *size))


@pytest.mark.slow
@pytest.mark.parametrize("size", [(512, 512), (1024, 1024), (800, 1344)])
def test_image_parity_detection_sizes(size):
    _parity("hiera_base_224", torch.randn(1, 3, *size), official_kwargs=dict(input_size=size),
            ours_kwargs=dict(input_size=size), sharpen=True)


class _LinspaceOnCpu(TorchFunctionMode):
    """The official constructor calls ``.item()`` on a linspace, impossible on the meta device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.linspace:
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(HIERA_CONFIGS))
def test_state_dict_keys_and_shapes_match_official(name):
    # Built on the meta device: all ten models, including Hiera-H, without allocating weights.
    with torch.device("meta"), _LinspaceOnCpu():
        official = official_hiera(name)
        ours = build_backbone(name)
    ref = {k: tuple(v.shape) for k, v in backbone_state(official).items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == ref
