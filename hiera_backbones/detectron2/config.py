"""detectron2 yacs configs: ``MODEL.HIERA`` / ``MODEL.HIERADET`` / ``MODEL.HVT`` nodes and the
``build_*_fpn_backbone`` builders for ``MODEL.BACKBONE.NAME`` (the LazyConfig configs build
:class:`~.backbones.D2Hiera` & co. directly)."""

from __future__ import annotations

import copy

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from .backbones import D2HVT, D2Hiera, D2HieraDet

__all__ = [
    "add_hiera_config",
    "build_hiera_fpn_backbone",
    "build_hieradet_fpn_backbone",
    "build_hvt_fpn_backbone",
]


#: ``MODEL.<node>`` defaults: the COCO recipes' Hiera-B, SAM 2.1 Hiera-B+ trunk, HVT-S-4 dense.
_NODE_DEFAULTS = {
    "HIERA": dict(ARCH="hiera_base_224", DROP_PATH_RATE=0.2),
    "HIERADET": dict(ARCH="sam2_hiera_base_plus", DROP_PATH_RATE=0.2),
    # An empty OUT_FEATURES means every stage (HVT-S-4 has five).
    "HVT": dict(ARCH="hvt_s_4", PATCH_SIZE=4, OUT_FEATURES=[], DROP_PATH_RATE=0.1),
}
_COMMON_DEFAULTS = dict(
    OUT_FEATURES=["res2", "res3", "res4", "res5"], INPUT_SIZE=[1024, 1024], SQUARE_PAD=0,
    OUT_NORM=True, GRAD_CHECKPOINTING=False, FREEZE_AT=0,
)


def add_hiera_config(cfg: CfgNode) -> CfgNode:
    """Adds ``MODEL.HIERA``, ``MODEL.HIERADET`` and ``MODEL.HVT`` (defaults: the COCO recipes'
    Hiera-B, SAM 2.1 Hiera-B+ trunk and HVT-S-4 dense) to a yacs config; returns it."""
    for node, defaults in _NODE_DEFAULTS.items():
        # Deep copies: a config's lists must not be the table's (or another node's).
        setattr(cfg.MODEL, node, CfgNode(copy.deepcopy({**_COMMON_DEFAULTS, **defaults})))
    return cfg


def _fpn(cfg: CfgNode, bottom_up: Backbone, square_pad: int) -> FPN:
    in_features = list(cfg.MODEL.FPN.IN_FEATURES) or bottom_up.out_features
    shapes = bottom_up.output_shape()
    missing = [f for f in in_features if f not in shapes]
    if missing:
        raise ValueError(f"MODEL.FPN.IN_FEATURES {missing} are not among {list(shapes)}")
    # Mask R-CNN's RPN expects P2-P6: add P6 by max-pooling unless the backbone provides it.
    coarsest = max(shapes[f].stride for f in in_features)
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool() if coarsest < 64 else None,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        square_pad=square_pad,
    )


@BACKBONE_REGISTRY.register()
def build_hiera_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """yacs: ``FPN`` over :class:`D2Hiera` (``MODEL.HIERA.*``, ``MODEL.FPN.*``; the FPN gets
    ``MODEL.HIERA.SQUARE_PAD``)."""
    bottom_up = D2Hiera(cfg, input_shape)
    return _fpn(cfg, bottom_up, cfg.MODEL.HIERA.SQUARE_PAD)


@BACKBONE_REGISTRY.register()
def build_hieradet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """yacs: ``FPN`` over :class:`D2HieraDet` (``MODEL.HIERADET.*``, ``MODEL.FPN.*``; the FPN
    gets ``MODEL.HIERADET.SQUARE_PAD``)."""
    bottom_up = D2HieraDet(cfg, input_shape)
    return _fpn(cfg, bottom_up, cfg.MODEL.HIERADET.SQUARE_PAD)


@BACKBONE_REGISTRY.register()
def build_hvt_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """yacs: ``FPN`` over :class:`D2HVT` (``MODEL.HVT.*``, ``MODEL.FPN.*``)."""
    bottom_up = D2HVT(cfg, input_shape)
    return _fpn(cfg, bottom_up, cfg.MODEL.HVT.SQUARE_PAD)

