"""Checkpoint formats, key maps and converters (no training-framework imports)."""

from .convert import (
    OFFICIAL_CHECKPOINTS,
    TARGET_PREFIXES,
    TARGETS,
    BackboneWeights,
    convert_checkpoint,
    export_weights,
    load_backbone_checkpoint,
    read_backbone_weights,
    resolve_source,
    verify_against_official,
)
from .io import CheckpointError, read_checkpoint

__all__ = [
    "OFFICIAL_CHECKPOINTS",
    "TARGETS",
    "TARGET_PREFIXES",
    "BackboneWeights",
    "CheckpointError",
    "convert_checkpoint",
    "export_weights",
    "load_backbone_checkpoint",
    "read_backbone_weights",
    "read_checkpoint",
    "resolve_source",
    "verify_against_official",
]
