"""Pure-PyTorch model definitions (no training-framework imports, no file formats)."""

from .base import StageBackbone
from .hiera import HIERA_CONFIGS, Hiera
from .hvt import HVT, HVT_CONFIGS, unpool_1d_tokens
from .necks import SimpleFeaturePyramid
from .pos_embed import resize_grid_pos_embed, resize_pos_embed, resize_temporal_pos_embed
from .registry import build_backbone, list_models, register_model

__all__ = [
    "HIERA_CONFIGS",
    "HVT",
    "HVT_CONFIGS",
    "Hiera",
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
