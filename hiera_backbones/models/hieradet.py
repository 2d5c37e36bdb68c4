"""HieraDet: the Hiera image encoder trunk of SAM 2 / SAM 2.1 (Ravi et al., 2024), as a
multi-scale backbone.

Numerically this is SAM 2's trunk (``sam2/modeling/backbones/hieradet.py``; timm's
``sam2_hiera_*``): the same block schedule, windows, padding, q-pooling and position embedding.
It differs from :class:`~hiera_backbones.models.hiera.Hiera` in its geometry, not its layers:

* tokens stay a channels-last ``(B, H, W, C)`` grid between blocks (no unroll);
* attention is windowed with a window size per stage (``window_spec``; the first block of a
  stage still uses the previous stage's window, pooled with q), or global in
  ``global_att_blocks``; a grid that is no multiple of the window is zero-padded *after*
  ``norm1`` and the padded tokens take part in attention unmasked, as in SAM 2;
* the position embedding is abs-win (Bolya et al., ICLR 2024): the background ``pos_embed``
  ``(1, C, *global_pos_size)`` bicubic-interpolated to the token grid plus
  ``pos_embed_window`` ``(1, C, w0, w0)`` (``w0 = window_spec[0]``) tiled over it.

The attention (packed ``qkv``, max-pooled q, ``F.scaled_dot_product_attention``), the MLP and
LayerNorm (eps 1e-6) are the shared ones of :mod:`hiera_backbones.models.layers`; inside a
window the tokens are ordered with the members of each 2x2 pooling cell outermost, so q-pooling
is the same view-and-max as in Hiera.

State-dict keys are SAM 2's trunk keys (``pos_embed``, ``pos_embed_window``,
``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,proj}``) except the MLP, which
is ``mlp.fc1`` / ``mlp.fc2`` (timm's names and the shared ``Mlp``; SAM 2 calls them
``mlp.layers.0`` / ``mlp.layers.1``): the converters in ``checkpoints/hieradet_formats.py`` only
rename.

Input sizes: H and W must be multiples of ``size_multiple`` = ``patch_stride * lcm(q_stride **
q_pool, window_spec[0])`` (32 for every SAM 2 trunk): the window position embedding tiles the
stride-4 grid whole, and each q-pooled grid has even sides, so windowed and global 2x2 pooling
agree and every stage map has exactly ``H / stride`` rows. Other windows (14, 7, 16, ...) need
no divisibility: they are padded.
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
from .cpu_fusion import fused_linear, use_fusion
from .hiera import hiera_stage_geometry
from .layers import Attention, DropPath, Mlp, lean_block
from .lean import max_members, norm_linear, norm_mlp
from .pos_embed import resize_grid_pos_embed
from .registry import register_model

__all__ = [
    "HIERADET_CONFIGS",
    "HieraDet",
    "HieraDetBlock",
    "sam2_hiera_tiny",
    "sam2_hiera_small",
    "sam2_hiera_base_plus",
    "sam2_hiera_large",
]

#: SAM 2 / SAM 2.1 trunk configurations (the release yaml files; timm's ``sam2_hiera_*``).
#: SAM 2 and SAM 2.1 share them; the release resolution is 1024.
HIERADET_CONFIGS: dict[str, dict] = {
    "sam2_hiera_tiny": dict(
        embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
        window_spec=(8, 4, 14, 7), global_pos_size=(7, 7),
    ),
    "sam2_hiera_small": dict(
        embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
        window_spec=(8, 4, 14, 7), global_pos_size=(7, 7),
    ),
    "sam2_hiera_base_plus": dict(
        embed_dim=112, num_heads=2, stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20),
        window_spec=(8, 4, 14, 7), global_pos_size=(14, 14),
    ),
    "sam2_hiera_large": dict(
        embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8), global_pos_size=(7, 7),
    ),
}

_ARCH_DEFAULTS: dict[str, Any] = dict(
    in_chans=3,
    q_pool=3,
    q_stride=(2, 2),
    dim_mul=2.0,
    head_mul=2.0,
    patch_kernel=(7, 7),
    patch_stride=(4, 4),
    patch_padding=(3, 3),
    mlp_ratio=4.0,
)


class _GroupAttention(Attention):
    """The shared attention over whole groups: every ``(groups, tokens, C)`` row is one window
    (or the whole grid), with the q-pooling members outermost."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.proj(self._attend(self.qkv(x), 1))


