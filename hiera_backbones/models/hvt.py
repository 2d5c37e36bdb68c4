"""HVT (Pan et al., ICCV 2021, "Scalable Vision Transformers with Hierarchical Pooling").

The official model (``zhuang-group/HVT`` ``models.py``) is a DeiT without a class token in which
block ``i`` max-pools the token sequence after its MLP whenever ``i % pool_block_width == 0``
(block 0 included) and then adds a new, learned position embedding ``blocks.{i}.pos_embed``. The
readout is ``head(norm(x).mean(1))``. Parameters and state-dict keys here are the official ones,
so the released checkpoints (``checkpoint['model']``) load strictly. The transformer block is the
one shared with Hiera (:class:`hiera_backbones.models.layers.Block`).

Three pooling modes (``pooling=`` / ``video=`` constructor arguments):

``pooling="1d"`` (default, as published)
    ``MaxPool1d(3, stride=2)`` over the raster token sequence: 196 -> 97 -> 48 -> 23 -> 11 tokens
    at 224. The stage position embeddings have fixed lengths, so the model only takes the input
    size it was built for (``input_size``; other sizes raise a ``ValueError``). 1D pooling does not
    keep a 2D grid (a pooled token straddles rows), so stages are returned honestly as token
    sequences ``(N, C, L)``. :func:`unpool_1d_tokens` gives the nearest-neighbour inverse of the
    pooling as an ``(N, C, H, W)`` map when one is needed anyway.

``pooling="2d"`` (dense prediction)
    Tokens stay on their ``(h, w)`` grid and each pool is ``MaxPool2d(3, stride=2, padding=1)``, so
    stage ``k`` is a true ``(N, C, ceil(H / s), ceil(W / s))`` map with ``s = patch * 2**k``. Any
    input whose sides are multiples of the patch size runs: the input position embedding
    ``(1, h*w, C)`` and the stage embeddings, stored as grids ``blocks.{i}.pos_embed`` of shape
    ``(1, C, h_k, w_k)``, are resized bicubically on the fly. Note that each 2D pool keeps 1/4 of
    the tokens where the 1D pool keeps 1/2, so compute differs from the paper.
    :func:`~hiera_backbones.checkpoints.hvt_layouts.hvt_1d_to_2d_state_dict` converts released
    (1D) checkpoints.

``pooling="2d", video=True`` (MMAction2)
    Space-time tokens from a ``(2, p, p)`` patch embedding, input position embedding split into
    ``pos_embed`` (spatial, as in the image model) and ``pos_embed_temporal`` ``(1, T', C)``. Pools
    are spatial ``(1, 3, 3)`` or, with ``temporal_pool=True``, ``(3, 3, 3)`` with stride 2 in time
    too; stage embeddings are spatial grids broadcast over time. Stages are ``(N, C, T', H', W')``.
    :func:`~hiera_backbones.checkpoints.hvt_layouts.inflate_hvt_state_dict` initializes it from
    image weights.

Stages. A model with ``n`` pooling blocks ``p_0 < ... < p_{n-1}`` has ``n + 1`` stages: stage
``k < n`` is the output of block ``p_k`` *before* its pool (all blocks since the previous pool ran
at this resolution), and stage ``n`` is the output of the last block. Stage 0 is therefore the
stride-16 output of block 0 alone (every official variant pools right after block 0), which is
shallow; necks should prefer deeper stages (see :class:`~hiera_backbones.models.necks.
SimpleFeaturePyramid`). HVT-S-0 (no pooling) has one stage, the last block.

Converting released (1D) weights to the 2D and video layouts, and patch-kernel resampling, are
checkpoint concerns: :mod:`hiera_backbones.checkpoints.hvt_layouts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import StageBackbone
from .layers import Block
from .pos_embed import resize_grid_pos_embed, resize_pos_embed, resize_temporal_pos_embed
from .registry import register_model

__all__ = [
    "HVT",
    "HVTBlock",
    "HVT_CONFIGS",
    "halve_side",
    "hvt_pool_blocks",
    "hvt_pooled_length",
    "unpool_1d_tokens",
    "hvt_ti_1",
    "hvt_s_0",
    "hvt_s_1",
    "hvt_s_2",
    "hvt_s_3",
    "hvt_s_4",
    "scale_hvt_ti_4",
]

_SMALL = dict(embed_dim=384, num_heads=6)
_ARCH_DEFAULTS: dict[str, Any] = dict(in_chans=3, depth=12, mlp_ratio=4.0)
#: Architecture of every official variant (all: depth 12, patch 16, MLP ratio 4, 224).
HVT_CONFIGS: dict[str, dict] = {
    "hvt_ti_1": dict(embed_dim=192, num_heads=3, pool_block_width=12),
    "hvt_s_0": dict(**_SMALL, pool_block_width=0),
    "hvt_s_1": dict(**_SMALL, pool_block_width=12),
    "hvt_s_2": dict(**_SMALL, pool_block_width=6),
    "hvt_s_3": dict(**_SMALL, pool_block_width=4),
    "hvt_s_4": dict(**_SMALL, pool_block_width=3),
    # Scale HVT-Ti-4 is HVT-S-4 (README links the same file for both rows).
    "scale_hvt_ti_4": dict(**_SMALL, pool_block_width=3),
}

# ---------------------------------------------------------------------- geometry helpers
def hvt_pool_blocks(depth: int, pool_block_width: int) -> list[int]:
    """Indices of the pooling blocks: ``i % pool_block_width == 0`` (official rule, block 0
    included); ``pool_block_width <= 0`` means no pooling (HVT-S-0)."""
    if pool_block_width <= 0:
        return []
    return [i for i in range(depth) if i % pool_block_width == 0]


def hvt_pooled_length(length: int, kernel_size: int = 3) -> int:
    """Sequence length after the official ``MaxPool1d(kernel_size, stride=2)`` (no padding)."""
    return (length - kernel_size) // 2 + 1


def halve_side(side: int, levels: int) -> int:
    """A side after ``levels`` 2D pools (odd kernel, stride 2, "same" padding)."""
    # MaxPool(k odd, stride 2, padding k // 2) maps s -> ceil(s / 2); repeated: ceil(s / 2**n).
    return -(-side // 2**levels)


def unpool_1d_tokens(tokens: torch.Tensor, num_pools: int, grid: Sequence[int]) -> torch.Tensor:
    """Places a 1D-pooled sequence back on the patch grid (nearest-neighbour inverse of
    ``num_pools`` official 1D pools; "Option C" of the design notes).

    Args:
        tokens: ``(N, C, L)`` stage output of a ``pooling="1d"`` model.
        num_pools: how many 1D pools produced it (the stage index for stages before the last).
        grid: the ``(h, w)`` patch grid of the input.

    Returns:
        ``(N, C, h, w)``: patch ``t`` (raster order) gets token ``min(t >> num_pools, L - 1)``,
        whose pooling window contains ``t``.
    """
    h, w = (int(g) for g in grid)
    index = torch.arange(h * w, device=tokens.device) >> num_pools
    index = index.clamp_(max=tokens.shape[-1] - 1)
    return tokens[..., index].reshape(*tokens.shape[:-1], h, w)


# ---------------------------------------------------------------------- modules
class HVTBlock(Block):
    """The shared pre-norm block plus HVT's optional pooling and post-pool position embedding.

    ``forward`` is the transformer block; :meth:`pool_tokens` is the pooling step that the
    official block runs at its end, kept separate so the pre-pool output can be tapped.

    Args:
        pool: ``None``, ``"1d"`` (official ``MaxPool1d``), ``"2d"`` (grid) or ``"3d"`` (video).
        pos_embed_shape: shape of ``pos_embed``: ``(1, L, C)`` for 1D, ``(1, C, h, w)`` otherwise.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        pool: str | None = None,
        pos_embed_shape: Sequence[int] | None = None,
        pool_kernel_size: int = 3,
        temporal_pool: bool = False,
    ) -> None:
        super().__init__(
            dim, dim, num_heads, mlp_ratio=mlp_ratio, drop_path=drop_path,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), qkv_bias=True,
        )
        self.pool = pool
        self.pool_kernel_size = pool_kernel_size
        self.temporal_pool = temporal_pool
        if pool is not None:
            self.pos_embed = nn.Parameter(torch.zeros(*pos_embed_shape))

    def pool_tokens(
        self, x: torch.Tensor, grid: Sequence[int]
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """``(B, L, C)`` tokens on ``grid`` -> pooled tokens + position embedding, new grid."""
        if self.pool is None:
            return x, tuple(grid)
        k = self.pool_kernel_size
        y = x.transpose(1, 2)
        if self.pool == "1d":
            y = F.max_pool1d(y, k, stride=2)
            y = y.transpose(1, 2) + self.pos_embed.to(y.dtype)
            return y.contiguous(), (y.shape[1],)
        y = y.reshape(x.shape[0], x.shape[2], *grid)
        if self.pool == "2d":
            y = F.max_pool2d(y, k, stride=2, padding=k // 2)
            pe = resize_grid_pos_embed(self.pos_embed, y.shape[-2:])
        else:
            kt, st, pt = (k, 2, k // 2) if self.temporal_pool else (1, 1, 0)
            y = F.max_pool3d(y, (kt, k, k), stride=(st, 2, 2), padding=(pt, k // 2, k // 2))
            pe = resize_grid_pos_embed(self.pos_embed, y.shape[-2:]).unsqueeze(2)
        new_grid = tuple(y.shape[2:])
        y = (y + pe.to(y.dtype)).flatten(2).transpose(1, 2)
        return y.contiguous(), new_grid


class HVT(StageBackbone):
    """HVT backbone returning its stage outputs (see the module docstring for modes/stages).

    Args:
        arch: a name of :data:`HVT_CONFIGS` (``"hvt_s_4"``, ...) or a dict of architecture
            overrides with an optional ``base`` name (e.g. ``dict(base="hvt_s_4", depth=4)``);
            ``self.arch`` is the truthful name (``"<base>_custom"`` unless the architecture is a
            zoo entry's), ``self.arch_config`` the resolved architecture.
        input_size: ``(H, W)``, or ``(T, H, W)`` with ``video=True``, that the position
            embeddings are defined on (default 224, 16 frames). ``pooling="1d"`` runs only here.
        patch_size: spatial patch size (official 16; 8 or 4 for finer strides).
        in_chans, embed_dim, depth, num_heads, mlp_ratio, pool_block_width: the official
            architecture (``None``: from ``arch``); pool after block ``i`` when
            ``i % pool_block_width == 0``, 0 = never.
        pool_kernel_size: max-pool kernel (official 3; odd in 2D mode).
        pooling: ``"1d"`` (official) or ``"2d"`` (grid pooling, dense maps).
        video: space-time input ``(N, C, T, H, W)``; needs ``pooling="2d"``.
        temporal_patch_size: frames per token in video mode.
        temporal_pool: also halve time at every pool in video mode.
        drop_path_rate: stochastic depth, linear over blocks.
        out_indices: stages ``forward`` returns, 0-based (default: all); later blocks are not run.
        out_norm: LayerNorm (``out_norms.<stage>``) on each returned stage.
        num_classes: if > 0, build the official ``norm`` + ``head`` for :meth:`forward_logits`.
        grad_checkpointing: recompute blocks in the backward pass.
        frozen_stages: freeze the patch embedding and position embedding (0) and also stages
            ``0 .. frozen_stages - 1`` (> 0): no gradients, kept in eval mode (OpenMMLab's
            ``frozen_stages``; -1 freezes nothing).
    """

    family = "HVT"
    arch_zoo = HVT_CONFIGS
    arch_defaults = _ARCH_DEFAULTS
    arch_keys = ("in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "pool_block_width")
    default_arch = "hvt_s_4"

    def __init__(
        self,
        arch: str | Mapping[str, Any] = "hvt_s_4",
        *,
        input_size: Sequence[int] | None = None,
        patch_size: int = 16,
        in_chans: int | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float | None = None,
        pool_block_width: int | None = None,
        pool_kernel_size: int = 3,
        pooling: str = "1d",
        video: bool = False,
        temporal_patch_size: int = 2,
        temporal_pool: bool = False,
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] | None = None,
        out_norm: bool = False,
        num_classes: int = 0,
        grad_checkpointing: bool = False,
        frozen_stages: int = -1,
    ) -> None:
        super().__init__()
        name, cfg = self.resolve_arch(arch, dict(
            in_chans=in_chans, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, pool_block_width=pool_block_width,
        ))
        self.arch = arch = name
        self.arch_config = cfg
        in_chans, embed_dim, depth = cfg["in_chans"], cfg["embed_dim"], cfg["depth"]
        num_heads, mlp_ratio = cfg["num_heads"], cfg["mlp_ratio"]
        pool_block_width = cfg["pool_block_width"]
        if pooling not in ("1d", "2d"):
            raise ValueError(f"{arch}: pooling={pooling!r}; use '1d' (official) or '2d' (dense)")
        if video and pooling != "2d":
            raise ValueError(f"{arch}: video=True needs pooling='2d'")
        if pooling == "2d" and pool_kernel_size % 2 == 0:
            raise ValueError(f"{arch}: pooling='2d' needs an odd pool_kernel_size")
        self.pooling = pooling
        self.video = video
        self.spatial_dims = 3 if video else 2
        if input_size is None:
            input_size = (16, 224, 224) if video else (224, 224)
        if len(input_size) != self.spatial_dims:
            kind = "(T, H, W)" if video else "(H, W)"
            raise ValueError(f"{arch}: input_size={tuple(input_size)} must be {kind}")
        self.input_size = tuple(int(s) for s in input_size)
        self.patch_size = int(patch_size)
        self.patch_stride = ((temporal_patch_size,) if video else ()) + (patch_size, patch_size)
        self.size_multiple = self.patch_stride
        self._check_size(self.input_size, "input_size")
        self.token_grid = tuple(s // p for s, p in zip(self.input_size, self.patch_stride))
        self.temporal_pool = temporal_pool
        self.depth = depth
        self.embed_dim = embed_dim
        self.pool_block_width = pool_block_width
        self.pool_blocks = hvt_pool_blocks(depth, pool_block_width)
        num_stages = len(self.pool_blocks) + 1
        self.grad_checkpointing = grad_checkpointing

        # Per-stage geometry at input_size: token counts (1D) or grids (2D).
        h, w = self.token_grid[-2:]
        if pooling == "1d":
            lengths = [h * w]
            for _ in self.pool_blocks:
                if lengths[-1] < pool_kernel_size:
                    raise ValueError(
                        f"{arch}: input_size={self.input_size} is too small: {lengths[-1]} "
                        f"tokens cannot be pooled with kernel {pool_kernel_size} "
                        f"(token lengths {lengths}); use a larger input_size"
                    )
                lengths.append(hvt_pooled_length(lengths[-1], pool_kernel_size))
            self.stage_grids = [(n,) for n in lengths]
        else:
            t = self.token_grid[0] if video else None
            self.stage_grids = []
            for k in range(num_stages):
                g = (halve_side(h, k), halve_side(w, k))
                if video:
                    g = (halve_side(t, k) if temporal_pool else t, *g)
                self.stage_grids.append(g)
        geometry = self._stage_geometry({**cfg, "patch_size": patch_size})
        self.stage_strides = [g["reduction"] for g in geometry]
        self.stage_channels = [g["num_chs"] for g in geometry]
        # Stage k < n: block p_k before its pool; stage n: the last block.
        self.stage_blocks = [*self.pool_blocks, depth - 1]
        if out_indices is None:
            out_indices = tuple(range(num_stages))
        self.out_indices = self._checked_out_indices(out_indices, num_stages, arch)

        conv = nn.Conv3d if video else nn.Conv2d
        self.patch_embed = nn.Module()
        self.patch_embed.proj = conv(
            in_chans, embed_dim, self.patch_stride, stride=self.patch_stride
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, h * w, embed_dim))
        if video:
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, self.token_grid[0], embed_dim))

        drop_path = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        pool_kind = "1d" if pooling == "1d" else ("3d" if video else "2d")
        self.blocks = nn.ModuleList()
        for i in range(depth):
            pe_shape = None
            if i in self.pool_blocks:
                g = self.stage_grids[self.pool_blocks.index(i) + 1]
                pe_shape = (1, g[0], embed_dim) if pooling == "1d" else (1, embed_dim, *g[-2:])
            self.blocks.append(
                HVTBlock(
                    embed_dim, num_heads, mlp_ratio, drop_path[i],
                    pool=pool_kind if pe_shape is not None else None,
                    pos_embed_shape=pe_shape,
                    pool_kernel_size=pool_kernel_size,
                    temporal_pool=temporal_pool,
                )
            )

        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.out_norms = (
            nn.ModuleDict({str(i): norm_layer(embed_dim) for i in out_indices})
            if out_norm
            else None
        )
        self.num_classes = num_classes
        if num_classes > 0:
            self.norm = norm_layer(embed_dim)
            self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()
        self._set_frozen_stages(frozen_stages)

    # ------------------------------------------------------------------ metadata
    @classmethod
    def _stage_geometry(cls, config: Mapping[str, Any]) -> list[dict[str, int]]:
        """One stage per pool plus the last: constant width, stride ``patch_size * 2**k``."""
        pools = hvt_pool_blocks(config["depth"], config["pool_block_width"])
        patch = int(config.get("patch_size", 16))
        return [
            dict(num_chs=config["embed_dim"], reduction=patch * 2**k) for k in range(len(pools) + 1)
        ]

    @property
    def out_strides(self) -> list[int]:
        """Strides of the returned stages (``patch * 2**k``). In 1D mode this is nominal: the
        sequence is reduced ``2**k`` times, but horizontally (see the module docstring)."""
        return [self.stage_strides[i] for i in self.out_indices]

    @property
    def stage_num_tokens(self) -> list[int]:
        """Tokens per stage at ``input_size`` (1D: 196, 97, 48, 23, 11 for HVT-S-4 at 224)."""
        return [math.prod(g) for g in self.stage_grids]

    def no_weight_decay(self) -> set[str]:
        """Every parameter name containing ``pos_embed`` (official rule since HVT ``eb2b723``)."""
        return {name for name, _ in self.named_parameters() if "pos_embed" in name}

    def _init_weights(self) -> None:
        # Official (DeiT) init; it only matters for parameters a checkpoint does not provide.
        for name, p in self.named_parameters():
            if "pos_embed" in name:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ forward
    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        self._check_input(x)
        size = tuple(x.shape[2:])
        if self.pooling == "1d" and size != self.input_size:
            raise ValueError(
                f"{self.arch} with pooling='1d' takes only {self.input_size[0]}x"
                f"{self.input_size[1]} inputs, the size it was built for (its stage position "
                f"embeddings have fixed lengths {self.stage_num_tokens[1:]}); got "
                f"{size[0]}x{size[1]}. Build it with input_size={size} or use pooling='2d'."
            )
        x = self.patch_embed.proj(x)
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        if self.pooling == "1d":
            return x + self.pos_embed.to(x.dtype), (x.shape[1],)
        pe = resize_pos_embed(self.pos_embed, self.token_grid[-2:], grid[-2:])
        if self.video:
            temporal = resize_temporal_pos_embed(self.pos_embed_temporal, grid[0])
            # Token order (t, y, x): spatial repeated over time + temporal over space.
            pe = (temporal.unsqueeze(2) + pe.unsqueeze(1)).flatten(1, 2)
        return x + pe.to(x.dtype), grid

    def _to_map(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid).contiguous()

    def _forward_stages(
        self, x: torch.Tensor, stages: list[int], norm: bool, stop_early: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(N, C, L)`` token sequences for ``pooling="1d"``, ``(N, C, H/s, W/s)`` maps (sides
        rounded up) for ``"2d"``, ``(N, C, T', H/s, W/s)`` for video."""
        x, grid = self._embed(x)
        outs: list[torch.Tensor] = []
        wanted, last_stage = set(stages), self.num_stages - 1
        for i, blk in enumerate(self.blocks):
            x = self._run_block(blk, x)
            if blk.pool is not None:
                stage = self.pool_blocks.index(i)
                if stage in wanted:
                    outs.append(self._to_map(self._stage_norm(x, stage, norm), grid))
                x, grid = blk.pool_tokens(x, grid)
            if i == len(self.blocks) - 1 and last_stage in wanted:
                outs.append(self._to_map(self._stage_norm(x, last_stage, norm), grid))
            if stop_early and len(outs) == len(wanted):
                break  # later blocks feed no requested stage
        return x, outs

    def _require_head(self) -> None:
        if self.num_classes <= 0:
            raise RuntimeError(f"{self.arch} was built without norm/head; pass num_classes > 0")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Official ``forward_features``: all blocks, final ``norm``, then the token mean
        ``(N, C)``. Needs ``num_classes > 0`` (the ``norm`` is built with the head)."""
        self._require_head()
        x, grid = self._embed(x)
        for blk in self.blocks:
            x = self._run_block(blk, x)
            if blk.pool is not None:
                x, grid = blk.pool_tokens(x, grid)
        # Official order: norm over every token, then the mean.
        return self.norm(x).mean(dim=1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits ``head(norm(x).mean(1))``."""
        self._require_head()
        return self.head(self.forward_features(x))


# Explicit constructors, one per official variant (build_backbone / list_models find them);
# pooling="2d" gives dense maps, video=True space-time input.


@register_model
def hvt_ti_1(**kwargs: Any) -> HVT:
    """HVT-Ti-1: width 192, 3 heads, one pool (after block 0)."""
    return HVT("hvt_ti_1", **kwargs)


@register_model
def hvt_s_0(**kwargs: Any) -> HVT:
    """HVT-S-0: width 384, 6 heads, no pooling (DeiT-S without class token)."""
    return HVT("hvt_s_0", **kwargs)


@register_model
def hvt_s_1(**kwargs: Any) -> HVT:
    """HVT-S-1: width 384, 6 heads, one pool (after block 0)."""
    return HVT("hvt_s_1", **kwargs)


@register_model
def hvt_s_2(**kwargs: Any) -> HVT:
    """HVT-S-2: width 384, pools after blocks 0 and 6."""
    return HVT("hvt_s_2", **kwargs)


@register_model
def hvt_s_3(**kwargs: Any) -> HVT:
    """HVT-S-3: width 384, pools after blocks 0, 4 and 8."""
    return HVT("hvt_s_3", **kwargs)


@register_model
def hvt_s_4(**kwargs: Any) -> HVT:
    """HVT-S-4: width 384, pools after blocks 0, 3, 6 and 9."""
    return HVT("hvt_s_4", **kwargs)


@register_model
def scale_hvt_ti_4(**kwargs: Any) -> HVT:
    """Scale HVT-Ti-4: the same architecture as HVT-S-4 (the release links one file)."""
    return HVT("scale_hvt_ti_4", **kwargs)
