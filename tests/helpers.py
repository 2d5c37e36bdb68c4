"""Shared helpers for parity tests: our backbone holding an official model's weights, and weights
that make attention peaked.

The reference itself and the tolerance rule live in :mod:`hiera_backbones.parity`
(``official_hiera``, ``official_stage_maps``, ``map_errors``, ``assert_maps_close``,
``FP32_RTOL``), the one parity helper that tests and tools (``check_parity.py``, ``benchmark.py``,
``hiera-convert --verify``) share: tests import it from there and compare maps with it (at
``FP32_RTOL``, or a looser ``rtol`` for low precision, compiled graphs and detector outputs)."""

from __future__ import annotations

import torch

from hiera_backbones import build_backbone


def backbone_state(official: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The official state dict minus the classifier (what a backbone loads strictly)."""
    return {
        k: v
        for k, v in official.state_dict().items()
        if not k.startswith(("norm.", "head."))
    }


def ours_from(official: torch.nn.Module, name: str, **kwargs) -> torch.nn.Module:
    model = build_backbone(name, **kwargs).eval()
    model.load_state_dict(backbone_state(official), strict=True)
    return model


def sharpen_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draws weights with larger spread so attention is far from uniform (random-init Hiera
    attends almost uniformly, which would hide window or ordering mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("qkv.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * p.shape[1] ** -0.5 * 1.5)
            elif p.dim() >= 2 and "pos_embed" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * (p[0].numel() ** -0.5))
            elif "pos_embed" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif name.endswith("weight"):  # LayerNorm scales
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model
