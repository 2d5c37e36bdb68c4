"""Transformer layers shared by Hiera and HVT.

Both models use the same pre-norm block (LayerNorm -> attention -> residual, LayerNorm -> MLP ->
residual) with a packed ``qkv`` projection, so one implementation serves both. Hiera adds three
things that reduce to a plain ViT block when unused:

* mask-unit (windowed) attention over a *unit-major* token sequence, where the tokens of each
  mask unit are contiguous (see :mod:`hiera_backbones.models.hiera`);
* query pooling: a max over the ``q_stride`` members of each pooling window, which are the
  ``q_stride`` outermost slabs inside every mask unit;
* a channel change ``dim -> dim_out`` whose residual is ``maxpool(proj(norm1(x)))``.

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` on 4-D
``(batch * windows, heads, tokens, head_dim)`` views of the packed ``qkv`` projection: with mask
units contiguous, the window split is a view, the fused CPU / GPU kernels accept the strided
q, k, v directly, and their output is already laid out token-major, so neither side of the
attention copies (the official code permutes ``qkv`` into a 5-D layout, which also forces the
unfused math kernel).

Without autograd on CPU, blocks take a fused path (:mod:`hiera_backbones.models.cpu_fusion`):
bias, GELU and both residual adds run inside the oneDNN GEMMs. In training they take the lean
path (:mod:`hiera_backbones.models.lean`): LayerNorm fused into the Linear(s) after it and into
the MLP, GELU's output rebuilt in backward, q projected apart where it is pooled, compact max-pool
indices; ~0.6x of plain autograd's activations, gradients equal up to GEMM rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerScale
from torch import nn

from .cpu_fusion import fused_linear, recording_ops, use_fusion
from .lean import is_plain_layer_norm, lean_allowed, max_members, norm_linear, norm_mlp

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "LayerScale",
    "Mlp",
    "lean_block",
    "max_over",
    "max_pool_tokens",
    "scaled_dot_product_attention",
]

#: Largest q/k/v or MLP hidden tensor the fused path materializes at once; bigger inputs are
#: processed in chunks (also keeps these tensors under glibc's 32 MB mmap threshold, so they
#: reuse heap memory instead of faulting in fresh pages on every call).
_CHUNK_BYTES = 16 * 2**20


def max_over(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over ``dim`` (the members of a pooling window). Without autograd a plain reduction
    (``amax``, the fastest forward); under autograd a max with indices, whose backward scatters
    through them instead of rebuilding ``amax``'s tie masks and counts (1.3-5x faster
    forward+backward on the pooled layouts here, CPU), keeping uint8 member indices
    (:func:`~.lean.max_members`; plain ``max`` when ops are recorded for an exporter)."""
    if x.requires_grad and torch.is_grad_enabled():
        if recording_ops():
            return x.max(dim).values
        return max_members(x, dim)
    return x.amax(dim)


