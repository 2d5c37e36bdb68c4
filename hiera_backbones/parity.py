"""How close two fp32 computations of the same stage maps must be, and the helpers that check it.

One rule serves the tests, ``tools/check_parity.py`` and ``hiera-convert --verify``: the error of
a map is ``max |ours - ref| / max |ref|``, i.e. relative to the map's scale, and two correct fp32
implementations stay within :data:`FP32_RTOL` of each other.

Why relative to the scale, and why this bound. A stage map is the residual stream after many
blocks. Every GEMM, softmax and LayerNorm on the way rounds to fp32 (unit roundoff
``u = 2**-24 ~ 6e-8``), and *which* roundings happen depends on the kernel: MKL and oneDNN
split the K dimension into different blocks on AVX2 and AVX-512 CPUs, the official code runs
attention through the unfused math kernel, our fused path runs bias/GELU/residual inside the
GEMM. Each choice is exact up to a few ``u`` relative to the values it sums, and the residual
stream adds those errors up, so the difference between two correct implementations grows with the
map's magnitude, not with any absolute constant: the same relative error is ``2e-6`` absolute on
a random-init map of scale 3 and ``2e-5`` on a map of scale 20 (an absolute ``2e-5`` bound
failed on AMD Zen 4 for exactly this reason). Measured against an fp64 run of the same weights
(Hiera-T/S/B image, Hiera-B video with q-pooling, "sharpened" and random weights; official,
plain and fused paths; an AMD EPYC with AVX2, default kernels, ``ONEDNN_MAX_CPU_ISA=SSE41`` and
``MKL_ENABLE_INSTRUCTIONS=SSE4_2``), every path is within ``2.0e-6`` of fp64 and within
``1.7e-6`` of any other path, i.e. ~30 ``u``; the Zen 4 (AVX-512) failure above was ~1e-6
too. :data:`FP32_RTOL` is 10x that, which leaves room for deeper models (the error grows about
like the square root of the number of blocks: Hiera-H has 3x Hiera-S's blocks, ~1.7x the error)
and other kernels, while any real mistake (a window, token order or position embedding off)
gives relative errors of order 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "FP32_RTOL",
    "MapError",
    "assert_maps_close",
    "map_errors",
    "max_relative_error",
    "official_hiera",
    "official_stage_maps",
    "timm_reference",
    "timm_stage_maps",
]

#: Largest ``max|ours - ref| / max|ref|`` accepted between two fp32 runs of the same stage map.
FP32_RTOL = 2e-5


@dataclass(frozen=True)
class MapError:
    """The difference between one map and its reference."""

    shape: tuple[int, ...]
    max_abs: float  # max |ours - ref|
    scale: float  # max |ref|
    rel: float  # max_abs / scale

    def __str__(self) -> str:
        return (
            f"shape {self.shape}  max|diff| {self.max_abs:.3e}  scale {self.scale:.3g}  "
            f"relative {self.rel:.2e}"
        )


def map_errors(
    ours: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]
) -> list[MapError]:
    """Per-map errors of ``ours`` against ``ref`` (computed in fp64; shapes must match)."""
    if len(ours) != len(ref):
        raise ValueError(f"{len(ours)} maps to compare with {len(ref)} reference maps")
    errors = []
    for i, (a, b) in enumerate(zip(ours, ref)):
        if a.shape != b.shape:
            raise ValueError(f"map {i}: shape {tuple(a.shape)} vs reference {tuple(b.shape)}")
        a, b = a.detach().double(), b.detach().double()
        max_abs = (a - b).abs().max().item()
        scale = b.abs().max().item()
        # An all-zero reference: any difference is a full-size error.
        rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        errors.append(MapError(tuple(a.shape), max_abs, scale, rel))
    return errors


def max_relative_error(ours: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]) -> float:
    """The largest per-map ``max|ours - ref| / max|ref|``."""
    return max(e.rel for e in map_errors(ours, ref))


def assert_maps_close(
    ours: Sequence[torch.Tensor], ref: Sequence[torch.Tensor], rtol: float = FP32_RTOL
) -> list[MapError]:
    """Raises ``AssertionError`` naming the first map whose scale-relative error exceeds
    ``rtol``; returns the errors."""
    errors = map_errors(ours, ref)
    for i, err in enumerate(errors):
        if not err.rel <= rtol:
            raise AssertionError(f"map {i}: {err} > {rtol:.0e}")
    return errors


def official_hiera(name: str, input_size: Sequence[int] | None = None, **kwargs) -> torch.nn.Module:
    """The official model ``name`` (``hiera-transformer``) with random weights, in eval mode,
    optionally built for another ``input_size``. Never downloads.

    The official constructor is used, except for video models at another size: those
    constructors hard-code ``input_size``, so the model class is built with the official
    geometry (``HIERA_CONFIGS``, checked against the constructors key by key in the tests)."""
    try:
        import hiera
    except ImportError:
        raise ImportError(
            "the official Hiera package is needed: pip install hiera-transformer==0.1.4"
        ) from None
    from .models import HIERA_CONFIGS

    if name not in HIERA_CONFIGS:
        raise ValueError(f"unknown official model {name!r}; choose from {', '.join(HIERA_CONFIGS)}")
    if input_size is None:
        return getattr(hiera, name)(pretrained=False, **kwargs).eval()
    if len(HIERA_CONFIGS[name]["input_size"]) == 3:
        cfg = {"num_classes": 400, **HIERA_CONFIGS[name], **kwargs}
        return hiera.Hiera(**{**cfg, "input_size": tuple(input_size)}).eval()
    return getattr(hiera, name)(pretrained=False, input_size=tuple(input_size), **kwargs).eval()


def official_stage_maps(official: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The official model's stage outputs (channels-last intermediates) moved channels-first."""
    with torch.no_grad():
        _, inter = official(x, return_intermediates=True)
    return [t.movedim(-1, 1) for t in inter]


def timm_reference(name: str, input_size: Sequence[int] | None = None) -> torch.nn.Module:
    """timm's model ``name`` with random weights, in eval mode, without a classifier: the
    reference for the architectures whose source implementation is timm's or which timm
    reimplements exactly (SAM 2's trunk ``sam2_hiera_*``, abs-win Hiera
    ``hiera_*_abswin_256``). Never downloads. abs-win Hiera fixes its token grid at
    construction, so it is built for ``input_size``; HieraDet runs at any size."""
    import timm

    kwargs = {}
    if input_size is not None and "abswin" in name:
        kwargs["img_size"] = tuple(int(s) for s in input_size)
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs).eval()


def timm_stage_maps(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """A timm model's stage outputs, channels-first."""
    with torch.no_grad():
        return model.forward_intermediates(x, intermediates_only=True)
