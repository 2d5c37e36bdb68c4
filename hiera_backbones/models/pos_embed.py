"""Position-embedding resizing shared by the models (on the fly) and the checkpoint converters
(once, on conversion). One rule for both, so resizing once and resizing per call agree exactly:
bicubic over space, linear over time, ``align_corners=False``, no antialiasing, computed in
float32 and returned in the input dtype."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "is_static_size",
    "resize_grid_pos_embed",
    "resize_pos_embed",
    "resize_temporal_pos_embed",
]


def is_static_size(size: Sequence[int | torch.SymInt]) -> bool:
    """False while ``torch.export`` traces with dynamic sizes. Resizers then always interpolate
    instead of comparing sizes, which would pin the traced program to the compared size; a
    bicubic/linear resize to the same size is exactly the identity (weights 1 and 0)."""
    return all(isinstance(s, int) for s in size)


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]
) -> torch.Tensor:
    """Resizes a raster-ordered ``(1, H*W, C)`` position embedding from ``old_grid`` (H, W) to
    ``new_grid`` (bicubic)."""
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
    """Resizes a ``(1, T, C)`` temporal position embedding to ``new_length`` (linear)."""
    if is_static_size((new_length,)) and pos_embed.shape[1] == new_length:
        return pos_embed
    seq = pos_embed.float().transpose(1, 2)
    seq = F.interpolate(seq, size=new_length, mode="linear", align_corners=False)
    return seq.transpose(1, 2).to(pos_embed.dtype)


def resize_grid_pos_embed(
    pos_embed: torch.Tensor, size: Sequence[int], antialias: bool = False
) -> torch.Tensor:
    """Resizes a grid position embedding ``(1, C, h, w)`` (HVT's stage embeddings, the abs-win
    background embeddings of HieraDet and abs-win Hiera) to ``size`` (bicubic).

    ``antialias=True`` is timm's abs-win Hiera rule: PyTorch's antialiased bicubic uses the
    PIL kernel (``a = -0.5``, not ``-0.75``), so it differs from the plain one even when
    upsampling; the weights were trained with it."""
    size = tuple(size)
    if is_static_size(size) and tuple(pos_embed.shape[2:]) == size:
        return pos_embed
    out = F.interpolate(
        pos_embed.float(), size=size, mode="bicubic", align_corners=False, antialias=antialias
    )
    return out.to(pos_embed.dtype)
