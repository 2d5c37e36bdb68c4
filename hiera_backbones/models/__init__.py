"""Pure-PyTorch model definitions (no training-framework imports)."""

from .hiera import HIERA_CONFIGS, Hiera, resize_pos_embed, resize_temporal_pos_embed
from .hvt import (
    HVT,
    HVT_CHECKPOINT_URLS,
    HVT_CONFIGS,
    hvt_1d_to_2d_state_dict,
    inflate_hvt_state_dict,
    resample_patch_kernel,
    unpool_1d_tokens,
)
from .necks import SimpleFeaturePyramid
from .registry import build_backbone, list_models, register_model

__all__ = [
    "HIERA_CONFIGS",
    "HVT",
    "HVT_CHECKPOINT_URLS",
    "HVT_CONFIGS",
    "Hiera",
    "SimpleFeaturePyramid",
    "build_backbone",
    "hvt_1d_to_2d_state_dict",
    "inflate_hvt_state_dict",
    "list_models",
    "register_model",
    "resample_patch_kernel",
    "resize_pos_embed",
    "resize_temporal_pos_embed",
    "unpool_1d_tokens",
]
