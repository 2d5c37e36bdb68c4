"""HVT weight layouts: the released (1D-pooling) state dicts turned into the 2D (dense) and video
layouts of :class:`~hiera_backbones.models.HVT`, and patch-kernel resampling. Pure functions on
state dicts, used by the converter (:mod:`hiera_backbones.checkpoints.convert`).

* :func:`hvt_1d_to_2d_state_dict`: input ``pos_embed`` resized bicubically to the new token grid;
  each 1D stage embedding is unpooled to the source token grid with :func:`unpool_1d_tokens`
  (token ``j`` after ``s`` pools goes to the patches ``[j * 2**s, (j + 1) * 2**s)`` in raster
  order, all of which lie in its pooling window) and sampled at the centres ``(r * 2**s,
  c * 2**s)`` of the 2D pooling cells, then resized bicubically to the target stage grid. So
  each 2D cell starts from the embedding of the 1D token whose window contains its centre. This
  is a heuristic (past the first pool 1D tokens are row bands), fine-tune afterwards;
  ``init="zero"`` zeroes them instead.
* :func:`inflate_hvt_state_dict`: the patch kernel is repeated over ``kt`` frames and divided by
  ``kt``, ``pos_embed_temporal`` is zero. A static video then gives the image model's features in
  every frame (global attention over ``T'`` identical copies of every key equals attention over
  one copy, and max pooling over identical frames is the identity).
* :func:`resample_patch_kernel`: the new kernel is the adjoint of the resize from the new patch
  size to the old one, ``w_new = R^T w``. For an integer ratio, patch ``p'`` on an image equals
  patch ``p`` on the image zoomed by ``p / p'`` (nearest neighbour), e.g. a 16x16 kernel becomes a
  4x4 kernel of 4x4 block sums; patch 4 gives Hiera's strides 4/8/16/32.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..models.hvt import halve_side, hvt_pooled_length, unpool_1d_tokens
from ..models.pos_embed import resize_grid_pos_embed, resize_pos_embed

__all__ = ["hvt_1d_to_2d_state_dict", "inflate_hvt_state_dict", "resample_patch_kernel"]

_STAGE_POS_EMBED = re.compile(r"^blocks\.(\d+)\.pos_embed$")


def resample_patch_kernel(
    weight: torch.Tensor, new_size: int | Sequence[int], mode: str | None = None
) -> torch.Tensor:
    """Resamples a patch-embedding kernel ``(D, C, p, p)`` (or ``(D, C, kt, p, p)``) to a new
    spatial patch size.

    The new kernel is ``R^T w`` where ``R`` resizes a new-size patch to the old size with
    ``F.interpolate(mode=mode)``: then ``<x, w_new> = <R x, w>``, i.e. embedding a patch equals
    embedding it resized to the old patch size. The default mode, ``"nearest"`` for a smaller
    patch and ``"area"`` for a larger one, makes this exact zoom equivalence for integer ratios:
    patch 4 on an image = patch 16 on the image zoomed 4x (nearest), a 16x16 kernel becoming
    the 4x4 kernel of its 4x4 block sums; patch 32 = patch 16 on the image 2x area-downsampled,
    each weight spread over 2x2 and divided by 4. The bias is unchanged. Computed in float64.
    """
    new = (new_size, new_size) if isinstance(new_size, int) else tuple(new_size)
    old = tuple(weight.shape[-2:])
    if new == old:
        return weight
    if mode is None:
        mode = "nearest" if new[0] * new[1] < old[0] * old[1] else "area"
    n_new = new[0] * new[1]
    # Rows of R^T: each new-size basis patch resized to the old size.
    basis = torch.eye(n_new, dtype=torch.float64, device=weight.device).view(n_new, 1, *new)
    kwargs = {} if mode in ("nearest", "area", "nearest-exact") else dict(align_corners=False)
    r_t = F.interpolate(basis, size=old, mode=mode, **kwargs).view(n_new, -1)
    out = weight.to(torch.float64).flatten(-2) @ r_t.T
    return out.view(*weight.shape[:-2], *new).to(weight.dtype)


def _stage_pos_embed_keys(state_dict: Mapping[str, torch.Tensor]) -> list[tuple[int, str]]:
    found = []
    for key in state_dict:
        m = _STAGE_POS_EMBED.match(key)
        if m:
            found.append((int(m.group(1)), key))
    return sorted(found)


def hvt_1d_to_2d_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    input_size: Sequence[int] = (224, 224),
    patch_size: int | None = None,
    init: str = "gather",
    source_grid: Sequence[int] | None = None,
    pool_kernel_size: int = 3,
) -> dict[str, torch.Tensor]:
    """Converts an HVT state dict (official, 1D pooling) for a ``pooling="2d"`` model built at
    ``input_size`` (and ``patch_size``).

    * ``pos_embed``: bicubic resize from ``source_grid`` to the target token grid.
    * ``blocks.{p}.pos_embed`` (the ``k``-th pooling block, used after ``k + 1`` pools):
      ``init="gather"`` unpools the 1D embedding to the source grid (:func:`unpool_1d_tokens`),
      samples it at the 2D cell centres ``(r * 2**(k+1), c * 2**(k+1))`` and resizes the result to
      the target grid ``ceil(h / 2**(k+1)) x ceil(w / 2**(k+1))``; ``init="zero"`` zeroes it.
      Embeddings that are already grids ``(1, C, h, w)`` are only resized, so the function also
      re-targets 2D state dicts to a new size.
    * ``patch_embed.proj.weight``: :func:`resample_patch_kernel` if ``patch_size`` differs.

    Args:
        state_dict: HVT weights (unwrap ``checkpoint['model']`` first); not modified.
        input_size: ``(H, W)`` the 2D model is built with.
        patch_size: the 2D model's patch size (default: the checkpoint's).
        init: ``"gather"`` or ``"zero"`` for the stage embeddings.
        source_grid: the checkpoint's token grid (default: square, from ``pos_embed``).
        pool_kernel_size: the checkpoint's 1D pool kernel (3 in every release).

    Returns:
        A new state dict; other keys are passed through unchanged.
    """
    if init not in ("gather", "zero"):
        raise ValueError(f"init={init!r}: use 'gather' or 'zero'")
    out = dict(state_dict)
    kernel = state_dict["patch_embed.proj.weight"]
    if kernel.dim() != 4:
        raise ValueError(
            f"patch_embed.proj.weight has shape {tuple(kernel.shape)}; expected an image kernel "
            "(D, C, p, p)"
        )
    src_patch = kernel.shape[-1]
    patch = src_patch if patch_size is None else int(patch_size)
    size = tuple(int(s) for s in input_size)
    if len(size) != 2 or any(s <= 0 or s % patch for s in size):
        raise ValueError(f"input_size={size} must be (H, W) with sides multiples of patch {patch}")
    grid = (size[0] // patch, size[1] // patch)
    pos = state_dict["pos_embed"]
    if source_grid is None:
        side = math.isqrt(pos.shape[1])
        if side * side != pos.shape[1]:
            raise ValueError(
                f"pos_embed has {pos.shape[1]} tokens, not a square grid; pass source_grid=(h, w)"
            )
        source_grid = (side, side)
    source_grid = tuple(int(g) for g in source_grid)
    out["pos_embed"] = resize_pos_embed(pos, source_grid, grid)
    if patch != src_patch:
        out["patch_embed.proj.weight"] = resample_patch_kernel(kernel, patch)

    length = source_grid[0] * source_grid[1]
    for level, (_, key) in enumerate(_stage_pos_embed_keys(state_dict), start=1):
        pe = state_dict[key]
        target = (halve_side(grid[0], level), halve_side(grid[1], level))
        length = hvt_pooled_length(length, pool_kernel_size)
        if pe.dim() == 4:  # already a grid
            out[key] = resize_grid_pos_embed(pe, target)
            continue
        if pe.shape[1] != length:
            raise ValueError(
                f"{key} has {pe.shape[1]} tokens; after {level} pool(s) of a {source_grid} grid "
                f"HVT has {length}. Is source_grid right?"
            )
        if init == "zero":
            out[key] = pe.new_zeros(1, pe.shape[-1], *target)
            continue
        step = 2**level
        full = unpool_1d_tokens(pe.transpose(1, 2), level, source_grid)  # (1, C, h, w)
        out[key] = resize_grid_pos_embed(full[..., ::step, ::step].contiguous(), target)
    return out


def inflate_hvt_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    input_size: Sequence[int] = (16, 224, 224),
    temporal_patch_size: int = 2,
    patch_size: int | None = None,
    init: str = "gather",
    source_grid: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Turns image HVT weights (1D official or 2D) into weights for ``video=True`` at
    ``input_size = (T, H, W)``.

    Spatial keys go through :func:`hvt_1d_to_2d_state_dict` (``input_size[1:]``, ``patch_size``,
    ``init``); the patch kernel ``(D, C, p, p)`` becomes ``(D, C, kt, p, p)`` with every temporal
    slice ``w / kt``; ``pos_embed_temporal`` ``(1, T // kt, D)`` is zero. A static video through
    the inflated model gives the image model's stage maps in every frame.
    """
    t, h, w = (int(s) for s in input_size)
    kt = int(temporal_patch_size)
    if t <= 0 or t % kt:
        raise ValueError(f"T={t} must be a positive multiple of temporal_patch_size={kt}")
    out = hvt_1d_to_2d_state_dict(
        state_dict, (h, w), patch_size=patch_size, init=init, source_grid=source_grid
    )
    kernel = out["patch_embed.proj.weight"]
    out["patch_embed.proj.weight"] = (kernel.unsqueeze(2) / kt).repeat(1, 1, kt, 1, 1)
    out["pos_embed_temporal"] = kernel.new_zeros(1, t // kt, kernel.shape[0])
    return out
