"""Lean training: the shared block's autograd saves the least it can without extra GEMMs.

Plain autograd keeps, per block and token, the LayerNorm input *and* its output (the next
Linear's input), fc1's output (GELU's input) *and* GELU's output (fc2's input), and int64
indices for every max-pool. The functions here compute exactly the same forward with the same
ops, but keep only what cannot be recomputed cheaply:

* :func:`norm_linear`: LayerNorm followed by one or more Linears (``norm1 -> qkv``, plus the
  stage transition's ``proj``) keeps the LayerNorm *input* and its per-token mean and rstd; the
  normalized tensor is rebuilt in backward (one elementwise pass) where the weight gradients
  need it. An optional per-Linear ``rearrange`` (HieraDet's window partition) runs between the
  two and is rebuilt too.
* :func:`norm_mlp`: ``norm2 -> fc1 -> GELU -> fc2`` keeps the LayerNorm input, its statistics
  and fc1's output; LayerNorm's and GELU's outputs are rebuilt in backward.
* :func:`max_members`: a max over the members of pooling windows keeps uint8 member indices
  (plain ``max`` keeps int64 ones, twice the pooled tensor's fp32 bytes).

Per plain (non-transition) block that is 10 widths per token instead of 16; with 4x MLPs, the
MLP's hidden tensor (4) and attention's q, k, v and output (4, kept by the attention kernel) are
the rest, plus the residual stream before each LayerNorm (2). The rebuilds are elementwise
passes; gradients equal plain autograd's up to GEMM rounding (the same ops on the same inputs).

Autocast is replayed in backward as forward saw it. The functions are differentiable once
(second derivatives: turn lean training off, ``StageBackbone.set_lean_training(False)``).
Callers take the plain ops when tracing, scripting or compiling (see :func:`lean_allowed`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as _module

from .cpu_fusion import recording_ops

__all__ = ["lean_allowed", "max_members", "norm_linear", "norm_mlp"]

Rearrange = Callable[[torch.Tensor], torch.Tensor] | None


def lean_allowed(x: torch.Tensor, modules: Sequence[nn.Module]) -> bool:
    """Whether ``modules`` may run ``x`` through the lean functions: an autograd graph is being
    built, nothing records ops for an exporter or a FLOP counter (jit tracing or scripting,
    ``torch.compile`` / ``torch.export``, which plan their own recomputation), and no forward
    hook on any of ``modules`` (or a global one) would be bypassed."""
    if not torch.is_grad_enabled():
        return False
    if recording_ops():
        return False
    if not (x.requires_grad or any(p.requires_grad for m in modules for p in m.parameters())):
        return False
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return False  # they would not see the fused layers' calls
    return not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def is_plain_layer_norm(norm: nn.Module) -> bool:
    """A stock affine LayerNorm over the last dimension (what the lean functions replay)."""
    return (
        type(norm) is nn.LayerNorm
        and norm.elementwise_affine
        and len(norm.normalized_shape) == 1
        and getattr(norm, "bias", None) is not None
    )


# --------------------------------------------------------------------------- autocast
def _autocast_state(device: str) -> tuple[str, bool, torch.dtype]:
    return device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)


@cache
def _layer_norm_dtype(device: str, autocast: bool, autocast_dtype: torch.dtype,
                      dtype: torch.dtype, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype ``F.layer_norm`` computes in for these inputs under this autocast state
    (autocast policies differ by device: CUDA runs LayerNorm in fp32, CPU in the input's dtype).
    ``torch.native_layer_norm`` (which also returns the statistics) has no autocast rule, so the
    lean path casts to what the plain path would."""
    with torch.autocast(device, dtype=autocast_dtype, enabled=autocast):
        probe = torch.zeros(1, 2, dtype=dtype, device=device)
        weight = torch.ones(2, dtype=weight_dtype, device=device)
        return F.layer_norm(probe, (2,), weight, weight).dtype


