"""Hiera and HVT as multi-scale backbones for detectron2, MMDetection and MMAction2.

``import hiera_backbones`` needs only torch and timm; the framework adapters
(``hiera_backbones.detectron2``, ``hiera_backbones.mmdet``, ``hiera_backbones.mmaction``) import
their framework when they are imported themselves.
"""

from .models import build_backbone, list_models

__version__ = "0.1.0"
__all__ = ["__version__", "build_backbone", "list_models"]
