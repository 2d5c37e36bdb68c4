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
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .base import StageBackbone
from .layers import Block
from .registry import register_model

__all__ = [
    "Hiera",
    "is_static_size",
    "resize_pos_embed",
    "resize_temporal_pos_embed",
    "HIERA_CONFIGS",
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


def is_static_size(size: Sequence[int | torch.SymInt]) -> bool:
    """False while ``torch.export`` traces with dynamic sizes. Resizers then always interpolate
    instead of comparing sizes, which would pin the traced program to the compared size; a
    bicubic/linear resize to the same size is exactly the identity (weights 1 and 0)."""
    return all(isinstance(s, int) for s in size)


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]
) -> torch.Tensor:
    """Resizes a raster-ordered ``(1, H*W, C)`` position embedding from ``old_grid`` (H, W) to
    ``new_grid`` with bicubic interpolation (``align_corners=False``, no antialiasing), computed in
    float32 and returned in the input dtype. The same rule is applied on the fly by :class:`Hiera`
    and by the checkpoint converters, so resizing once and resizing per call agree exactly."""
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if is_static_size(new_grid) and old_grid == new_grid:
        return pos_embed
    if pos_embed.shape[1] != math.prod(old_grid):
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} tokens, expected {math.prod(old_grid)} for a "
            f"{old_grid[0]}x{old_grid[1]} grid"
        )
    channels = pos_embed.shape[-1]
    grid = pos_embed.float().reshape(1, *old_grid, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, channels).to(pos_embed.dtype)


def resize_temporal_pos_embed(pos_embed: torch.Tensor, new_length: int) -> torch.Tensor:
    """Resizes a ``(1, T, C)`` temporal position embedding to ``new_length`` with linear
    interpolation (``align_corners=False``), in float32, returned in the input dtype."""
    if is_static_size((new_length,)) and pos_embed.shape[1] == new_length:
        return pos_embed
    seq = pos_embed.float().transpose(1, 2)
    seq = F.interpolate(seq, size=new_length, mode="linear", align_corners=False)
    return seq.transpose(1, 2).to(pos_embed.dtype)


class Hiera(StageBackbone):
    """Hiera backbone returning multi-scale stage maps.

    Args mirror the official constructor (``input_size`` ... ``sep_pos_embed``), plus:
        out_indices: stages to return (0-based); stages after the last one are not computed.
        out_norm: apply a LayerNorm (``out_norms.<stage>``) to each returned map; the official
            intermediates are un-normalized, and detection necks usually want normalized ones.
        num_classes: if > 0, build the official ``norm`` + ``head.projection`` classifier, used by
            :meth:`forward_logits` (logits, no softmax).
        grad_checkpointing: recompute blocks in the backward pass to save memory.
        arch: a name recorded on the module (set by the registry).
    """

    def __init__(
        self,
        input_size: Sequence[int] = (224, 224),
        in_chans: int = 3,
        embed_dim: int = 96,
        num_heads: int = 1,
        stages: Sequence[int] = (2, 3, 16, 3),
        q_pool: int = 3,
        q_stride: Sequence[int] = (2, 2),
        mask_unit_size: Sequence[int] = (8, 8),
        mask_unit_attn: Sequence[bool] = (True, True, False, False),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        patch_kernel: Sequence[int] = (7, 7),
        patch_stride: Sequence[int] = (4, 4),
        patch_padding: Sequence[int] = (3, 3),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        sep_pos_embed: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_norm: bool = False,
        num_classes: int = 0,
        head_dropout: float = 0.0,
        grad_checkpointing: bool = False,
        arch: str = "hiera",
    ) -> None:
        super().__init__()
        self.arch = arch
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
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or sorted(set(out_indices)) != list(out_indices) or not all(
            0 <= i < num_stages for i in out_indices
        ):
            raise ValueError(
                f"out_indices={out_indices} must be increasing stage indices in [0, {num_stages})"
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
                )
            )
            dim = dim_out
            if i in self.stage_ends:
                self.stage_channels.append(dim)

        self.stage_blocks = self.stage_ends
        self.stage_strides = [
            self.patch_stride[-1] * self.q_stride[-1] ** min(i, q_pool) for i in range(num_stages)
        ]
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

    # ------------------------------------------------------------------ metadata
    def no_weight_decay(self) -> set[str]:
        if self.sep_pos_embed:
            return {"pos_embed_spatial", "pos_embed_temporal"}
        return {"pos_embed"}

    def _init_weights(self) -> None:
        # Official init: trunc-normal(0.02) weights, Linear and LayerNorm biases 0.02. It only
        # matters for parameters a checkpoint does not provide.
        for p in (
            (self.pos_embed_spatial, self.pos_embed_temporal)
            if self.sep_pos_embed
            else (self.pos_embed,)
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

    def _run_blocks(self, x: torch.Tensor, last_block: int, grid, collect: bool):
        outs = []
        wanted = {self.stage_ends[i]: i for i in self.out_indices} if collect else {}
        for i, blk in enumerate(self.blocks[: last_block + 1]):
            x = self._run_block(blk, x)
            if i in wanted:
                stage = wanted[i]
                y = self.out_norms[str(stage)](x) if self.out_norms is not None else x
                outs.append(self._reroll(y, stage, grid))
        return x, outs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Returns channels-first maps ``(N, C_i, [T'], H / s_i, W / s_i)`` for ``out_indices``."""
        x, grid = self._embed(x)
        _, outs = self._run_blocks(x, self.stage_ends[self.out_indices[-1]], grid, collect=True)
        return tuple(outs)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits (official head without its eval-mode softmax)."""
        if self.num_classes <= 0:
            raise RuntimeError(f"{self.arch} was built without a head; pass num_classes > 0")
        x, grid = self._embed(x)
        x, _ = self._run_blocks(x, len(self.blocks) - 1, grid, collect=False)
        # Official order: mean-pool the tokens, then the final LayerNorm.
        x = self.norm(x.mean(dim=1))
        return self.head.projection(self.head.dropout(x))


def _make(name: str):
    def constructor(**kwargs) -> Hiera:
        return Hiera(**{**HIERA_CONFIGS[name], "arch": name, **kwargs})

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = f"Official ``{name}`` geometry ({HIERA_CONFIGS[name]['stages']} blocks)."
    return register_model(constructor)


for _name in HIERA_CONFIGS:
    globals()[_name] = _make(_name)
__all__ += list(HIERA_CONFIGS)
