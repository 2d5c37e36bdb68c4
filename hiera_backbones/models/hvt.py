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
    :func:`hvt_1d_to_2d_state_dict` converts released (1D) checkpoints.

``pooling="2d", video=True`` (MMAction2)
    Space-time tokens from a ``(2, p, p)`` patch embedding, input position embedding split into
    ``pos_embed`` (spatial, as in the image model) and ``pos_embed_temporal`` ``(1, T', C)``. Pools
    are spatial ``(1, 3, 3)`` or, with ``temporal_pool=True``, ``(3, 3, 3)`` with stride 2 in time
    too; stage embeddings are spatial grids broadcast over time. Stages are ``(N, C, T', H', W')``.
    :func:`inflate_hvt_state_dict` initializes it from image weights.

Stages. A model with ``n`` pooling blocks ``p_0 < ... < p_{n-1}`` has ``n + 1`` stages: stage
``k < n`` is the output of block ``p_k`` *before* its pool (all blocks since the previous pool ran
at this resolution), and stage ``n`` is the output of the last block. Stage 0 is therefore the
stride-16 output of block 0 alone (every official variant pools right after block 0), which is
shallow; necks should prefer deeper stages (see :class:`~hiera_backbones.models.necks.
SimpleFeaturePyramid`). HVT-S-0 (no pooling) has one stage, the last block.

Conversion rules (all pure functions on state dicts, used by the checkpoint converters):

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
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .base import StageBackbone
from .hiera import is_static_size, resize_pos_embed, resize_temporal_pos_embed
from .layers import Block
from .registry import register_model

__all__ = [
    "HVT",
    "HVTBlock",
    "HVT_CHECKPOINT_URLS",
    "HVT_CONFIGS",
    "hvt_1d_to_2d_state_dict",
    "hvt_pool_blocks",
    "hvt_pooled_length",
    "inflate_hvt_state_dict",
    "resample_patch_kernel",
    "resize_grid_pos_embed",
    "unpool_1d_tokens",
]

_SMALL = dict(embed_dim=384, num_heads=6)
#: Constructor arguments of every official variant (all: depth 12, patch 16, MLP ratio 4, 224).
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
_RELEASES = "https://github.com/zhuang-group/HVT/releases/download"
#: Released ImageNet-1k checkpoints (``torch.load(...)['model']``), by variant.
HVT_CHECKPOINT_URLS: dict[str, str] = {
    "hvt_ti_1": f"{_RELEASES}/v1.0/hvt_ti_1.pth",
    "hvt_s_0": f"{_RELEASES}/v1.0/hvt_s_0.pth",
    "hvt_s_1": f"{_RELEASES}/v1.1/hvt_s_1.pth",
    "hvt_s_2": f"{_RELEASES}/v1.0/hvt_s_2.pth",
    "hvt_s_3": f"{_RELEASES}/v1.0/hvt_s_3.pth",
    "hvt_s_4": f"{_RELEASES}/v1.0/scale_hvt_ti_4.pth",
    "scale_hvt_ti_4": f"{_RELEASES}/v1.0/scale_hvt_ti_4.pth",
}

_STAGE_POS_EMBED = re.compile(r"^blocks\.(\d+)\.pos_embed$")


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


def _halve(side: int, levels: int) -> int:
    # MaxPool(k odd, stride 2, padding k // 2) maps s -> ceil(s / 2); repeated: ceil(s / 2**n).
    return -(-side // 2**levels)


def resize_grid_pos_embed(pos_embed: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resizes a grid position embedding ``(1, C, h, w)`` to ``size`` with bicubic interpolation
    (``align_corners=False``, as :func:`~hiera_backbones.models.hiera.resize_pos_embed`), computed
    in float32 and returned in the input dtype."""
    size = tuple(size)
    if is_static_size(size) and tuple(pos_embed.shape[2:]) == size:
        return pos_embed
    out = F.interpolate(pos_embed.float(), size=size, mode="bicubic", align_corners=False)
    return out.to(pos_embed.dtype)


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


# ---------------------------------------------------------------------- state-dict conversion
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
        target = (_halve(grid[0], level), _halve(grid[1], level))
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
        input_size: ``(H, W)``, or ``(T, H, W)`` with ``video=True``, that the position
            embeddings are defined on (default 224, 16 frames). ``pooling="1d"`` runs only here.
        patch_size: spatial patch size (official 16; 8 or 4 for finer strides).
        in_chans, embed_dim, depth, num_heads, mlp_ratio: as the official constructor.
        pool_block_width: pool after block ``i`` when ``i % pool_block_width == 0``; 0 = never.
        pool_kernel_size: max-pool kernel (official 3; odd in 2D mode).
        pooling: ``"1d"`` (official) or ``"2d"`` (grid pooling, dense maps).
        video: space-time input ``(N, C, T, H, W)``; needs ``pooling="2d"``.
        temporal_patch_size: frames per token in video mode.
        temporal_pool: also halve time at every pool in video mode.
        drop_path_rate: stochastic depth, linear over blocks.
        out_indices: stages to return, 0-based (default: all); later blocks are not run.
        out_norm: LayerNorm (``out_norms.<stage>``) on each returned stage.
        num_classes: if > 0, build the official ``norm`` + ``head`` for :meth:`forward_logits`.
        grad_checkpointing: recompute blocks in the backward pass.
        arch: name recorded on the module (set by the registry).
    """

    def __init__(
        self,
        input_size: Sequence[int] | None = None,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        pool_block_width: int = 3,
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
        arch: str = "hvt",
    ) -> None:
        super().__init__()
        self.arch = arch
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
        self.num_stages = len(self.pool_blocks) + 1
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
            for k in range(self.num_stages):
                g = (_halve(h, k), _halve(w, k))
                if video:
                    g = (_halve(t, k) if temporal_pool else t, *g)
                self.stage_grids.append(g)
        self.stage_strides = [patch_size * 2**k for k in range(self.num_stages)]
        self.stage_channels = [embed_dim] * self.num_stages
        # Stage k < n: block p_k before its pool; stage n: the last block.
        self.stage_blocks = [*self.pool_blocks, depth - 1]

        if out_indices is None:
            out_indices = tuple(range(self.num_stages))
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or sorted(set(out_indices)) != list(out_indices) or not all(
            0 <= i < self.num_stages for i in out_indices
        ):
            raise ValueError(
                f"{arch}: out_indices={out_indices} must be increasing stage indices in "
                f"[0, {self.num_stages}) (this variant pools after blocks {self.pool_blocks})"
            )
        self.out_indices = out_indices

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

    # ------------------------------------------------------------------ metadata
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

    # ------------------------------------------------------------------ geometry
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

    def _to_map(self, x: torch.Tensor, stage: int, grid: Sequence[int]) -> torch.Tensor:
        if self.out_norms is not None:
            x = self.out_norms[str(stage)](x)
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid).contiguous()

    def _run_blocks(
        self, x: torch.Tensor, grid: tuple[int, ...], collect: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outs: list[torch.Tensor] = []
        wanted = set(self.out_indices) if collect else set()
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            x = self._run_block(blk, x)
            if blk.pool is not None:
                stage = self.pool_blocks.index(i)
                if stage in wanted:
                    outs.append(self._to_map(x, stage, grid))
                x, grid = blk.pool_tokens(x, grid)
            if i == last and self.num_stages - 1 in wanted:
                outs.append(self._to_map(x, self.num_stages - 1, grid))
            if wanted and len(outs) == len(wanted):
                break  # later blocks feed no requested stage
        return x, outs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Returns the stages in ``out_indices``: ``(N, C, L)`` token sequences for
        ``pooling="1d"``, ``(N, C, H/s, W/s)`` maps (sides rounded up) for ``"2d"``, and
        ``(N, C, T', H/s, W/s)`` for video."""
        x, grid = self._embed(x)
        _, outs = self._run_blocks(x, grid, collect=True)
        return tuple(outs)

    def _require_head(self) -> None:
        if self.num_classes <= 0:
            raise RuntimeError(f"{self.arch} was built without norm/head; pass num_classes > 0")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Official ``forward_features``: all blocks, final ``norm``, then the token mean
        ``(N, C)``. Needs ``num_classes > 0`` (the ``norm`` is built with the head)."""
        self._require_head()
        x, grid = self._embed(x)
        x, _ = self._run_blocks(x, grid, collect=False)
        # Official order: norm over every token, then the mean.
        return self.norm(x).mean(dim=1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits ``head(norm(x).mean(1))``."""
        self._require_head()
        return self.head(self.forward_features(x))


def _make(name: str):
    def constructor(**kwargs) -> HVT:
        return HVT(**{**HVT_CONFIGS[name], "arch": name, **kwargs})

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = (
        f"Official ``{name}`` (pool_block_width={HVT_CONFIGS[name]['pool_block_width']}); "
        "pass ``pooling='2d'`` for dense maps, ``video=True`` for space-time input."
    )
    return register_model(constructor)


for _name in HVT_CONFIGS:
    globals()[_name] = _make(_name)
__all__ += list(HVT_CONFIGS)
