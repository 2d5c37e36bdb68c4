"""Shared helpers for tests: the official Hiera as reference."""

from __future__ import annotations

import torch

from hiera_backbones import build_backbone
from hiera_backbones.parity import official_hiera, official_stage_maps


def official_model(name: str, **kwargs) -> torch.nn.Module:
    """Builds the official model ``name`` with random weights (never downloads)."""
    return official_hiera(name, **kwargs)


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


def official_maps(official: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The official stage outputs (channels-last) moved channels-first."""
    return official_stage_maps(official, x)


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