def _partition(
    x: torch.Tensor, window: tuple[int, int], pool: tuple[int, int]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * windows, wh * ww, C)`` windows of the zero-padded grid, each
    ordered ``(pool row, pool col, row, col)``: the members of every pooling cell are the
    ``ph * pw`` outermost slabs. Returns the windows and the window grid ``(nh, nw)``."""
    batch, height, width, channels = x.shape
    (wh, ww), (ph, pw) = window, pool
    pad_h, pad_w = -height % wh, -width % ww
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    nh, nw = (height + pad_h) // wh, (width + pad_w) // ww
    x = x.view(batch, nh, wh // ph, ph, nw, ww // pw, pw, channels)
    x = x.permute(0, 1, 4, 3, 6, 2, 5, 7)
    return x.reshape(batch * nh * nw, wh * ww, channels), (nh, nw)


def _unpartition(
    x: torch.Tensor, windows: tuple[int, int], window: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Raster-ordered windows ``(B * nh * nw, wh * ww, C)`` -> ``(B, H, W, C)`` without the
    padding."""
    (nh, nw), (wh, ww) = windows, window
    channels = x.shape[-1]
    x = x.view(-1, nh, nw, wh, ww, channels).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(-1, nh * wh, nw * ww, channels)
    if (nh * wh, nw * ww) != tuple(size):
        x = x[:, : size[0], : size[1]]
    return x.contiguous()


