"""HVT: official keys and geometry, 1D parity with an independent reference, dense and video
modes, conversion rules, errors and training features."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block as TimmBlock
from torch import nn

from hiera_backbones import build_backbone, list_models
from hiera_backbones.checkpoints import HVT_CHECKPOINT_URLS
from hiera_backbones.checkpoints.hvt_layouts import (
    hvt_1d_to_2d_state_dict,
    inflate_hvt_state_dict,
    resample_patch_kernel,
)
from hiera_backbones.models import SimpleFeaturePyramid, unpool_1d_tokens
from hiera_backbones.models.hvt import HVTBlock
from hiera_backbones.parity import assert_maps_close

VARIANTS = ("hvt_ti_1", "hvt_s_0", "hvt_s_1", "hvt_s_2", "hvt_s_3", "hvt_s_4", "scale_hvt_ti_4")
# hvt.md section 2.5: pooling block -> post-pool length of blocks.{p}.pos_embed, at 224/16.
STAGE_POS_EMBEDS = {
    "hvt_ti_1": {0: 97},
    "hvt_s_0": {},
    "hvt_s_1": {0: 97},
    "hvt_s_2": {0: 97, 6: 48},
    "hvt_s_3": {0: 97, 4: 48, 8: 23},
    "hvt_s_4": {0: 97, 3: 48, 6: 23, 9: 11},
    "scale_hvt_ti_4": {0: 97, 3: 48, 6: 23, 9: 11},
}
KEY_TOTALS = {
    "hvt_ti_1": 152, "hvt_s_0": 151, "hvt_s_1": 152, "hvt_s_2": 153, "hvt_s_3": 154,
    "hvt_s_4": 155, "scale_hvt_ti_4": 155,
}
# Small geometry for behaviour tests: 4 blocks, pooling after every block -> 5 stages.
TINY = dict(embed_dim=32, num_heads=2, depth=4, pool_block_width=1)


def official_keys(name: str) -> dict[str, tuple[int, ...]]:
    """The official checkpoint's keys and shapes (hvt.md section 2.5), written out by hand."""
    d = 192 if name == "hvt_ti_1" else 384
    keys = {
        "patch_embed.proj.weight": (d, 3, 16, 16),
        "patch_embed.proj.bias": (d,),
        "pos_embed": (1, 196, d),
        "norm.weight": (d,),
        "norm.bias": (d,),
        "head.weight": (1000, d),
        "head.bias": (1000,),
    }
    for i in range(12):
        for part, shape in (
            ("norm1.weight", (d,)), ("norm1.bias", (d,)),
            ("attn.qkv.weight", (3 * d, d)), ("attn.qkv.bias", (3 * d,)),
            ("attn.proj.weight", (d, d)), ("attn.proj.bias", (d,)),
            ("norm2.weight", (d,)), ("norm2.bias", (d,)),
            ("mlp.fc1.weight", (4 * d, d)), ("mlp.fc1.bias", (4 * d,)),
            ("mlp.fc2.weight", (d, 4 * d)), ("mlp.fc2.bias", (d,)),
        ):
            keys[f"blocks.{i}.{part}"] = shape
    for block, length in STAGE_POS_EMBEDS[name].items():
        keys[f"blocks.{block}.pos_embed"] = (1, length, d)
    return keys


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights with enough spread that attention is far from uniform and max-pooling picks
    different tokens per channel (random init would hide ordering mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "pos_embed" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * p[0].numel() ** -0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


# ---------------------------------------------------------------------- reference (independent)
class ReferenceHVT(nn.Module):
    """The official HVT forward written from scratch with timm ViT blocks and nn.MaxPool1d."""

    def __init__(self, dim, depth, heads, width, img=(224, 224), patch=16, num_classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (img[0] // patch) * (img[1] // patch)
        self.pos = nn.Parameter(torch.zeros(1, n, dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            TimmBlock(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm)
            for _ in range(depth)
        )
        self.pool = nn.MaxPool1d(3, stride=2)
        self.stage_pos = nn.ParameterDict()
        for i in range(depth):
            if width and i % width == 0:
                n = (n - 3) // 2 + 1
                self.stage_pos[str(i)] = nn.Parameter(torch.zeros(1, n, dim))
        self.norm = norm(dim)
        self.head = nn.Linear(dim, num_classes)

    def load_from(self, sd: dict[str, torch.Tensor]) -> None:
        mapped = {}
        for k, v in sd.items():
            if k.startswith("patch_embed.proj."):
                k = "patch." + k.split(".")[-1]
            elif k == "pos_embed":
                k = "pos"
            elif k.endswith(".pos_embed"):
                k = "stage_pos." + k.split(".")[1]
            mapped[k] = v
        self.load_state_dict(mapped, strict=True)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        taps = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if str(i) in self.stage_pos:
                taps.append(x.transpose(1, 2))
                x = self.pool(x.transpose(2, 1)).transpose(1, 2) + self.stage_pos[str(i)]
        taps.append(x.transpose(1, 2))
        feats = self.norm(x).mean(1)
        return taps, feats, self.head(feats)


# ---------------------------------------------------------------------- official keys
def test_registry_lists_every_variant():
    assert set(VARIANTS) <= set(list_models("*hvt*"))
    assert set(HVT_CHECKPOINT_URLS) == set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_official_keys_and_shapes(name):
    with torch.device("meta"):
        full = build_backbone(name, num_classes=1000)
        backbone = build_backbone(name)
    expected = official_keys(name)
    assert len(expected) == KEY_TOTALS[name]
    assert shapes(full) == expected
    assert shapes(backbone) == {
        k: v for k, v in expected.items() if not k.startswith(("norm.", "head."))
    }
    assert full.blocks[0].attn.heads == expected["pos_embed"][-1] // 64


@pytest.mark.parametrize("name", VARIANTS)
def test_token_counts_per_stage(name):
    with torch.device("meta"):
        model = build_backbone(name)
    counts = [196] + list(STAGE_POS_EMBEDS[name].values())
    assert model.stage_num_tokens == counts
    assert model.out_indices == tuple(range(len(counts)))
    assert model.stage_blocks == [*STAGE_POS_EMBEDS[name], 11]


def test_token_counts_at_other_sizes():
    with torch.device("meta"):
        assert build_backbone("hvt_s_4", input_size=(384, 384)).stage_num_tokens == [
            576, 287, 143, 71, 35
        ]
        assert build_backbone("hvt_s_4", input_size=(1024, 1024)).stage_num_tokens == [
            4096, 2047, 1023, 511, 255
        ]


def test_dense_keys_keep_official_names():
    with torch.device("meta"):
        model = build_backbone("hvt_s_2", pooling="2d")
        video = build_backbone("hvt_s_2", pooling="2d", video=True)
    assert shapes(model)["blocks.0.pos_embed"] == (1, 384, 7, 7)
    assert shapes(model)["blocks.6.pos_embed"] == (1, 384, 4, 4)
    assert shapes(model)["pos_embed"] == (1, 196, 384)
    assert set(shapes(video)) == set(shapes(model)) | {"pos_embed_temporal"}
    assert shapes(video)["patch_embed.proj.weight"] == (384, 3, 2, 16, 16)
    assert shapes(video)["pos_embed_temporal"] == (1, 8, 384)


# ---------------------------------------------------------------------- 1D pooling and parity
def test_1d_pooling_order_known_answer():
    blk = HVTBlock(4, 1, pool="1d", pos_embed_shape=(1, 3, 4))
    x = torch.stack(
        [torch.arange(7.0), -torch.arange(7.0), torch.tensor([0, 0, 0, 9, 0, 0, 0.0]),
         torch.tensor([5, 0, 0, 0, 0, 0, 1.0])],
        dim=-1,
    ).unsqueeze(0)  # (1, 7, 4)
    with torch.no_grad():
        blk.pos_embed.copy_(torch.tensor([0.0, 10.0, 20.0]).view(1, 3, 1))
    y, grid = blk.pool_tokens(x, (7,))
    assert grid == (3,)
    # Windows (0, 1, 2), (2, 3, 4), (4, 5, 6), plus 0 / 10 / 20 from the stage embedding.
    assert y[0].tolist() == [[2, 0, 0, 5], [14, 8, 19, 10], [26, 16, 20, 21]]


def test_1d_pooling_windows_straddle_rows():
    # A single hot patch at raster index t lands in pooled tokens j with 2j <= t <= 2j + 2.
    blk = HVTBlock(196, 1, pool="1d", pos_embed_shape=(1, 97, 196))
    with torch.no_grad():
        blk.pos_embed.zero_()
    y, _ = blk.pool_tokens(torch.eye(196).unsqueeze(0), (196,))
    hot = y[0].T  # (patch, token)
    for t in (0, 13, 14, 27, 194, 195):
        windows = [j for j in range(97) if 2 * j <= t <= 2 * j + 2]
        assert hot[t].nonzero().flatten().tolist() == windows


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        # Official geometry (12 blocks, 6 heads, 196 -> 97 -> 48 -> 23 -> 11), narrower for speed.
        ("hvt_s_4", dict(embed_dim=96), (224, 224)),
        ("hvt_s_1", dict(embed_dim=64, num_heads=2, depth=3), (224, 224)),
        ("hvt_s_0", dict(embed_dim=64, num_heads=2, depth=2), (64, 96)),
        ("hvt_s_4", dict(embed_dim=64, num_heads=4, depth=5, pool_block_width=2), (96, 160)),
    ],
)
def test_1d_parity_with_independent_reference(name, kwargs, size):
    model = build_backbone(name, input_size=size, num_classes=10, **kwargs).eval()
    randomize_(model)
    width = kwargs.get("pool_block_width", {"hvt_s_4": 3, "hvt_s_1": 12, "hvt_s_0": 0}[name])
    ref = ReferenceHVT(
        model.embed_dim, model.depth, model.blocks[0].attn.heads, width, img=size
    ).eval()
    ref.load_from(model.state_dict())
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        taps, feats, logits = ref(x)
        assert_maps_close([model.forward_logits(x), model.forward_features(x)], [logits, feats])
        outs = model(x)
    assert len(outs) == len(taps) == model.num_stages
    assert_maps_close(outs, taps)
    assert logits.std() > 0.1  # not a degenerate comparison


def test_unpool_1d_tokens_is_the_nearest_inverse():
    tokens = torch.arange(97.0).view(1, 1, 97)
    grid = unpool_1d_tokens(tokens, 1, (14, 14))
    assert grid.shape == (1, 1, 14, 14)
    assert grid[0, 0, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert grid[0, 0, 1, :2].tolist() == [7, 7]
    assert grid[0, 0, 13, 12:].tolist() == [96, 96]  # patch 195 is in no window: clamped


# ---------------------------------------------------------------------- dense (2D) mode
def test_2d_pooling_known_answer():
    blk = HVTBlock(1, 1, pool="2d", pos_embed_shape=(1, 1, 2, 2))
    with torch.no_grad():
        blk.pos_embed.zero_()
    y, grid = blk.pool_tokens(torch.arange(16.0).view(1, 16, 1), (4, 4))
    assert grid == (2, 2)
    assert y.flatten().tolist() == [5, 7, 13, 15]


@pytest.mark.parametrize("size", [(224, 224), (64, 64), (96, 160), (240, 112), (48, 400)])
def test_dense_maps_at_any_size(size):
    model = build_backbone("hvt_s_4", pooling="2d", **TINY).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert model.out_strides == [16, 32, 64, 128, 256]
    assert model.out_channels == [32] * 5
    for out, stride in zip(outs, model.out_strides):
        assert tuple(out.shape) == (1, 32, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert out.is_contiguous()


def test_dense_small_patch_gives_hiera_strides():
    model = build_backbone("hvt_s_4", pooling="2d", patch_size=4, out_indices=(0, 1, 2, 3), **TINY)
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 64, 96))
    assert model.out_strides == [4, 8, 16, 32]
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_resample_patch_kernel_is_exact_zoom_equivalence():
    big = build_backbone("hvt_s_4", pooling="2d", input_size=(256, 256), **TINY).eval()
    small = build_backbone(
        "hvt_s_4", pooling="2d", input_size=(64, 64), patch_size=4, **TINY
    ).eval()
    randomize_(big)
    sd = big.state_dict()
    sd["patch_embed.proj.weight"] = resample_patch_kernel(sd["patch_embed.proj.weight"], 4)
    small.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 64, 96)
    zoomed = F.interpolate(x, scale_factor=4, mode="nearest")
    with torch.no_grad():
        # The same sums in another order (a 4x4 conv of block sums vs a 16x16 conv).
        assert_maps_close(small(x), big(zoomed))
    w = torch.randn(5, 3, 16, 16)
    assert torch.allclose(resample_patch_kernel(w, 4)[..., 0, 0], w[..., :4, :4].sum((-2, -1)))
    assert torch.allclose(resample_patch_kernel(w, 32)[..., :2, :2], w[..., :1, :1] / 4)
    assert resample_patch_kernel(w, 16) is w


def test_1d_to_2d_gather_rule_known_answer():
    model = build_backbone("hvt_s_4", embed_dim=8, num_heads=2, depth=7)  # pools 0, 3, 6
    sd = randomize_(model).state_dict()
    out = hvt_1d_to_2d_state_dict(sd)
    pe1, pe2, pe3 = (sd[f"blocks.{i}.pos_embed"][0] for i in (0, 3, 6))
    assert tuple(out["blocks.0.pos_embed"].shape) == (1, 8, 7, 7)
    assert tuple(out["blocks.3.pos_embed"].shape) == (1, 8, 4, 4)
    assert tuple(out["blocks.6.pos_embed"].shape) == (1, 8, 2, 2)
    for r in range(7):
        for c in range(7):  # centre patch (2r, 2c) -> raster 28r + 2c -> 1D token 14r + c
            assert torch.equal(out["blocks.0.pos_embed"][0, :, r, c], pe1[14 * r + c])
    for r in range(4):
        for c in range(4):  # centre (4r, 4c) -> raster 56r + 4c -> token 14r + c
            assert torch.equal(out["blocks.3.pos_embed"][0, :, r, c], pe2[14 * r + c])
    # Stage 3 tokens are row bands: centre (8r, 8c) -> raster 112r + 8c -> token 14r + c
    assert torch.equal(out["blocks.6.pos_embed"][0, :, 1, 1], pe3[15])
    assert torch.equal(out["pos_embed"], sd["pos_embed"])
    zero = hvt_1d_to_2d_state_dict(sd, init="zero")
    assert not zero["blocks.3.pos_embed"].any()


@pytest.mark.parametrize("size, patch", [((224, 224), None), ((320, 480), None), ((224, 160), 8)])
def test_1d_checkpoint_loads_strictly_into_dense_model(size, patch):
    kwargs = dict(embed_dim=16, num_heads=2, depth=7)
    sd = build_backbone("hvt_s_4", num_classes=5, **kwargs).state_dict()
    dense = build_backbone(
        "hvt_s_4", pooling="2d", input_size=size, patch_size=patch or 16, num_classes=5, **kwargs
    )
    converted = hvt_1d_to_2d_state_dict(sd, size, patch_size=patch)
    dense.load_state_dict(converted, strict=True)
    # Re-targeting an already 2D state dict to its own size changes nothing.
    again = hvt_1d_to_2d_state_dict(converted, size, source_grid=dense.token_grid)
    assert all(torch.equal(again[k], converted[k]) for k in converted)
    with torch.no_grad():
        assert dense.eval().forward_logits(torch.randn(1, 3, 64, 96)).shape == (1, 5)


def test_neck_gives_p2_to_p6():
    model = build_backbone("hvt_s_4", pooling="2d", out_indices=(0, 1, 2), **TINY).eval()
    neck = SimpleFeaturePyramid(model.out_channels, model.out_strides, out_channels=16).eval()
    assert neck.sources == [0, 0, 0, 1, 2]
    with torch.no_grad():
        levels = neck(model(torch.randn(1, 3, 128, 192)))
    assert [tuple(p.shape) for p in levels] == [
        (1, 16, 32, 48), (1, 16, 16, 24), (1, 16, 8, 12), (1, 16, 4, 6), (1, 16, 2, 3)
    ]
    single = SimpleFeaturePyramid([32], [32], out_channels=16)  # ViTDet-style, one map
    with torch.no_grad():
        levels = single([torch.randn(1, 32, 4, 6)])
    assert [tuple(p.shape[2:]) for p in levels] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    with pytest.raises(ValueError, match="power of 2"):
        SimpleFeaturePyramid([32], [24])


# ---------------------------------------------------------------------- video
def test_video_shapes():
    model = build_backbone("hvt_s_4", pooling="2d", video=True, **TINY).eval()
    pooled_t = build_backbone(
        "hvt_s_4", pooling="2d", video=True, temporal_pool=True, **TINY
    ).eval()
    x = torch.randn(1, 3, 8, 96, 128)
    with torch.no_grad():
        assert [tuple(o.shape) for o in model(x)] == [
            (1, 32, 4, 6, 8), (1, 32, 4, 3, 4), (1, 32, 4, 2, 2), (1, 32, 4, 1, 1),
            (1, 32, 4, 1, 1),
        ]
        assert [tuple(o.shape[2:]) for o in pooled_t(x)] == [
            (4, 6, 8), (2, 3, 4), (1, 2, 2), (1, 1, 1), (1, 1, 1)
        ]


@pytest.mark.parametrize("temporal_pool", [False, True])
def test_static_video_through_inflated_model_equals_image_model(temporal_pool):
    image = randomize_(build_backbone("hvt_s_4", num_classes=3, **TINY)).eval()  # official 1D
    dense = build_backbone("hvt_s_4", pooling="2d", num_classes=3, **TINY).eval()
    dense.load_state_dict(hvt_1d_to_2d_state_dict(image.state_dict()), strict=True)
    video = build_backbone(
        "hvt_s_4", pooling="2d", video=True, input_size=(8, 224, 224), num_classes=3,
        temporal_pool=temporal_pool, **TINY,
    ).eval()
    video.load_state_dict(inflate_hvt_state_dict(image.state_dict(), (8, 224, 224)), strict=True)
    frame = torch.randn(1, 3, 64, 96)
    clip = frame.unsqueeze(2).expand(1, 3, 6, 64, 96).contiguous()
    with torch.no_grad():
        ref, outs = dense(frame), video(clip)
        # Attention over T' copies of each key and a Conv3d over repeated frames: the same
        # values summed in other orders, fp32 rounding only.
        assert_maps_close(outs, [r.unsqueeze(2).expand_as(o) for r, o in zip(ref, outs)])
        assert_maps_close([video.forward_logits(clip)], [dense.forward_logits(frame)])


def test_inflation_rule():
    sd = build_backbone("hvt_s_4", pooling="2d", **TINY).state_dict()
    out = inflate_hvt_state_dict(sd, (16, 224, 224), temporal_patch_size=2)
    w = out["patch_embed.proj.weight"]
    assert tuple(w.shape) == (32, 3, 2, 16, 16)
    assert torch.allclose(w.sum(2), sd["patch_embed.proj.weight"])
    assert torch.equal(w[:, :, 0], w[:, :, 1])
    assert tuple(out["pos_embed_temporal"].shape) == (1, 8, 32)
    assert not out["pos_embed_temporal"].any()
    with pytest.raises(ValueError, match="multiple of temporal_patch_size"):
        inflate_hvt_state_dict(sd, (15, 224, 224))


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, shape, message",
    [
        ({}, (1, 3, 256, 224), r"pooling='1d' takes only 224x224 inputs.*input_size=\(256, 224\)"),
        (dict(pooling="2d"), (1, 3, 230, 224), r"H=230 \(use 224 or 240\)"),
        (dict(pooling="2d"), (1, 3, 224, 8), r"W=8 \(use 16\)"),
        (dict(pooling="2d"), (1, 4, 224, 224), r"expected 3 input channels"),
        (dict(pooling="2d"), (1, 3, 2, 224, 224), r"expected a 4-D input"),
        (dict(pooling="2d", video=True), (1, 3, 7, 224, 224), r"T=7 \(use 6 or 8\)"),
        (dict(pooling="2d", video=True), (1, 3, 224, 224), r"expected a 5-D input \(N, C, T"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, shape, message):
    model = build_backbone("hvt_s_4", **{**TINY, **kwargs})
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_size=(230, 224)), r"input_size \(230, 224\) is not supported"),
        (dict(input_size=(32, 32)), r"too small"),
        (dict(input_size=(16, 224, 224)), r"must be \(H, W\)"),
        (dict(video=True), r"video=True needs pooling='2d'"),
        (dict(pooling="3d"), r"pooling='3d'"),
        (dict(out_indices=(5,)), r"out_indices"),
        (dict(out_indices=(2, 1)), r"out_indices"),
    ],
)
def test_bad_construction_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_backbone("hvt_s_4", **{**TINY, **kwargs})


