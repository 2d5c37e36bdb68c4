"""Pure-PyTorch model definitions (no training-framework imports)."""

from .hiera import HIERA_CONFIGS, Hiera, resize_pos_embed, resize_temporal_pos_embed
from .registry import build_backbone, list_models, register_model

__all__ = [
    "HIERA_CONFIGS",
    "Hiera",
    "build_backbone",
    "list_models",
    "register_model",
    "resize_pos_embed",
    "resize_temporal_pos_embed",
]