class HieraDetBlock(nn.Module):
    """SAM 2's ``MultiScaleBlock`` on a channels-last grid: pre-norm windowed or global
    attention with optional 2x2 q-pooling, and the MLP.

    Args:
        dim, dim_out, num_heads: widths and heads; with ``dim != dim_out`` the residual is
            ``proj(norm1(x))`` (max-pooled when ``q_stride`` is set).
        window_size: attention window on the *input* grid; 0 = global attention.
        q_stride: ``(2, 2)`` at a stage's first block (q and the residual max-pooled), or None.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        window_size: int = 0,
        q_stride: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = int(window_size)
        self.q_stride = tuple(q_stride) if q_stride else (1, 1)
        if self.window_size and any(self.window_size % q for q in self.q_stride):
            raise ValueError(
                f"window {self.window_size} of a q-pooling block must be a multiple of the "
                f"pooling stride {self.q_stride}"
            )
        self.norm1 = norm_layer(dim)
        self.attn = _GroupAttention(dim, dim_out, num_heads, q_stride=math.prod(self.q_stride))
        self.norm2 = norm_layer(dim_out)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio), act_layer=act_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        #: Training saves only what cannot be rebuilt cheaply (:mod:`.lean`); off: plain autograd.
        self.lean_training = True
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def _pool(self, x: torch.Tensor, lean: bool = False) -> torch.Tensor:
        """2x2 max-pool (floor) of a channels-last grid. ``max_pool2d`` on the channels-last
        NCHW view: its backward scatters through saved indices, where a reduction (``amax``)
        over the strided 2x2 members would rebuild tie masks and sums (~4x slower at 1024).
        ``lean``: a max over columns, then rows, keeping uint8 member indices instead of
        ``max_pool2d``'s int64 ones (the same maxima and the same member on ties: the first in
        raster order)."""
        if self.q_stride == (1, 1):
            return x
        if lean:
            (ph, pw), (batch, height, width, channels) = self.q_stride, x.shape
            x = x[:, : height - height % ph, : width - width % pw]
            x = x.reshape(batch, height // ph, ph, width // pw, pw, channels)
            return max_members(max_members(x, 4), 2)
        pooled = F.max_pool2d(x.permute(0, 3, 1, 2), self.q_stride, self.q_stride)
        return pooled.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fusable(x):
            return self._forward_fused(x)
        if self._lean(x):
            return self._forward_lean(x)
        _, height, width, _ = x.shape
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = self._pool(self.proj(x_norm))
        window = (self.window_size,) * 2 if self.window_size else (height, width)
        groups, grid = _partition(x_norm, window, self.q_stride)
        out = self.attn(groups)
        pooled_window = (window[0] // self.q_stride[0], window[1] // self.q_stride[1])
        out = _unpartition(out, grid, pooled_window, x.shape[1:3])
        x = x + self.drop_path(out)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _lean(self, x: torch.Tensor) -> bool:
        return lean_block(self, _GroupAttention, x, [self.proj] if self.dim != self.dim_out else [])

    def _forward_lean(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with LayerNorm fused into ``qkv`` (through the window partition,
        rebuilt in backward) and ``proj``, and into the MLP."""
        _, height, width, _ = x.shape
        window = (self.window_size,) * 2 if self.window_size else (height, width)
        linears = self.attn.lean_qkv_linears(
            lambda t: _partition(t, window, self.q_stride)[0])
        if self.dim != self.dim_out:
            linears.append((self.proj.weight, self.proj.bias, None))
        outs = norm_linear(x, self.norm1, linears)
        if self.dim != self.dim_out:
            x = self._pool(outs[-1], lean=True)
        grid = (-(-height // window[0]), -(-width // window[1]))
        out = self.attn.attend_projected(outs, outs[0].shape[0], 1)
        out = self.attn.proj(out)
        pooled_window = (window[0] // self.q_stride[0], window[1] // self.q_stride[1])
        out = _unpartition(out, grid, pooled_window, x.shape[1:3])
        x = x + self.drop_path(out)
        mlp = norm_mlp(x, self.norm2, self.mlp.fc1, self.mlp.fc2, self.mlp.act.approximate)
        return x + self.drop_path(mlp)

    def _fusable(self, x: torch.Tensor) -> bool:
        """The fused CPU inference path (as the shared :class:`~.layers.Block`'s): stock layers
        only, stochastic depth off, autograd off (:func:`~.cpu_fusion.use_fusion`)."""
        if self.training and isinstance(self.drop_path, DropPath):
            return False
        if type(self.attn) is not _GroupAttention or type(self.mlp) is not Mlp:
            return False
        layers = [self.attn.qkv, self.attn.proj, self.mlp.fc1, self.mlp.fc2]
        if self.dim != self.dim_out:
            layers.append(self.proj)
        return all(type(layer) is nn.Linear for layer in layers) and use_fusion(x, self)

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without autograd: bias, GELU and both residual adds inside the
        oneDNN GEMMs. The attention projection runs after the windows are put back (a per-token
        linear commutes with that permutation), on the unpadded grid and fused with its
        residual add."""
        _, height, width, _ = x.shape
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = self._pool(fused_linear(x_norm, self.proj))
        window = (self.window_size,) * 2 if self.window_size else (height, width)
        groups, grid = _partition(x_norm, window, self.q_stride)
        out = self.attn._attend_fused(groups, 1)
        pooled_window = (window[0] // self.q_stride[0], window[1] // self.q_stride[1])
        out = _unpartition(out, grid, pooled_window, x.shape[1:3])
        x = fused_linear(out, self.attn.proj, residual=x)
        return self.mlp(self.norm2(x), residual=x)


class HieraDet(StageBackbone):
    """SAM 2 / SAM 2.1 HieraDet trunk returning multi-scale stage maps (NCHW, strides
    4 / 8 / 16 / 32 for the zoo).

    Args:
        arch: a name of :data:`HIERADET_CONFIGS` (``"sam2_hiera_tiny"``, ...,
            ``"sam2_hiera_large"``) or a dict of architecture overrides with an optional
            ``base`` name. The truthful name is ``self.arch``; every architecture argument is in
            ``self.arch_config``.
        input_size: the nominal ``(H, W)`` (default 1024, SAM 2's resolution). No parameter
            depends on it: the position embedding is interpolated for every input.
        in_chans ... mlp_ratio: the architecture (SAM 2's ``Hiera`` arguments; ``window_spec``
            per stage, ``global_att_blocks`` by block index, ``global_pos_size`` the background
            position-embedding grid); ``None`` takes the value from ``arch``.
        drop_path_rate: stochastic depth, linear over blocks.
        out_indices: stages ``forward`` returns (0-based); later blocks are not run.
        out_norm: apply a LayerNorm (``out_norms.<stage>``) to each returned map.
        grad_checkpointing: recompute blocks in the backward pass to save memory.
        frozen_stages: freeze the patch and position embeddings (0) and also stages
            ``0 .. frozen_stages - 1`` (> 0); -1 freezes nothing.

    Input: ``(N, C, H, W)`` with H and W multiples of :attr:`size_multiple` (32 for the zoo;
    see the module docstring); anything else raises one ValueError.
    """

    family = "HieraDet"
    arch_zoo = HIERADET_CONFIGS
    arch_defaults = _ARCH_DEFAULTS
    arch_keys = (
        "in_chans", "embed_dim", "num_heads", "stages", "q_pool", "q_stride", "dim_mul",
        "head_mul", "window_spec", "global_att_blocks", "global_pos_size", "patch_kernel",
        "patch_stride", "patch_padding", "mlp_ratio",
    )
    default_arch = "sam2_hiera_base_plus"

    def __init__(
        self,
        arch: str | Mapping[str, Any] = "sam2_hiera_base_plus",
        *,
        input_size: Sequence[int] = (1024, 1024),
        in_chans: int | None = None,
        embed_dim: int | None = None,
        num_heads: int | None = None,
        stages: Sequence[int] | None = None,
        q_pool: int | None = None,
        q_stride: Sequence[int] | None = None,
        dim_mul: float | None = None,
        head_mul: float | None = None,
        window_spec: Sequence[int] | None = None,
        global_att_blocks: Sequence[int] | None = None,
        global_pos_size: Sequence[int] | None = None,
        patch_kernel: Sequence[int] | None = None,
        patch_stride: Sequence[int] | None = None,
        patch_padding: Sequence[int] | None = None,
        mlp_ratio: float | None = None,
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_norm: bool = False,
        grad_checkpointing: bool = False,
        frozen_stages: int = -1,
    ) -> None:
        super().__init__()
        name, cfg = self.resolve_arch(arch, dict(
            in_chans=in_chans, embed_dim=embed_dim, num_heads=num_heads, stages=stages,
            q_pool=q_pool, q_stride=q_stride, dim_mul=dim_mul, head_mul=head_mul,
            window_spec=window_spec, global_att_blocks=global_att_blocks,
            global_pos_size=global_pos_size, patch_kernel=patch_kernel,
            patch_stride=patch_stride, patch_padding=patch_padding, mlp_ratio=mlp_ratio,
        ))
        self.arch = arch = name
        self.arch_config = dict(cfg)
        stages = tuple(int(s) for s in cfg["stages"])
        window_spec = tuple(int(w) for w in cfg["window_spec"])
        global_blocks = {int(b) for b in cfg["global_att_blocks"]}
        q_stride = tuple(int(q) for q in cfg["q_stride"])
        num_stages, depth = len(stages), sum(stages)
        if len(window_spec) != num_stages:
            raise ValueError(f"{arch}: window_spec needs {num_stages} entries, got {window_spec}")
        if not 0 <= cfg["q_pool"] < num_stages:
            raise ValueError(f"{arch}: q_pool={cfg['q_pool']} must be in [0, {num_stages - 1}]")
        if not window_spec[0] > 0:
            raise ValueError(f"{arch}: window_spec[0] (the window position embedding) must be > 0")
        self.spatial_dims = 2
        self.q_pool = int(cfg["q_pool"])
        self.patch_stride = tuple(cfg["patch_stride"])
        self.window_spec = window_spec
        self.global_att_blocks = tuple(sorted(global_blocks))
        self.out_indices = self._checked_out_indices(out_indices, num_stages, arch)
        self.grad_checkpointing = grad_checkpointing
        self.size_multiple = tuple(
            p * math.lcm(q**self.q_pool, window_spec[0])
            for p, q in zip(self.patch_stride, q_stride)
        )
        self.input_size = tuple(int(s) for s in input_size)
        if len(self.input_size) != 2:
            raise ValueError(f"{arch}: input_size={self.input_size} must be (H, W)")
        self._check_size(self.input_size, what="input_size")

        embed_dim, num_heads = int(cfg["embed_dim"]), int(cfg["num_heads"])
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(
            cfg["in_chans"], embed_dim, cfg["patch_kernel"], stride=self.patch_stride,
            padding=cfg["patch_padding"],
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *cfg["global_pos_size"]))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, window_spec[0], window_spec[0])
        )

        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(num_stages)]
        q_pool_blocks = {end + 1 for end in self.stage_ends[: self.q_pool]}
        drop_path = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList()
        self.stage_channels: list[int] = []
        dim, cur_stage = embed_dim, 0
        for i in range(depth):
            dim_out = dim
            # A stage's first block still uses the previous stage's window (SAM 2's "lag by a
            # block"): it attends on the finer grid and pools q to the new one.
            window = 0 if i in global_blocks else window_spec[cur_stage]
            if i - 1 in self.stage_ends:
                dim_out = int(dim * cfg["dim_mul"])
                num_heads = int(num_heads * cfg["head_mul"])
                cur_stage += 1
            try:
                block = HieraDetBlock(
                    dim, dim_out, num_heads, mlp_ratio=cfg["mlp_ratio"], drop_path=drop_path[i],
                    norm_layer=norm_layer, window_size=window,
                    q_stride=q_stride if i in q_pool_blocks else None,
                )
            except ValueError as err:
                raise ValueError(f"{arch}: block {i}: {err}") from None
            self.blocks.append(block)
            dim = dim_out
            if i in self.stage_ends:
                self.stage_channels.append(dim)
        self.stage_blocks = self.stage_ends
        geometry = self._stage_geometry(cfg)
        assert [g["num_chs"] for g in geometry] == self.stage_channels
        self.stage_strides = [g["reduction"] for g in geometry]
        self.out_norms = (
            nn.ModuleDict({str(i): norm_layer(self.stage_channels[i]) for i in self.out_indices})
            if out_norm
            else None
        )
        self._init_weights()
        self._set_frozen_stages(frozen_stages)

    # ------------------------------------------------------------------ metadata
    @classmethod
    def _stage_geometry(cls, config: Mapping[str, Any]) -> list[dict[str, int]]:
        return hiera_stage_geometry(config)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "pos_embed_window"}

    def _init_weights(self) -> None:
        # trunc-normal(0.02) embeddings and linear weights, zero biases (timm's default init);
        # only parameters a checkpoint does not provide keep it.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed_window, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ forward
    def _pos_embed(self, grid: Sequence[int]) -> torch.Tensor:
        """``(1, H, W, C)`` abs-win embedding: background resized (bicubic) + window tiled."""
        window = self.pos_embed_window
        tiles = (grid[0] // window.shape[-2], grid[1] // window.shape[-1])
        pos = resize_grid_pos_embed(self.pos_embed, grid)
        pos = pos + window.tile(1, 1, *tiles).to(pos.dtype)
        return pos.permute(0, 2, 3, 1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        # Contiguous channels-last once: a permuted NCHW view would stay in that layout through
        # stage 1 (adds keep it), and every LayerNorm (forward and backward) would copy it.
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1).contiguous()
        return x + self._pos_embed(x.shape[1:3]).to(x.dtype)

    def _forward_stages(
        self, x: torch.Tensor, stages: list[int], norm: bool, stop_early: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Channels-first maps ``(N, C_i, H / s_i, W / s_i)`` of ``stages``; the final tokens
        as ``(N, L, C)``."""
        x = self._embed(x)
        wanted = {self.stage_ends[i]: i for i in stages}
        last = max(wanted) if stop_early else len(self.blocks) - 1
        outs = []
        for i, blk in enumerate(self.blocks[: last + 1]):
            x = self._run_block(blk, x)
            if i in wanted:
                out = self._stage_norm(x, wanted[i], norm)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        return x.flatten(1, 2), outs


# Explicit constructors (build_backbone / list_models find them). SAM 2 and SAM 2.1 share them.


@register_model
def sam2_hiera_tiny(**kwargs: Any) -> HieraDet:
    """SAM 2 / 2.1 HieraDet-Tiny trunk (blocks per stage (1, 2, 7, 2)), 1024 by default."""
    return HieraDet("sam2_hiera_tiny", **kwargs)


@register_model
def sam2_hiera_small(**kwargs: Any) -> HieraDet:
    """SAM 2 / 2.1 HieraDet-Small trunk (blocks per stage (1, 2, 11, 2)), 1024 by default."""
    return HieraDet("sam2_hiera_small", **kwargs)


@register_model
def sam2_hiera_base_plus(**kwargs: Any) -> HieraDet:
    """SAM 2 / 2.1 HieraDet-Base+ trunk (blocks per stage (2, 3, 16, 3), width 112)."""
    return HieraDet("sam2_hiera_base_plus", **kwargs)


@register_model
def sam2_hiera_large(**kwargs: Any) -> HieraDet:
    """SAM 2 / 2.1 HieraDet-Large trunk (blocks per stage (2, 6, 36, 4), width 144)."""
    return HieraDet("sam2_hiera_large", **kwargs)