def _norm_input(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    state = _autocast_state(x.device.type)
    dtype = _layer_norm_dtype(*state, x.dtype, weight.dtype)
    return x if x.dtype == dtype else x.to(dtype)


def _layer_norm_backward(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor,
                         rstd: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         needs: tuple[bool, bool, bool]):
    return torch.ops.aten.native_layer_norm_backward(
        grad.to(x.dtype), x, (x.shape[-1],), mean, rstd, weight, bias, list(needs))


def _linear_grads(grad: torch.Tensor, inp: torch.Tensor, weight: torch.Tensor,
                  need_input: bool, need_weight: bool, need_bias: bool):
    """Input, weight and bias gradients of ``F.linear(inp, weight, bias)`` given ``grad``."""
    grad_input = grad_weight = grad_bias = None
    flat_grad = grad.reshape(-1, grad.shape[-1])
    if need_weight:
        flat_inp = inp.reshape(-1, inp.shape[-1])
        grad_weight = flat_grad.t().mm(flat_inp.to(flat_grad.dtype))
    if need_bias:
        grad_bias = flat_grad.sum(0)
    if need_input:
        grad_input = F.linear(grad, weight.t())
    return grad_input, grad_weight, grad_bias


# --------------------------------------------------------------------------- LayerNorm -> Linear(s)
class _NormLinear(torch.autograd.Function):
    """``[F.linear(rearrange_i(layer_norm(x)), w_i, b_i) for i]``; saves ``x`` and statistics."""

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, eps, rearranges, *params):  # noqa: D102
        x_in = _norm_input(x, norm_weight)
        x_norm, mean, rstd = torch.native_layer_norm(
            x_in, (x_in.shape[-1],), norm_weight, norm_bias, eps)
        outs = []
        for i, rearrange in enumerate(rearranges):
            inp = x_norm if rearrange is None else rearrange(x_norm)
            outs.append(F.linear(inp, params[2 * i], params[2 * i + 1]))
        ctx.autocast = _autocast_state(x.device.type)
        ctx.eps, ctx.rearranges, ctx.x_dtype = eps, rearranges, x.dtype
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x_in, mean, rstd, norm_weight, norm_bias, *params[0::2])
        return tuple(outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):  # noqa: D102
        x_in, mean, rstd, norm_weight, norm_bias, *weights = ctx.saved_tensors
        needs = ctx.needs_input_grad
        device, enabled, dtype = ctx.autocast
        grad_params: list[torch.Tensor | None] = []
        grad_norm = None
        need_norm = any(needs[:3])
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            x_norm = torch.native_layer_norm(
                x_in, (x_in.shape[-1],), norm_weight, norm_bias, ctx.eps)[0]
            for i, (grad, rearrange, weight) in enumerate(zip(grads, ctx.rearranges, weights)):
                need_w, need_b = needs[5 + 2 * i], needs[6 + 2 * i]
                if grad is None:
                    grad_params += [None, None]
                    continue
                source = inp = x_norm
                if rearrange is not None:
                    with torch.enable_grad():
                        source = x_norm.detach().requires_grad_(need_norm)
                        inp = rearrange(source)
                grad_inp, grad_w, grad_b = _linear_grads(
                    grad, inp, weight, need_norm, need_w, need_b)
                grad_params += [grad_w, grad_b]
                if not need_norm:
                    continue
                if rearrange is not None:
                    # The rearrangement's own transpose (a permutation, with padding dropped).
                    (grad_inp,) = torch.autograd.grad(inp, source, grad_inp.to(inp.dtype))
                grad_inp = grad_inp.to(x_norm.dtype)
                grad_norm = grad_inp if grad_norm is None else grad_norm + grad_inp
        grad_x = grad_nw = grad_nb = None
        if grad_norm is not None:
            grad_x, grad_nw, grad_nb = _layer_norm_backward(
                grad_norm, x_in, mean, rstd, norm_weight, norm_bias, needs[:3])
            if grad_x is not None:
                grad_x = grad_x.to(ctx.x_dtype)
        return (grad_x, grad_nw, grad_nb, None, None, *grad_params)


def norm_linear(
    x: torch.Tensor,
    norm: nn.LayerNorm,
    linears: Sequence[tuple[torch.Tensor, torch.Tensor | None, Rearrange]],
) -> tuple[torch.Tensor, ...]:
    """``F.linear(rearrange(norm(x)), weight, bias)`` for each ``(weight, bias, rearrange)``
    (``rearrange`` None: the normalized tensor itself), saving only ``x`` and ``norm``'s
    statistics for backward. ``rearrange`` must be differentiable and not mix tokens' channels
    (a permutation or padding of tokens), as it is replayed in backward."""
    params: list[torch.Tensor | None] = []
    for weight, bias, _ in linears:
        params += [weight, bias]
    rearranges = tuple(r for _, _, r in linears)
    return _NormLinear.apply(x, norm.weight, norm.bias, norm.eps, rearranges, *params)


