"""Behaviour of the Hiera backbone beyond parity: sizes, errors, options, training features."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hiera_backbones import build_backbone, list_models

TINY = dict(stages=(1, 1, 2, 1))  # fast geometry for behaviour tests


def test_registry_lists_every_official_model():
    expected = {f"hiera_{s}_224" for s in ("tiny", "small", "base", "base_plus", "large", "huge")}
    expected |= {f"hiera_{s}_16x224" for s in ("base", "base_plus", "large", "huge")}
    assert expected <= set(list_models("hiera_*"))


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="hiera_base_224"):
        build_backbone("hiera_bse_224")


@pytest.mark.parametrize("size", [(224, 224), (320, 480), (96, 1024)])
def test_image_shapes_at_any_valid_size(size):
    model = build_backbone("hiera_base_plus_224", **TINY).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert model.out_channels == [112, 224, 448, 896]
    assert model.out_strides == [4, 8, 16, 32]
    for out, channels, stride in zip(outs, model.out_channels, model.out_strides):
        assert tuple(out.shape) == (2, channels, size[0] // stride, size[1] // stride)
        assert out.is_contiguous()


def test_video_shapes():
    model = build_backbone("hiera_base_16x224", **TINY).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 8, 128, 160))
    assert [tuple(o.shape) for o in outs] == [
        (1, 96, 4, 32, 40), (1, 192, 4, 16, 20), (1, 384, 4, 8, 10), (1, 768, 4, 4, 5)
    ]


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 225, 224), r"H=225 \(use 224 or 256\)"),
        ((1, 3, 224, 200), r"W=200 \(use 192 or 224\)"),
        ((1, 3, 16, 16), r"multiple of 32"),
        ((1, 4, 224, 224), r"expected 3 input channels"),
        ((1, 3, 2, 224, 224), r"expected a 4-D input"),
    ],
)
def test_bad_image_inputs_raise_clear_errors(shape, message):
    model = build_backbone("hiera_tiny_224", **TINY)
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 15, 224, 224), r"T=15 \(use 14 or 16\)"),
        ((1, 3, 16, 224, 100), r"W=100"),
        ((1, 3, 224, 224), r"expected a 5-D input \(N, C, T, H, W\)"),
    ],
)
def test_bad_video_inputs_raise_clear_errors(shape, message):
    model = build_backbone("hiera_base_16x224", **TINY)
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_size=(230, 224)), r"input_size \(230, 224\) is not supported"),
        (dict(input_size=(224, 224, 3)), r"must be \(H, W\)"),
        (dict(out_indices=(3, 1)), r"out_indices"),
        (dict(out_indices=(4,)), r"out_indices"),
    ],
)
def test_bad_construction_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_backbone("hiera_tiny_224", **kwargs)


def test_layer_ids_follow_official_training_code():
    model = build_backbone("hiera_base_224")
    assert model.num_layers == 24
    assert model.get_layer_id("pos_embed") == 0
    assert model.get_layer_id("patch_embed.proj.weight") == 0
    assert model.get_layer_id("blocks.0.attn.qkv.weight") == 1
    assert model.get_layer_id("blocks.23.mlp.fc2.bias") == 24
    assert model.get_layer_id("out_norms.3.weight") == 24
    assert {model.get_layer_id(n) for n, _ in model.named_parameters()} == set(range(25))
    assert model.no_weight_decay() == {"pos_embed"}


def test_import_pulls_in_no_training_framework():
    code = (
        "import sys, torch; from hiera_backbones import build_backbone;"
        "m = build_backbone('hiera_tiny_224', stages=(1,1,1,1)); m(torch.zeros(1,3,64,64));"
        "bad = [n for n in ('detectron2','mmdet','mmengine','mmcv','mmaction','hiera')"
        " if n in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
