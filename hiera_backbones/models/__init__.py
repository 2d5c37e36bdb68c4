"""Pure-PyTorch model definitions (no training-framework imports, no file formats)."""

from .base import StageBackbone
from .hiera import HIERA_ABSWIN_CONFIGS, HIERA_CONFIGS, Hiera
from .hieradet import HIERADET_CONFIGS, HieraDet
from .hvt import HVT, HVT_CONFIGS, unpool_1d_tokens
from .necks import SimpleFeaturePyramid
from .pos_embed import resize_grid_pos_embed, resize_pos_embed, resize_temporal_pos_embed
from .registry import build_backbone, list_models, register_model

__all__ = [
    "HIERADET_CONFIGS",
    "HIERA_ABSWIN_CONFIGS",
    "HIERA_CONFIGS",
    "HVT",
    "HVT_CONFIGS",
    "Hiera",
    "HieraDet",
    "SimpleFeaturePyramid",
    "StageBackbone",
    "build_backbone",
    "list_models",
    "register_model",
    "resize_grid_pos_embed",
    "resize_pos_embed",
    "resize_temporal_pos_embed",
    "unpool_1d_tokens",
]
