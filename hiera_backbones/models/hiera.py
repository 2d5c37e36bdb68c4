"""Hiera (Ryali et al., ICML 2023) as a multi-scale image and video backbone.

Numerically this is the official model (``facebookresearch/hiera`` v0.1.4): same parameters and
state-dict keys, same block schedule, same mask-unit attention. What changes is the plumbing:

* **Any valid input size.** The official ``Unroll``/``Reroll`` fix the token grid at
  construction. Here unroll and reroll are single permutes derived from the actual input, and the
  learned position embedding is resized (bicubic over space, linear over time) when the input grid
  differs from the one it was trained on (``input_size``).
* **Stage maps out.** ``forward`` returns channels-first maps, ``(N, C, H, W)`` or
  ``(N, C, T, H, W)``, for the requested stages, optionally layer-normalized.
* **Fast attention.** See :mod:`hiera_backbones.models.layers`.

Token order. After patch embedding the ``(T, H, W)`` token grid is *unrolled*: each spatial side of
length ``m * 2**L`` (``L = num_stages - 1`` levels) is split into a coarse index ``m`` (the mask
unit) and ``L`` binary digits, and the sequence is ordered
``(coarse grid, digits of level 1, digits of level 2, ..., digits of level L)``: mask units are
contiguous, and inside a unit the finest digits are outermost. Then

* mask-unit attention splits the sequence into windows with a view, and
* a 2x2 max-pool is a max over the 4 outermost slabs inside every unit (level-1 digits),

so windowed attention and both poolings are reshapes, with no gathers or copies. The official
code orders the same digits with the coarse grid *innermost*; that is a permutation of the same
tokens, so every stage map is the same (see the parity tests), but its windows are strided and
its attention has to copy q, k and v into a 5-D layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from .base import StageBackbone
from .layers import Block
from .pos_embed import resize_grid_pos_embed, resize_pos_embed, resize_temporal_pos_embed
from .registry import register_model

__all__ = [
    "HIERA_CONFIGS",
    "Hiera",
    "hiera_tiny_224",
    "hiera_small_224",
    "hiera_base_224",
    "hiera_base_plus_224",
    "hiera_large_224",
    "hiera_huge_224",
    "hiera_base_16x224",
    "hiera_base_plus_16x224",
    "hiera_large_16x224",
    "hiera_huge_16x224",
    "HIERA_ABSWIN_CONFIGS",
    "hiera_small_abswin_256",
    "hiera_base_abswin_256",
]

_IMAGE = dict(
    input_size=(224, 224),
    q_stride=(2, 2),
    mask_unit_size=(8, 8),
    patch_kernel=(7, 7),
    patch_stride=(4, 4),
    patch_padding=(3, 3),
    sep_pos_embed=False,
)
_VIDEO = dict(
    input_size=(16, 224, 224),
    q_stride=(1, 2, 2),
    mask_unit_size=(1, 8, 8),
    patch_kernel=(3, 7, 7),
    patch_stride=(2, 4, 4),
    patch_padding=(1, 3, 3),
    sep_pos_embed=True,
)
_SIZES = {
    "tiny": dict(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2)),
    "small": dict(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2)),
    "base": dict(embed_dim=96, num_heads=1, stages=(2, 3, 16, 3)),
    "base_plus": dict(embed_dim=112, num_heads=2, stages=(2, 3, 16, 3)),
    "large": dict(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4)),
    "huge": dict(embed_dim=256, num_heads=4, stages=(2, 6, 36, 4)),
}
#: Constructor arguments of every official model, by official name.
HIERA_CONFIGS: dict[str, dict] = {
    **{f"hiera_{size}_224": {**_IMAGE, **cfg} for size, cfg in _SIZES.items()},
    **{
        f"hiera_{size}_16x224": {**_VIDEO, **_SIZES[size]}
        for size in ("base", "base_plus", "large", "huge")
    },
}

#: timm's abs-win Hiera (``hiera_*_abswin_256``; Bolya et al., "Window Attention is Bugged",
#: ICLR 2024): the image geometry at 256, a background position embedding on a
#: ``global_pos_size`` grid (interpolated to the token grid, antialiased bicubic) plus one
#: mask unit's embedding ``pos_embed_win`` tiled over the mask units, and LayerScale. The small
#: model doubles the width at transitions by max- and mean-pooling instead of ``proj``.
HIERA_ABSWIN_CONFIGS: dict[str, dict] = {
    "hiera_small_abswin_256": {
        **_IMAGE, **_SIZES["small"], "input_size": (256, 256), "abs_win": True,
        "global_pos_size": (16, 16), "layer_scale": True, "expand_proj": False,
    },
    "hiera_base_abswin_256": {
        **_IMAGE, **_SIZES["base"], "input_size": (256, 256), "abs_win": True,
        "global_pos_size": (14, 14), "layer_scale": True,
    },
}


_ARCH_DEFAULTS: dict[str, Any] = dict(
    in_chans=3,
    q_pool=3,
    mask_unit_attn=(True, True, False, False),
    dim_mul=2.0,
    head_mul=2.0,
    mlp_ratio=4.0,
    abs_win=False,
    global_pos_size=None,
    layer_scale=False,
    expand_proj=True,
)


def hiera_stage_geometry(config: Mapping[str, Any]) -> list[dict[str, int]]:
    """Channels and strides of every stage of a Hiera-family model (Hiera, abs-win Hiera, SAM 2's
    HieraDet): width times ``dim_mul`` per stage (rounded down each time, as the blocks are
    built), stride ``patch * q_stride**min(stage, q_pool)``."""
    dim, out = config["embed_dim"], []
    for stage in range(len(config["stages"])):
        if stage:
            dim = int(dim * config["dim_mul"])
        stride = config["patch_stride"][-1] * config["q_stride"][-1] ** min(
            stage, config["q_pool"]
        )
        out.append(dict(num_chs=dim, reduction=stride))
    return out


class Hiera(StageBackbone):
    """Hiera backbone returning multi-scale stage maps.

    Args:
        arch: a name of :data:`HIERA_CONFIGS` (``"hiera_base_224"``, ``"hiera_base_16x224"``,
            ...) or :data:`HIERA_ABSWIN_CONFIGS` (``"hiera_small_abswin_256"``) or a dict of
            architecture overrides with an optional ``base`` name, e.g.
            ``dict(base="hiera_base_16x224", embed_dim=32, stages=(1, 1, 2, 1))``. The result's
            truthful name is ``self.arch`` (a zoo name only if the architecture is that model's,
            else ``"<base>_custom"``); every architecture argument is in ``self.arch_config``.
        input_size ... sep_pos_embed: the official constructor's arguments; ``None`` takes the
            value from ``arch``. Explicit values override it.
        abs_win, global_pos_size, layer_scale, expand_proj: timm's abs-win variant (image
            only): ``pos_embed`` is a ``(1, C, *global_pos_size)`` background grid resized to
            the token grid (antialiased bicubic) plus ``pos_embed_win`` ``(1, C, *mask_unit)``
            tiled over the mask units, so no parameter depends on ``input_size``;
            ``layer_scale`` adds ``ls1`` / ``ls2`` (initialised to ``layer_scale_init``);
            ``expand_proj=False`` widens at transitions by max- and mean-pool side by side.
            Any input whose sides are multiples of ``size_multiple`` (32 for the zoo) runs.
        drop_path_rate: stochastic depth, linear over blocks.
        out_indices: stages ``forward`` returns (0-based); stages after the last one are not
            computed. :meth:`forward_intermediates` takes any stages.
        out_norm: apply a LayerNorm (``out_norms.<stage>``) to each returned map; the official
            intermediates are un-normalized, and detection necks usually want normalized ones.
        num_classes: if > 0, build the official ``norm`` + ``head.projection`` classifier, used by
            :meth:`forward_logits` (logits, no softmax).
        grad_checkpointing: recompute blocks in the backward pass to save memory.
        frozen_stages: freeze the patch embedding and position embedding (0) and also stages
            ``0 .. frozen_stages - 1`` (> 0): no gradients, kept in eval mode (OpenMMLab's
            ``frozen_stages``; -1 freezes nothing).
    """

    family = "Hiera"
    arch_defaults = _ARCH_DEFAULTS
    arch_keys = (
        "in_chans", "embed_dim", "num_heads", "stages", "q_pool", "q_stride", "mask_unit_size",
        "mask_unit_attn", "dim_mul", "head_mul", "patch_kernel", "patch_stride", "patch_padding",
        "mlp_ratio", "sep_pos_embed", "abs_win", "global_pos_size", "layer_scale", "expand_proj",
    )
    default_arch = "hiera_base_224"
    arch_zoo = {**HIERA_CONFIGS, **HIERA_ABSWIN_CONFIGS}

    def __init__(
        self,
        arch: str | Mapping[str, Any] = "hiera_base_224",
        *,
        input_size: Sequence[int] | None = None,
        in_chans: int | None = None,
        embed_dim: int | None = None,
        num_heads: int | None = None,
        stages: Sequence[int] | None = None,
        q_pool: int | None = None,
        q_stride: Sequence[int] | None = None,
        mask_unit_size: Sequence[int] | None = None,
        mask_unit_attn: Sequence[bool] | None = None,
        dim_mul: float | None = None,
        head_mul: float | None = None,
        patch_kernel: Sequence[int] | None = None,
        patch_stride: Sequence[int] | None = None,
        patch_padding: Sequence[int] | None = None,
        mlp_ratio: float | None = None,
        sep_pos_embed: bool | None = None,
        abs_win: bool | None = None,
        global_pos_size: Sequence[int] | None = None,
        layer_scale: bool | None = None,
        expand_proj: bool | None = None,
        layer_scale_init: float = 1e-5,
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_norm: bool = False,
        num_classes: int = 0,
        head_dropout: float = 0.0,
        grad_checkpointing: bool = False,
        frozen_stages: int = -1,
    ) -> None:
        super().__init__()
        name, cfg = self.resolve_arch(arch, dict(
            input_size=input_size, in_chans=in_chans, embed_dim=embed_dim, num_heads=num_heads,
            stages=stages, q_pool=q_pool, q_stride=q_stride, mask_unit_size=mask_unit_size,
            mask_unit_attn=mask_unit_attn, dim_mul=dim_mul, head_mul=head_mul,
            patch_kernel=patch_kernel, patch_stride=patch_stride, patch_padding=patch_padding,
            mlp_ratio=mlp_ratio, sep_pos_embed=sep_pos_embed, abs_win=abs_win,
            global_pos_size=global_pos_size, layer_scale=layer_scale, expand_proj=expand_proj,
        ))
        self.arch = arch = name
        self.arch_config = {k: v for k, v in cfg.items() if k != "input_size"}
        input_size, stages = cfg["input_size"], tuple(cfg["stages"])
        q_pool, q_stride = cfg["q_pool"], cfg["q_stride"]
        mask_unit_size, mask_unit_attn = cfg["mask_unit_size"], cfg["mask_unit_attn"]
        patch_kernel, patch_stride = cfg["patch_kernel"], cfg["patch_stride"]
        patch_padding = cfg["patch_padding"]
        embed_dim, num_heads = cfg["embed_dim"], cfg["num_heads"]
        dim_mul, head_mul, mlp_ratio = cfg["dim_mul"], cfg["head_mul"], cfg["mlp_ratio"]
        sep_pos_embed, in_chans = cfg["sep_pos_embed"], cfg["in_chans"]
        self.abs_win = bool(cfg["abs_win"])
        self.spatial_dims = len(patch_stride)
        if not (
            len(input_size) == len(q_stride) == len(mask_unit_size) == len(patch_kernel)
            == len(patch_padding) == self.spatial_dims
        ):
            kind = "(T, H, W)" if self.spatial_dims == 3 else "(H, W)"
            raise ValueError(
                f"{arch}: input_size={tuple(input_size)} must be {kind} like the other "
                f"geometry arguments"
            )
        num_stages = len(stages)
        if not 0 <= q_pool < num_stages:
            raise ValueError(f"q_pool={q_pool} must be in [0, {num_stages - 1}]")
        if len(mask_unit_attn) != num_stages:
            raise ValueError(f"mask_unit_attn needs {num_stages} entries, got {mask_unit_attn}")
        out_indices = self._checked_out_indices(out_indices, num_stages, arch)
        if self.abs_win and (self.spatial_dims != 2 or sep_pos_embed or not cfg["global_pos_size"]):
            raise ValueError(
                f"{arch}: abs_win=True is an image model option and needs global_pos_size "
                "(the background grid), without sep_pos_embed"
            )

        self.input_size = tuple(int(s) for s in input_size)
        self.patch_stride = tuple(patch_stride)
        self.q_stride = tuple(q_stride)
        self.q_pool = q_pool
        self.mask_unit_size = tuple(mask_unit_size)
        self.num_unroll_levels = num_stages - 1
        self.sep_pos_embed = sep_pos_embed
        self.out_indices = out_indices
        self.grad_checkpointing = grad_checkpointing
        # An input side must split into whole mask units and survive every unroll level.
        self.size_multiple = tuple(
            p * math.lcm(mu, q**self.num_unroll_levels)
            for p, mu, q in zip(self.patch_stride, self.mask_unit_size, self.q_stride)
        )
        self._check_size(self.input_size, what="input_size")
        self.tokens_spatial_shape = tuple(
            s // p for s, p in zip(self.input_size, self.patch_stride)
        )

        conv = {2: nn.Conv2d, 3: nn.Conv3d}[self.spatial_dims]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = conv(
            in_chans, embed_dim, patch_kernel, stride=patch_stride, padding=patch_padding
        )
        if sep_pos_embed:
            t, h, w = self.tokens_spatial_shape
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, embed_dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, embed_dim))
        elif self.abs_win:
            self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *cfg["global_pos_size"]))
            self.pos_embed_win = nn.Parameter(torch.zeros(1, embed_dim, *self.mask_unit_size))
        else:
            num_tokens = math.prod(self.tokens_spatial_shape)
            self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))

        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(num_stages)]
        q_pool_blocks = {end + 1 for end in self.stage_ends[:q_pool]}
        flat_q_stride = math.prod(self.q_stride)
        flat_mu_size = math.prod(self.mask_unit_size)
        depth = sum(stages)
        drop_path = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        self.blocks = nn.ModuleList()
        self.stage_channels: list[int] = []
        dim, cur_stage = embed_dim, 0
        for i in range(depth):
            dim_out = dim
            # A stage's first block still uses the previous stage's attention mode (official
            # "lag by 1 block": global attention only after pooling to the lower resolution).
            use_mask_unit_attn = bool(mask_unit_attn[cur_stage])
            if i - 1 in self.stage_ends:
                dim_out = int(dim * dim_mul)
                num_heads = int(num_heads * head_mul)
                cur_stage += 1
                if i in q_pool_blocks:
                    flat_mu_size //= flat_q_stride
            self.blocks.append(
                Block(
                    dim=dim,
                    dim_out=dim_out,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    drop_path=drop_path[i],
                    norm_layer=norm_layer,
                    q_stride=flat_q_stride if i in q_pool_blocks else 1,
                    window_size=flat_mu_size,
                    use_mask_unit_attn=use_mask_unit_attn,
                    layer_scale_init=layer_scale_init if cfg["layer_scale"] else None,
                    expand_proj=bool(cfg["expand_proj"]),
                )
            )
            dim = dim_out
            if i in self.stage_ends:
                self.stage_channels.append(dim)

        self.stage_blocks = self.stage_ends
        geometry = self._stage_geometry(cfg)
        assert [g["num_chs"] for g in geometry] == self.stage_channels
        self.stage_strides = [g["reduction"] for g in geometry]
        self.out_norms = (
            nn.ModuleDict({str(i): norm_layer(self.stage_channels[i]) for i in out_indices})
            if out_norm
            else None
        )
        self.num_classes = num_classes
        if num_classes > 0:
            self.norm = norm_layer(dim)
            self.head = nn.Module()
            self.head.dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
            self.head.projection = nn.Linear(dim, num_classes)
        self._init_weights()
        self._set_frozen_stages(frozen_stages)

    # ------------------------------------------------------------------ metadata
    @classmethod
    def _stage_geometry(cls, config: Mapping[str, Any]) -> list[dict[str, int]]:
        return hiera_stage_geometry(config)

    def no_weight_decay(self) -> set[str]:
        if self.sep_pos_embed:
            return {"pos_embed_spatial", "pos_embed_temporal"}
        return {"pos_embed", "pos_embed_win"} if self.abs_win else {"pos_embed"}

    def _init_weights(self) -> None:
        # Official init: trunc-normal(0.02) weights, Linear and LayerNorm biases 0.02. It only
        # matters for parameters a checkpoint does not provide.
        for p in (
            (self.pos_embed_spatial, self.pos_embed_temporal)
            if self.sep_pos_embed
            else (self.pos_embed, self.pos_embed_win) if self.abs_win else (self.pos_embed,)
        ):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.constant_(m.bias, 0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.bias, 0.02)
                nn.init.constant_(m.weight, 1.0)
        if self.num_classes > 0:
            self.head.projection.weight.data.mul_(0.001)
            self.head.projection.bias.data.mul_(0.001)

    # ------------------------------------------------------------------ geometry
    def _unroll(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last token grid ``(B, *grid, C)`` -> unrolled sequence ``(B, N, C)``."""
        batch, *grid, channels = x.shape
        levels, dims = self.num_unroll_levels, self.spatial_dims
        coarse = [g // q**levels for g, q in zip(grid, self.q_stride)]
        # Each side as (coarse, digit of level L, ..., digit of level 1).
        shape = [batch]
        for d in range(dims):
            shape += [coarse[d]] + [self.q_stride[d]] * levels
        x = x.reshape(*shape, channels)
        perm = [0] + [1 + d * (levels + 1) for d in range(dims)]  # mask units outermost
        for level in range(1, levels + 1):  # then the finest digits
            perm += [1 + d * (levels + 1) + 1 + (levels - level) for d in range(dims)]
        return x.permute(perm + [len(shape)]).reshape(batch, -1, channels)

    def _reroll(self, x: torch.Tensor, stage: int, grid: Sequence[int]) -> torch.Tensor:
        """Unrolled stage output ``(B, N, C)`` -> channels-first map ``(B, C, *stage_grid)``."""
        batch, _, channels = x.shape
        levels, dims = self.num_unroll_levels, self.spatial_dims
        remaining = levels - min(stage, self.q_pool)
        coarse = [g // q**levels for g, q in zip(grid, self.q_stride)]
        digits = [self.q_stride[d] for _ in range(remaining) for d in range(dims)]
        x = x.view(batch, *coarse, *digits, channels)
        perm = [0]
        for d in range(dims):
            perm.append(1 + d)
            perm += [1 + dims + j * dims + d for j in reversed(range(remaining))]
        out_grid = [c * q**remaining for c, q in zip(coarse, self.q_stride)]
        # Two cheap copies beat one: raster order moving whole channel rows, then one
        # (tokens, C) -> (C, tokens) transpose to contiguous NC(T)HW.
        x = x.permute(perm + [x.dim() - 1]).reshape(batch, -1, channels)
        return x.transpose(1, 2).reshape(batch, channels, *out_grid).contiguous()

    def _pos_embed(self, grid: Sequence[int]) -> torch.Tensor:
        """Raster-ordered ``(1, N, C)`` position embedding for a token grid."""
        if self.abs_win:
            # Background resized to the grid + one mask unit's embedding tiled over the units.
            units = [g // m for g, m in zip(grid, self.mask_unit_size)]
            pos = resize_grid_pos_embed(self.pos_embed, grid, antialias=True)
            pos = pos + self.pos_embed_win.tile(1, 1, *units).to(pos.dtype)
            return pos.flatten(2).transpose(1, 2)
        if not self.sep_pos_embed:
            return resize_pos_embed(self.pos_embed, self.tokens_spatial_shape[-2:], grid)
        t, h, w = grid
        spatial = resize_pos_embed(self.pos_embed_spatial, self.tokens_spatial_shape[1:], (h, w))
        temporal = resize_temporal_pos_embed(self.pos_embed_temporal, t)
        # Token order (t, y, x): spatial repeated over time + temporal repeated over space.
        return (temporal.unsqueeze(2) + spatial.unsqueeze(1)).flatten(1, 2)

    # ------------------------------------------------------------------ forward
    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        self._check_input(x)
        x = self.patch_embed.proj(x)
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        x = x + self._pos_embed(grid).to(x.dtype)
        x = x.view(x.shape[0], *grid, x.shape[-1])
        return self._unroll(x), grid

    def _forward_stages(
        self, x: torch.Tensor, stages: list[int], norm: bool, stop_early: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Channels-first maps ``(N, C_i, [T'], H / s_i, W / s_i)`` of ``stages``."""
        x, grid = self._embed(x)
        wanted = {self.stage_ends[i]: i for i in stages}
        last = max(wanted) if stop_early else len(self.blocks) - 1
        outs = []
        for i, blk in enumerate(self.blocks[: last + 1]):
            x = self._run_block(blk, x)
            if i in wanted:
                stage = wanted[i]
                outs.append(self._reroll(self._stage_norm(x, stage, norm), stage, grid))
        return x, outs

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits (official head without its eval-mode softmax)."""
        if self.num_classes <= 0:
            raise RuntimeError(f"{self.arch} was built without a head; pass num_classes > 0")
        x, grid = self._embed(x)
        for blk in self.blocks:
            x = self._run_block(blk, x)
        # Official order: mean-pool the tokens, then the final LayerNorm.
        x = self.norm(x.mean(dim=1))
        return self.head.projection(self.head.dropout(x))


# Explicit constructors, one per official model (build_backbone / list_models find them).


@register_model
def hiera_tiny_224(**kwargs: Any) -> Hiera:
    """Image Hiera-Tiny at 224 (blocks per stage (1, 2, 7, 2))."""
    return Hiera("hiera_tiny_224", **kwargs)


@register_model
def hiera_small_224(**kwargs: Any) -> Hiera:
    """Image Hiera-Small at 224 (blocks per stage (1, 2, 11, 2))."""
    return Hiera("hiera_small_224", **kwargs)


@register_model
def hiera_base_224(**kwargs: Any) -> Hiera:
    """Image Hiera-Base at 224 (blocks per stage (2, 3, 16, 3))."""
    return Hiera("hiera_base_224", **kwargs)


@register_model
def hiera_base_plus_224(**kwargs: Any) -> Hiera:
    """Image Hiera-Base+ at 224 (blocks per stage (2, 3, 16, 3), width 112)."""
    return Hiera("hiera_base_plus_224", **kwargs)


@register_model
def hiera_large_224(**kwargs: Any) -> Hiera:
    """Image Hiera-Large at 224 (blocks per stage (2, 6, 36, 4))."""
    return Hiera("hiera_large_224", **kwargs)


@register_model
def hiera_huge_224(**kwargs: Any) -> Hiera:
    """Image Hiera-Huge at 224 (blocks per stage (2, 6, 36, 4), width 256)."""
    return Hiera("hiera_huge_224", **kwargs)


@register_model
def hiera_base_16x224(**kwargs: Any) -> Hiera:
    """Video Hiera-Base, 16 frames at 224."""
    return Hiera("hiera_base_16x224", **kwargs)


@register_model
def hiera_base_plus_16x224(**kwargs: Any) -> Hiera:
    """Video Hiera-Base+, 16 frames at 224."""
    return Hiera("hiera_base_plus_16x224", **kwargs)


@register_model
def hiera_large_16x224(**kwargs: Any) -> Hiera:
    """Video Hiera-Large, 16 frames at 224."""
    return Hiera("hiera_large_16x224", **kwargs)


@register_model
def hiera_huge_16x224(**kwargs: Any) -> Hiera:
    """Video Hiera-Huge, 16 frames at 224."""
    return Hiera("hiera_huge_16x224", **kwargs)


@register_model
def hiera_small_abswin_256(**kwargs: Any) -> Hiera:
    """timm's abs-win Hiera-Small at 256 (LayerScale, max+mean-pool transitions, 16x16
    background position embedding)."""
    return Hiera("hiera_small_abswin_256", **kwargs)


@register_model
def hiera_base_abswin_256(**kwargs: Any) -> Hiera:
    """timm's abs-win Hiera-Base at 256 (LayerScale, 14x14 background position embedding)."""
    return Hiera("hiera_base_abswin_256", **kwargs)