def max_pool_tokens(x: torch.Tensor, stride: int, num_units: int = 1) -> torch.Tensor:
    """Max-pools a unit-major ``(B, N, C)`` sequence by ``stride``.

    Inside each of the ``num_units`` contiguous mask units, the ``stride`` members of every
    pooling window are the ``stride`` outermost slabs, so pooling is a view and a reduction.
    """
    if stride == 1:
        return x
    batch, tokens, channels = x.shape
    pooled = max_over(x.view(batch, num_units, stride, tokens // (num_units * stride), channels), 2)
    return pooled.view(batch, -1, channels)


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` on ``(..., tokens, head_dim)`` tensors. Under
    ``torch.jit.trace`` the same math as two explicit matmuls: the jit-based FLOP counters
    (fvcore, so detectron2's ``analyze_model.py``; mmengine's, so MMDetection's and MMAction2's
    ``get_flops.py``) have no handle for ``aten::scaled_dot_product_attention`` and would count
    attention as zero. Everywhere else (eager, torch.compile, torch.export) the fused kernel."""
    if torch.jit.is_tracing():
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        return scores.softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v)


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

    def num_units(self, num_tokens: int) -> int:
        """Mask units in a sequence of ``num_tokens`` (each holds ``q_stride * window_size``)."""
        if not (self.use_mask_unit_attn or self.q_stride > 1):
            return 1
        return num_tokens // (self.q_stride * self.window_size)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of ``x``; with ``residual`` (fused path only) returns ``residual + attn``."""
        batch, tokens, _ = x.shape
        units = self.num_units(tokens)
        windows = units if self.use_mask_unit_attn else 1
        # Attention groups (B * windows) of contiguous tokens: a view in unit-major order.
        groups = x.reshape(batch * windows, tokens // windows, self.dim)
        if residual is None:
            out = self._attend(self.qkv(groups), units // windows)
            return self.proj(out.view(batch, -1, self.dim_out))
        out = self._attend_fused(groups, units // windows)
        return fused_linear(out.view(batch, -1, self.dim_out), self.proj, residual=residual)

    def _attend_fused(self, groups: torch.Tensor, units_per_group: int) -> torch.Tensor:
        """:meth:`_attend` of ``(groups, tokens, dim)`` inputs with the fused ``qkv`` projection
        (fused path only), a few groups at a time: the 3x wide projection of a large input
        (stage 1 of a batch, a detection image) stays cache-sized."""
        group_bytes = groups.shape[1] * 3 * self.dim_out * groups.element_size()
        chunk = max(1, _CHUNK_BYTES // group_bytes)
        outs = [
            self._attend(fused_linear(part, self.qkv), units_per_group)
            for part in groups.split(chunk)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _attend(self, qkv: torch.Tensor, units_per_group: int) -> torch.Tensor:
        """``(groups, tokens, 3 * dim_out)`` packed projections -> ``(groups, tokens', dim_out)``
        attention output (``tokens' = tokens / q_stride``)."""
        groups, tokens, _ = qkv.shape
        # (groups, tokens, heads, head_dim) views of q, k, v: no copy.
        q, k, v = qkv.view(groups, tokens, 3, self.heads, self.head_dim).unbind(2)
        return self.attend_heads(q, k, v, units_per_group)

    def attend_heads(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     units_per_group: int) -> torch.Tensor:
        """Attention of ``(groups, tokens, heads, head_dim)`` q, k, v (views welcome); q is
        max-pooled here -> ``(groups, tokens', dim_out)``."""
        groups, _, heads, head_dim = k.shape
        if self.q_stride > 1:
            q = max_over(q.view(groups, units_per_group, self.q_stride, -1, heads, head_dim), 2)
            q = q.view(groups, -1, heads, head_dim)
        out = scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        # Fused kernels return (..., tokens, heads, head_dim) memory: this reshape is a view.
        return out.transpose(1, 2).reshape(groups, -1, self.dim_out)

    def lean_qkv_linears(self, rearrange=None) -> list:
        """``norm_linear`` arguments for the ``qkv`` projection: one GEMM, or with query pooling
        q and k|v in two (rows of the same weight), so that the unpooled q is freed after
        pooling instead of being kept alive as part of the tensor k and v are views of."""
        weight, bias = self.qkv.weight, self.qkv.bias
        if self.q_stride == 1:
            return [(weight, bias, rearrange)]
        c = self.dim_out
        return [(weight[:c], None if bias is None else bias[:c], rearrange),
                (weight[c:], None if bias is None else bias[c:], rearrange)]

    def attend_projected(self, outs: tuple[torch.Tensor, ...], groups: int,
                         units_per_group: int) -> torch.Tensor:
        """:meth:`attend_heads` of the outputs of :meth:`lean_qkv_linears`' GEMMs, any
        ``(..., C)`` layout whose leading tokens split into ``groups`` contiguous groups."""
        heads, head_dim = self.heads, self.head_dim
        if self.q_stride == 1:
            q, k, v = outs[0].reshape(groups, -1, 3, heads, head_dim).unbind(2)
        else:
            q = outs[0].reshape(groups, -1, heads, head_dim)
            k, v = outs[1].reshape(groups, -1, 2, heads, head_dim).unbind(2)
        return self.attend_heads(q, k, v, units_per_group)


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))`` (timm's ``Mlp`` keys); the fused path adds GELU and a residual
    inside the GEMMs. In training, :class:`Block` runs it with its LayerNorm through
    :func:`~.lean.norm_mlp` (GELU's output rebuilt in backward, not kept)."""

    def __init__(
        self, dim: int, hidden_dim: int, act_layer: type[nn.Module] = nn.GELU
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``fc2(act(fc1(x)))``; with ``residual`` (fused path only) adds it in ``fc2``."""
        if residual is None:
            return self.fc2(self.act(self.fc1(x)))
        rows = max(1, _CHUNK_BYTES // (self.fc1.out_features * x.element_size()))
        if x.shape[:-1].numel() <= rows:
            return self._fused(x, residual)
        # Large inputs (stage 1 of a batch or of a detection image): the 4x hidden tensor
        # in row chunks stays cache-friendly and never becomes the memory peak.
        flat_x, flat_res = x.reshape(-1, x.shape[-1]), residual.reshape(-1, residual.shape[-1])
        chunks = [self._fused(a, b) for a, b in zip(flat_x.split(rows), flat_res.split(rows))]
        return torch.cat(chunks).view(residual.shape)

    def lean_compatible(self) -> bool:
        """Stock layers and plain GELU: what :func:`~.lean.norm_mlp` replays."""
        return (type(self.act) is nn.GELU and type(self.fc1) is nn.Linear
                and type(self.fc2) is nn.Linear)

    def _fused(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        # oneDNN has GELU (erf and tanh) as a GEMM epilogue; other activations run unfused.
        # Read from ``self.act`` on each call, so a swapped activation is honoured.
        if type(self.act) is nn.GELU:
            hidden = fused_linear(x, self.fc1, gelu=self.act.approximate)
        else:
            hidden = self.act(fused_linear(x, self.fc1))
        return fused_linear(hidden, self.fc2, residual=residual)


def lean_block(block: nn.Module, attention: type, x: torch.Tensor,
               extra_linears: list[nn.Module]) -> bool:
    """Whether ``block`` (``norm1``, ``attn`` of type ``attention``, ``norm2``, ``mlp``) may
    train through the lean functions (:mod:`.lean`): lean training on, the stock layers (a
    swapped, wrapped or hooked layer, e.g. LoRA, a feature hook or a parametrization, runs its
    own forward instead) and :func:`~.lean.lean_allowed`. ``extra_linears``: other Linears of
    the block that the lean path calls by their parameters (a stage transition's ``proj``)."""
    if not block.lean_training or type(block.attn) is not attention:
        return False
    if type(block.mlp) is not Mlp or not block.mlp.lean_compatible():
        return False
    if not (is_plain_layer_norm(block.norm1) and is_plain_layer_norm(block.norm2)):
        return False
    linears = [block.attn.qkv, *extra_linears]
    if any(type(layer) is not nn.Linear for layer in linears):
        return False
    return lean_allowed(x, [block.norm1, block.norm2, block.attn, block.mlp, block.mlp.fc1,
                            block.mlp.fc2, *linears])


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
        layer_scale_init: float | None = None,
        expand_proj: bool = True,
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
        # LayerScale (timm's abs-win Hiera): ``ls1.gamma`` / ``ls2.gamma``, absent otherwise.
        self.ls1 = self.ls2 = None
        if layer_scale_init is not None:
            self.ls1 = LayerScale(dim_out, layer_scale_init)
            self.ls2 = LayerScale(dim_out, layer_scale_init)
        self.expand_proj = expand_proj
        #: Training saves only what cannot be rebuilt cheaply (:mod:`.lean`); off: plain autograd.
        self.lean_training = True
        if dim != dim_out:
            if expand_proj:
                self.proj = nn.Linear(dim, dim_out)
            elif dim_out != 2 * dim:
                raise ValueError(
                    f"expand_proj=False doubles the width (max- and mean-pool), so dim_out must "
                    f"be 2 * dim = {2 * dim}, got {dim_out}"
                )

    def _transition_residual(self, x: torch.Tensor, x_norm: torch.Tensor, project) -> torch.Tensor:
        """The residual of a stage transition: ``maxpool(proj(norm1(x)))`` (official Hiera;
        the *normalized* input), or without ``proj`` the max- and mean-pool of the raw input
        side by side (timm's ``use_expand_proj=False``)."""
        units = self.attn.num_units(x.shape[1])
        if self.expand_proj:
            return max_pool_tokens(project(x_norm), self.attn.q_stride, units)
        stride = self.attn.q_stride
        batch, tokens, channels = x.shape
        members = x.view(batch, units, stride, tokens // (units * stride), channels)
        pooled = torch.cat([max_over(members, 2), members.mean(2)], dim=-1)
        return pooled.view(batch, -1, 2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fusable(x):
            return self._forward_fused(x)
        if self._lean(x):
            return self._forward_lean(x)
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = self._transition_residual(x, x_norm, self.proj if self.expand_proj else None)
        attn = self.attn(x_norm)
        x = x + self.drop_path(attn if self.ls1 is None else self.ls1(attn))
        mlp = self.mlp(self.norm2(x))
        return x + self.drop_path(mlp if self.ls2 is None else self.ls2(mlp))

    def _lean(self, x: torch.Tensor) -> bool:
        projects = self.dim != self.dim_out and self.expand_proj
        return lean_block(self, Attention, x, [self.proj] if projects else [])

    def _forward_lean(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with LayerNorm fused into ``qkv`` / ``proj`` and into the MLP."""
        attn = self.attn
        batch, tokens, _ = x.shape
        units = attn.num_units(tokens)
        windows = units if attn.use_mask_unit_attn else 1
        linears = attn.lean_qkv_linears()
        projects = self.dim != self.dim_out and self.expand_proj
        if projects:
            linears.append((self.proj.weight, self.proj.bias, None))
        outs = norm_linear(x, self.norm1, linears)
        if projects:
            x = max_pool_tokens(outs[-1], attn.q_stride, units)
        elif self.dim != self.dim_out:
            x = self._transition_residual(x, x, None)
        out = attn.attend_projected(outs, batch * windows, units // windows)
        out = attn.proj(out.view(batch, -1, attn.dim_out))
        x = x + self.drop_path(out if self.ls1 is None else self.ls1(out))
        mlp = norm_mlp(x, self.norm2, self.mlp.fc1, self.mlp.fc2, self.mlp.act.approximate)
        return x + self.drop_path(mlp if self.ls2 is None else self.ls2(mlp))

    def _fusable(self, x: torch.Tensor) -> bool:
        """Fused path only for the stock layers (a wrapped or swapped ``Linear``, e.g. LoRA,
        must run its own forward), when stochastic depth is off and without LayerScale (its
        scale sits between the GEMM and the residual add)."""
        if self.training and isinstance(self.drop_path, DropPath):
            return False
        if self.ls1 is not None:
            return False
        if type(self.attn) is not Attention or type(self.mlp) is not Mlp:
            return False
        layers = [self.attn.qkv, self.attn.proj, self.mlp.fc1, self.mlp.fc2]
        if self.dim != self.dim_out and self.expand_proj:
            layers.append(self.proj)
        return all(type(layer) is nn.Linear for layer in layers) and use_fusion(x, self)

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without autograd: residual adds happen inside the output GEMMs."""
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = self._transition_residual(
                x, x_norm, (lambda t: fused_linear(t, self.proj)) if self.expand_proj else None
            )
        x = self.attn(x_norm, residual=x)
        return self.mlp(self.norm2(x), residual=x)
