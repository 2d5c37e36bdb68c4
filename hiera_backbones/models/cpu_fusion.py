"""Fused CPU inference for the shared transformer layers (oneDNN through PyTorch's own ops).

On CPU, ``F.linear`` runs the GEMM and then spends extra passes over memory on everything
around it: it copies the broadcast bias into the output before the GEMM accumulates onto it,
and the GELU and the residual add each read and write the whole activation again. Those
passes are ~20 % of a Hiera-B forward at 224. oneDNN applies bias, GELU and the residual add
inside the GEMM's epilogue while the tile is still in cache; PyTorch exposes exactly that as
``torch.ops.mkldnn._linear_pointwise`` (what ``torch.compile`` emits for these patterns on
CPU), and a weight reordered once into oneDNN's blocked layout saves a repack per call.

The fused path is used only when no autograd graph is needed (inference, ``torch.no_grad``,
or a frozen module on inputs that need no grad), on CPU fp32 (bf16 where oneDNN supports it),
outside autocast, tracing, scripting and ``torch.compile``; everything else takes the plain
path, which is the reference the fused path is tested against. ``HIERA_BACKBONES_CPU_FUSION=0``
or :func:`set_cpu_fusion` turns it off.

Reordered weights are cached per parameter (keyed by identity, storage and version, so
``load_state_dict``, optimizer steps and ``.to()`` invalidate them) outside the module, so
``state_dict``, ``deepcopy`` and pickling never see them. They cost one extra copy of the
linear weights while the model is in use for inference.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

__all__ = [
    "cpu_fusion", "cpu_fusion_available", "fused_linear", "recording_ops", "set_cpu_fusion",
    "use_fusion",
]

_enabled = os.environ.get("HIERA_BACKBONES_CPU_FUSION", "1") != "0"


def _probe_ops() -> tuple[object, object] | None:
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight
    except (AttributeError, RuntimeError):  # a build without oneDNN or without these ops
        return None


_ops = _probe_ops()
_fused_dtypes = {torch.float32}
if _ops is not None and torch.ops.mkldnn._is_mkldnn_bf16_supported():
    _fused_dtypes.add(torch.bfloat16)

_GELU_ALGORITHMS = {"none": "none", "tanh": "tanh"}


def cpu_fusion_available() -> bool:
    """Whether this PyTorch build has the oneDNN fused linear ops."""
    return _ops is not None


def set_cpu_fusion(enabled: bool) -> None:
    """Turns the fused CPU inference path on or off for the whole process."""
    global _enabled
    _enabled = bool(enabled)


@contextmanager
def cpu_fusion(enabled: bool) -> Iterator[None]:
    """Context manager form of :func:`set_cpu_fusion` (restores the previous setting)."""
    global _enabled
    previous = _enabled
    _enabled = bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


_self_check_passed: bool | None = None  # None: not run yet


def _self_check() -> bool:
    """Runs each fused op once on a tiny input against the plain ops. A build whose oneDNN
    lacks or mis-handles one of them (e.g. some non-x86 builds) falls back, with one warning."""
    global _self_check_passed
    if _self_check_passed is None:
        # The first fused call often comes under ``torch.inference_mode``; the check builds
        # ordinary tensors so that it tests the ops, not inference-tensor rules.
        with torch.inference_mode(False), torch.no_grad():
            # Fixed, generator-free inputs: nothing here may depend on the global RNG state.
            x = torch.linspace(-2.0, 2.0, 40).reshape(5, 8)
            residual = torch.linspace(1.0, -1.0, 80).reshape(5, 16)
            # to_empty: no random init, so the first fused call leaves the global RNG alone.
            layer = nn.Linear(8, 16, device="meta").to_empty(device="cpu")
            layer.weight.copy_(torch.linspace(-0.5, 0.5, 128).reshape(16, 8).flip(1))
            layer.bias.copy_(torch.linspace(-0.3, 0.3, 16))
            plain = layer(x)
            expected = [plain, F.gelu(plain), plain + residual]
            try:
                got = [
                    fused_linear(x, layer),
                    fused_linear(x, layer, gelu="none"),
                    fused_linear(x, layer, residual=residual),
                ]
                # |outputs| < 10 from dot products of length 8: any correct kernel is within a
                # few fp32 ulps of 8 (1 ulp ~ 1e-6); 1e-5 rejects wrong ops, not other kernels.
                ok = all(torch.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(got, expected))
                problem = "gives different numbers"
            except RuntimeError as err:
                ok, problem = False, f"fails ({str(err).splitlines()[0]})"
        if not ok:
            warnings.warn(
                f"hiera_backbones: oneDNN's fused linear {problem} in this PyTorch build; "
                "using the plain CPU path", RuntimeWarning, stacklevel=3,
            )
        _self_check_passed = ok
    return _self_check_passed


def use_fusion(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether ``module`` may run ``x`` through the fused (autograd-free) path."""
    if not _enabled or _ops is None or x.device.type != "cpu" or x.dtype not in _fused_dtypes:
        return False
    # Tracers (torch.compile, torch.export, jit) and dispatch modes (FakeTensorMode,
    # FlopCounterMode) record ops: they get the plain ones, which they all know. Checked before
    # anything else, so that none of them ever sees the self-check below.
    if recording_ops() or torch._C._len_torch_dispatch_stack():
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    needs_graph = torch.is_grad_enabled()
    if needs_graph and x.requires_grad:
        return False
    for param in module.parameters():
        if param.dtype != x.dtype or param.device.type != "cpu":
            return False
        if needs_graph and param.requires_grad:
            return False
    # Fused layers bypass their submodules' forward, so hooks on them would silently not run.
    if getattr(_module, "_global_forward_hooks", None) or getattr(
        _module, "_global_forward_pre_hooks", None
    ):
        return False
    if any(m._forward_hooks or m._forward_pre_hooks for m in module.modules() if m is not module):
        return False
    return _self_check()


