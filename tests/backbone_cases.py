"""One small model per backbone kind (Hiera image/video, HVT 1d/2d/video) with a valid input,
shared by the contract tests (``test_backbone_contract.py``) and the compile/export tests
(``test_deploy.py``)."""

from __future__ import annotations

import torch

from hiera_backbones import build_backbone

HIERA_TINY = dict(stages=(1, 1, 2, 1))  # fast Hiera geometry
HVT_TINY = dict(embed_dim=32, num_heads=2, depth=4, pool_block_width=1)  # 5 stages
# name -> (model, constructor arguments, a valid input shape)
BACKBONES = {
    "hiera": ("hiera_tiny_224", HIERA_TINY, (2, 3, 64, 96)),
    "hiera_video": ("hiera_base_16x224", HIERA_TINY, (1, 3, 4, 64, 64)),
    "hvt_1d": ("hvt_s_4", dict(pooling="1d", input_size=(96, 128), **HVT_TINY), (2, 3, 96, 128)),
    "hvt_2d": ("hvt_s_4", dict(pooling="2d", **HVT_TINY), (2, 3, 64, 96)),
    "hvt_video": ("hvt_s_4", dict(pooling="2d", video=True, **HVT_TINY), (1, 3, 4, 64, 64)),
}


def build_case(kind: str, **kwargs) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model of ``kind`` (seeded, extra constructor arguments ``kwargs``) and an input."""
    name, base, shape = BACKBONES[kind]
    torch.manual_seed(0)
    return build_backbone(name, **base, **kwargs), torch.randn(shape)