def test_s1_default_out_indices_and_bound():
    with torch.device("meta"):
        assert build_backbone("hvt_s_1").out_indices == (0, 1)
        assert build_backbone("hvt_s_0").out_indices == (0,)
        with pytest.raises(ValueError, match=r"\[0, 2\)"):
            build_backbone("hvt_s_1", out_indices=(0, 1, 2, 3))


def test_forward_logits_needs_a_head():
    with pytest.raises(RuntimeError, match="num_classes"):
        build_backbone("hvt_s_4", **TINY).forward_logits(torch.zeros(1, 3, 224, 224))


# ---------------------------------------------------------------------- training features
def test_layer_ids_and_no_weight_decay():
    with torch.device("meta"):
        model = build_backbone("hvt_s_4", num_classes=1000, out_norm=True)
        video = build_backbone("hvt_s_4", pooling="2d", video=True)
    assert model.num_layers == 12
    assert model.get_layer_id("pos_embed") == 0
    assert model.get_layer_id("patch_embed.proj.weight") == 0
    assert model.get_layer_id("blocks.0.pos_embed") == 1
    assert model.get_layer_id("blocks.9.pos_embed") == 10
    assert model.get_layer_id("blocks.11.mlp.fc2.bias") == 12
    assert model.get_layer_id("head.weight") == 12
    assert model.get_layer_id("out_norms.4.weight") == 12
    assert {model.get_layer_id(n) for n, _ in model.named_parameters()} == set(range(13))
    assert model.no_weight_decay() == {
        "pos_embed", "blocks.0.pos_embed", "blocks.3.pos_embed", "blocks.6.pos_embed",
        "blocks.9.pos_embed",
    }
    assert video.get_layer_id("pos_embed_temporal") == 0
    assert "pos_embed_temporal" in video.no_weight_decay()