def recording_ops() -> bool:
    """jit tracing or scripting, ``torch.compile`` or ``torch.export``, or a ``torch.func``
    transform (``grad``, ``vmap``, ...): whoever records or transforms the ops gets the plain
    ones, which every tracer, exporter, FLOP counter and transform knows."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())


# id(parameter) -> (weakref to it, storage pointer, version, reordered weight)
_packed: dict[int, tuple[weakref.ref, int, int, torch.Tensor]] = {}


def _forget(key: int) -> None:
    _packed.pop(key, None)


def _packed_weight(weight: torch.Tensor) -> torch.Tensor:
    if weight.is_inference():
        # A model built under inference_mode has no version counter to tell us about in-place
        # updates, so its weights are not cached; oneDNN takes the plain layout as well.
        return weight.detach()
    key = id(weight)
    entry = _packed.get(key)
    if (
        entry is not None
        and entry[0]() is weight
        and entry[1] == weight.data_ptr()
        and entry[2] == weight._version
    ):
        return entry[3]
    packed = _ops[1](weight.detach())
    _packed[key] = (
        weakref.ref(weight, lambda _, key=key: _forget(key)),
        weight.data_ptr(),
        weight._version,
        packed,
    )
    return packed


def fused_linear(
    x: torch.Tensor,
    layer: nn.Linear,
    gelu: str | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``layer(x)``, then optionally GELU (``"none"``: exact erf, ``"tanh"``) or ``+ residual``,
    in one oneDNN call. Callers check :func:`use_fusion` first."""
    linear_pointwise = _ops[0]
    weight = _packed_weight(layer.weight)
    if residual is not None:
        return linear_pointwise.binary(x, residual.contiguous(), weight, layer.bias, "add")
    if gelu is not None:
        return linear_pointwise(x, weight, layer.bias, "gelu", [], _GELU_ALGORITHMS[gelu])
    return linear_pointwise(x, weight, layer.bias, "none", [], "")
