"""Transformer layers shared by Hiera and HVT.

Both models use the same pre-norm block (LayerNorm -> attention -> residual, LayerNorm -> MLP ->
residual) with a packed ``qkv`` projection, so one implementation serves both. Hiera adds three
things that reduce to a plain ViT block when unused:

* mask-unit (windowed) attention, where token ``t`` of an *unrolled* sequence belongs to window
  ``t % num_windows`` (see :mod:`hiera_backbones.models.hiera`);
* query pooling: a max over ``q_stride`` groups of queries inside each window;
* a channel change ``dim -> dim_out`` whose residual is ``maxpool(proj(norm1(x)))``.

Attention always runs through :func:`torch.nn.functional.scaled_dot_product_attention` on
contiguous 4-D ``(batch * windows, heads, tokens, head_dim)`` tensors, which lets PyTorch pick its
fused kernels (the 5-D layout of the official code forces the unfused math path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

__all__ = ["Attention", "Block", "DropPath", "Mlp", "max_pool_tokens"]


def max_pool_tokens(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Max-pools an unrolled ``(B, N, C)`` sequence by ``stride``.

    In unrolled order the ``stride`` members of each pooling window are the ``stride`` outermost
    slabs of the sequence, so pooling is a view and a reduction, no gather.
    """
    if stride == 1:
        return x
    batch, tokens, channels = x.shape
    return x.view(batch, stride, tokens // stride, channels).amax(dim=1)


class Attention(nn.Module):
    """Multi-head self-attention with optional mask-unit windows and query pooling.

    Args:
        dim: input channels.
        dim_out: output channels (``qkv`` maps ``dim -> 3 * dim_out``).
        num_heads: attention heads.
        q_stride: flattened query pooling stride (e.g. 4 for 2x2); 1 disables pooling.
        window_size: flattened mask-unit size *after* pooling; used only when
            ``use_mask_unit_attn`` is true.
        use_mask_unit_attn: attend within mask units instead of globally.
        qkv_bias: add a bias to the ``qkv`` projection.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        q_stride: int = 1,
        window_size: int = 0,
        use_mask_unit_attn: bool = False,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if dim_out % num_heads:
            raise ValueError(f"dim_out={dim_out} is not divisible by num_heads={num_heads}")
        self.dim = dim
        self.dim_out = dim_out
        self.heads = num_heads
        self.head_dim = dim_out // num_heads
        self.q_stride = q_stride
        self.window_size = window_size
        self.use_mask_unit_attn = use_mask_unit_attn
        self.qkv = nn.Linear(dim, 3 * dim_out, bias=qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)

    def num_windows(self, num_tokens: int) -> int:
        if not self.use_mask_unit_attn:
            return 1
        return num_tokens // (self.q_stride * self.window_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        windows = self.num_windows(tokens)
        per_window = tokens // windows
        # Unrolled token index = position_in_window * windows + window.
        qkv = self.qkv(x).view(batch, per_window, windows, 3, self.heads, self.head_dim)
        # -> (3, B, windows, heads, per_window, head_dim), one copy, then 4-D views.
        qkv = qkv.permute(3, 0, 2, 4, 1, 5).reshape(
            3, batch * windows, self.heads, per_window, self.head_dim
        )
        q, k, v = qkv.unbind(0)
        if self.q_stride > 1:
            q = q.view(batch * windows, self.heads, self.q_stride, -1, self.head_dim).amax(dim=2)
        out = F.scaled_dot_product_attention(q, k, v)
        out_per_window = out.shape[2]
        # Back to unrolled order: (B, out_per_window, windows, heads * head_dim).
        out = out.view(batch, windows, self.heads, out_per_window, self.head_dim)
        out = out.permute(0, 3, 1, 2, 4).reshape(batch, out_per_window * windows, self.dim_out)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block; with ``dim != dim_out`` it is a Hiera stage transition."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        q_stride: int = 1,
        window_size: int = 0,
        use_mask_unit_attn: bool = False,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim, dim_out, num_heads, q_stride, window_size, use_mask_unit_attn, qkv_bias
        )
        self.norm2 = norm_layer(dim_out)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio), act_layer=act_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            # The transition residual comes from the *normalized* input (official Hiera).
            x = max_pool_tokens(self.proj(x_norm), self.attn.q_stride)
        x = x + self.drop_path(self.attn(x_norm))
        return x + self.drop_path(self.mlp(self.norm2(x)))