# --------------------------------------------------------------------------- LayerNorm -> MLP
class _NormMlp(torch.autograd.Function):
    """``fc2(gelu(fc1(layer_norm(x))))``; saves ``x``, statistics and fc1's output."""

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, eps, w1, b1, w2, b2, approximate):  # noqa: D102
        x_in = _norm_input(x, norm_weight)
        x_norm, mean, rstd = torch.native_layer_norm(
            x_in, (x_in.shape[-1],), norm_weight, norm_bias, eps)
        hidden = F.linear(x_norm, w1, b1)
        out = F.linear(F.gelu(hidden, approximate=approximate), w2, b2)
        ctx.autocast = _autocast_state(x.device.type)
        ctx.eps, ctx.approximate, ctx.x_dtype = eps, approximate, x.dtype
        ctx.save_for_backward(x_in, mean, rstd, norm_weight, norm_bias, w1, w2, hidden)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        x_in, mean, rstd, norm_weight, norm_bias, w1, w2, hidden = ctx.saved_tensors
        needs = ctx.needs_input_grad
        device, enabled, dtype = ctx.autocast
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            act = F.gelu(hidden, approximate=ctx.approximate)
            grad_act, grad_w2, grad_b2 = _linear_grads(grad_out, act, w2, True, needs[6], needs[7])
            del act
            grad_hidden = torch.ops.aten.gelu_backward(
                grad_act.to(hidden.dtype), hidden, approximate=ctx.approximate)
            del grad_act
            x_norm = None
            if needs[4]:
                x_norm = torch.native_layer_norm(
                    x_in, (x_in.shape[-1],), norm_weight, norm_bias, ctx.eps)[0]
            need_x = any(needs[:3])
            grad_norm, grad_w1, grad_b1 = _linear_grads(
                grad_hidden, x_norm, w1, need_x, needs[4], needs[5])
        grad_x = grad_nw = grad_nb = None
        if need_x:
            grad_x, grad_nw, grad_nb = _layer_norm_backward(
                grad_norm, x_in, mean, rstd, norm_weight, norm_bias, needs[:3])
            if grad_x is not None:
                grad_x = grad_x.to(ctx.x_dtype)
        return grad_x, grad_nw, grad_nb, None, grad_w1, grad_b1, grad_w2, grad_b2, None


def norm_mlp(x: torch.Tensor, norm: nn.LayerNorm, fc1: nn.Linear, fc2: nn.Linear,
             approximate: str = "none") -> torch.Tensor:
    """``fc2(gelu(fc1(norm(x))))`` saving ``x``, ``norm``'s statistics and fc1's output."""
    return _NormMlp.apply(x, norm.weight, norm.bias, norm.eps, fc1.weight, fc1.bias,
                          fc2.weight, fc2.bias, approximate)


# --------------------------------------------------------------------------- compact max-pool
class _MaxMembers(torch.autograd.Function):
    """``x.max(dim).values`` whose backward scatters through uint8 member indices."""

    @staticmethod
    def forward(ctx, x, dim):  # noqa: D102
        values, index = x.max(dim)
        members = x.shape[dim]
        compact = torch.uint8 if members <= 256 else torch.int32 if members < 2**31 else None
        ctx.dim, ctx.shape = dim, x.shape
        ctx.save_for_backward(index if compact is None else index.to(compact))
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: D102
        (index,) = ctx.saved_tensors
        dim = ctx.dim
        # Plain ``max``'s backward: the gradient goes to the (first) maximal member only.
        out = grad.new_zeros(ctx.shape)
        return out.scatter_(dim, index.long().unsqueeze(dim), grad.unsqueeze(dim)), None


def max_members(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over ``dim`` (the members of pooling windows), as ``x.max(dim).values`` but keeping
    compact member indices for backward."""
    return _MaxMembers.apply(x, dim % x.dim())
