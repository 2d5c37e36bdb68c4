"""Pure-PyTorch necks turning backbone stage maps into detection pyramids."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import LayerNorm2d
from torch import nn

__all__ = ["SimpleFeaturePyramid"]


def _log2(ratio: float, what: str) -> int:
    n = round(torch.log2(torch.tensor(float(ratio))).item())
    if 2.0**n != ratio:
        raise ValueError(f"{what}: stride ratio {ratio} is not a power of 2")
    return n


class SimpleFeaturePyramid(nn.Module):
    """ViTDet-style simple feature pyramid (Li et al., 2022), generalized to several inputs.

    Each output level of stride ``s`` is built from one input map: the one with the smallest
    stride ``>= s`` (so levels are upsampled from equal-or-deeper maps, as in ViTDet), or the
    coarsest input if none is that coarse (then it is max-pooled down). Rescaling by ``2**n`` uses
    ``n`` stride-2 transposed convolutions (channels halved each time, LayerNorm + GELU between),
    downscaling ``2**n`` uses ``MaxPool2d(2**n, ceil_mode=True)``; then ``1x1 conv -> LN -> 3x3
    conv -> LN``, as ViTDet. With one input this is exactly ViTDet's pyramid.

    For HVT (``pooling="2d"``, patch 16, strides 16/32/64/...) the default output strides
    ``(4, 8, 16, 32, 64)`` are the P2-P6 levels Mask R-CNN expects: P2-P4 come from stride 16,
    P5 from 32, P6 from 64. Because stage 0 of HVT is a single block deep, passing only deeper
    stages (e.g. ``out_indices=(1,)``: all levels from the stride-32 map) is often better.
    Pad inputs to a multiple of the largest output stride (detectron2 ``size_divisibility``,
    MMDetection ``pad_size_divisor``) so the levels nest exactly.

    Args:
        in_channels: channels of each input map.
        in_strides: stride of each input map.
        out_channels: channels of every output level.
        out_strides: output strides, each a power-of-2 multiple of an input stride.
        norm: LayerNorm over channels after the convolutions (ViTDet "LN"); off = biased convs.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int = 256,
        out_strides: Sequence[int] = (4, 8, 16, 32, 64),
        norm: bool = True,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides) or not in_channels:
            raise ValueError(
                f"in_channels {tuple(in_channels)} and in_strides {tuple(in_strides)} must be "
                "non-empty and of equal length"
            )
        self.in_strides = [int(s) for s in in_strides]
        self.out_strides = [int(s) for s in out_strides]
        self._out_channels = int(out_channels)
        self.sources: list[int] = []
        self.stages = nn.ModuleList()
        coarsest = max(range(len(self.in_strides)), key=self.in_strides.__getitem__)
        for s in self.out_strides:
            deeper = [i for i, si in enumerate(self.in_strides) if si >= s]
            src = min(deeper, key=self.in_strides.__getitem__) if deeper else coarsest
            self.sources.append(src)
            n = _log2(self.in_strides[src] / s, f"output stride {s}")
            dim = int(in_channels[src])
            layers: list[nn.Module] = []
            if n < 0:
                layers.append(nn.MaxPool2d(2**-n, 2**-n, ceil_mode=True))
            for step in range(n):
                if dim < 2:
                    raise ValueError(f"output stride {s}: too few channels to upsample {2**n}x")
                layers.append(nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2))
                dim //= 2
                if step < n - 1:
                    layers += [LayerNorm2d(dim, eps=1e-6), nn.GELU()]
            layers += [
                nn.Conv2d(dim, out_channels, 1, bias=not norm),
                LayerNorm2d(out_channels, eps=1e-6) if norm else nn.Identity(),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=not norm),
                LayerNorm2d(out_channels, eps=1e-6) if norm else nn.Identity(),
            ]
            self.stages.append(nn.Sequential(*layers))

    @property
    def out_channels(self) -> list[int]:
        return [self._out_channels] * len(self.out_strides)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``feats``: the input maps in ``in_strides`` order. Returns one map per
        ``out_strides`` entry, finest first."""
        if len(feats) != len(self.in_strides):
            raise ValueError(f"expected {len(self.in_strides)} input maps, got {len(feats)}")
        return tuple(stage(feats[src]) for stage, src in zip(self.stages, self.sources))
