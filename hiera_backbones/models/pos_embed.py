"""Position-embedding resizing shared by the models (on the fly) and the checkpoint converters
(once, on conversion). One rule for both, so resizing once and resizing per call agree exactly:
bicubic over space, linear over time, ``align_corners=False``, no antialiasing, computed in
float32 and returned in the input dtype.

Spatial resizes run as two small matmuls with the interpolation's own weight matrices
(:func:`bicubic_matrix`): bicubic interpolation is linear and separable, so
``out = M_h @ grid @ M_w^T`` is the same map as ``F.interpolate`` (equal up to float rounding,
~1e-7 relative). Detection models resize every step (e.g. 7x7 -> 256x256 for a SAM 2 trunk at
1024), where ``upsample_bicubic2d`` and its backward took ~1.5% of a CPU training step; the
matmuls take ~0.1%."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "bicubic_matrix",
    "bicubic_resize",
    "static_size",
    "resize_grid_pos_embed",
    "resize_pos_embed",
    "resize_temporal_pos_embed",
]


def static_size(size: Sequence[int | torch.SymInt | torch.Tensor]) -> tuple[int, ...] | None:
    """``size`` as ints, or None while ``torch.export`` traces with dynamic sizes: resizers then
    always resize instead of comparing sizes, which would pin the exported program to the
    compared size (a bicubic/linear resize to the same size is exactly the identity, weights
    1 and 0). Under ``torch.jit.trace`` (the FLOP counters) sizes are 0-d tensors of a trace
    that is specialized to them anyway: their values, so no identity resize is traced."""
    if torch.jit.is_tracing():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return tuple(int(s) for s in size)
    if all(isinstance(s, int) for s in size):
        return tuple(size)
    return None


def bicubic_matrix(
    src: int | torch.SymInt,
    dst: int | torch.SymInt,
    antialias: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``(dst, src)`` matrix of 1-D bicubic resizing (``align_corners=False``, edge
    clamping folded in): row ``i`` holds the weights of output ``i``. Built by resizing the
    identity with ``F.interpolate`` itself, so it carries PyTorch's exact weights (antialiased:
    the PIL kernel)."""
    # Column j of the identity image is the j-th basis vector; resizing only its height gives
    # the weights of every output for source j (the width, unchanged, is resized by the
    # identity: kernel weights 1 at distance 0 and 0 at 1). A (src, 1, src, 1) batch of
    # one-wide images would be wrong for antialias=True.
    basis = torch.eye(src, device=device, dtype=dtype).view(1, 1, src, src)
    out = F.interpolate(
        basis, size=(dst, src), mode="bicubic", align_corners=False, antialias=antialias
    )
    return out.view(dst, src)


def bicubic_resize(
    grid: torch.Tensor, size: Sequence[int | torch.SymInt], antialias: bool = False
) -> torch.Tensor:
    """``F.interpolate(grid, size, mode="bicubic", align_corners=False, antialias=...)`` of an
    ``(N, C, h, w)`` float tensor as ``M_h @ grid @ M_w^T`` (see the module docstring).

    The result is an ``(N, C, H, W)`` view of channels-last memory: the models add it to
    channels-last token grids, which then stay contiguous. Both matmuls have a 2-D right
    operand and no broadcast batch on the left, the form the jit FLOP counters (fvcore,
    mmengine) count correctly."""
    batch, channels, height, width = grid.shape
    rows = bicubic_matrix(height, size[0], antialias, grid.device, grid.dtype)
    cols = bicubic_matrix(width, size[1], antialias, grid.device, grid.dtype)
    # Widths first, on the small side: (N, h, C, w) @ (w, W) -> (N, h, C, W) -> (h, N * W * C).
    resized_cols = torch.matmul(grid.permute(0, 2, 1, 3), cols.t())
    resized_cols = resized_cols.permute(1, 0, 3, 2).reshape(height, -1)
    # Then heights: (H, h) @ (h, N * W * C) -> (H, N, W, C) memory.
    out = torch.matmul(rows, resized_cols).view(size[0], batch, size[1], channels)
    return out.permute(1, 3, 0, 2)


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]
) -> torch.Tensor:
    """Resizes a raster-ordered ``(1, H*W, C)`` position embedding from ``old_grid`` (H, W) to
    ``new_grid`` (bicubic)."""
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if static_size(new_grid) == old_grid:
        return pos_embed
    if pos_embed.shape[1] != math.prod(old_grid):
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} tokens, expected {math.prod(old_grid)} for a "
            f"{old_grid[0]}x{old_grid[1]} grid"
        )
    channels = pos_embed.shape[-1]
    grid = pos_embed.float().reshape(1, *old_grid, channels).permute(0, 3, 1, 2)
    grid = bicubic_resize(grid, new_grid)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, channels).to(pos_embed.dtype)


def resize_temporal_pos_embed(pos_embed: torch.Tensor, new_length: int) -> torch.Tensor:
    """Resizes a ``(1, T, C)`` temporal position embedding to ``new_length`` (linear)."""
    if static_size((new_length,)) == static_size(pos_embed.shape[1:2]):
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
    if static_size(size) == static_size(pos_embed.shape[2:]):
        return pos_embed
    return bicubic_resize(pos_embed.float(), size, antialias).to(pos_embed.dtype)
