"""detectron2 integration: Hiera, HieraDet (SAM 2 / SAM 2.1 trunks) and HVT as detectron2
backbones, checkpoint loading, layer-wise lr decay, yacs registration and the synthetic shapes
data set.

Importing this module imports detectron2; nothing else in the package does.

* :class:`D2Hiera` / :class:`D2HieraDet` / :class:`D2HVT` *are* our backbones (multiple
  inheritance: the model class first, then detectron2's ``Backbone``), so their parameters keep
  our (= official) names and sit directly under the detector's ``backbone.bottom_up.`` in a
  ``FPN``: files written by ``hiera-convert --to detectron2`` load with no missing backbone
  keys. Outputs are named by stride, ``res{log2(stride)}`` (``res2`` ... ``res5`` for Hiera and
  HieraDet).
* :class:`HieraCheckpointer`: a ``DetectionCheckpointer`` that also loads official / MAE / timm /
  Hugging Face Hiera files and HVT releases by converting them on the fly (and says so), resizes
  position embeddings of converted files to the detector's size, resolves
  ``"<model>:<tag>"`` names (e.g. ``hiera_base_224:mae_in1k``) and reads every ``.pth`` with
  ``torch.load(weights_only=True)``. SAM 2 / SAM 2.1 release files (and timm ``sam2_hiera_*``)
  load into a :class:`D2HieraDet` the same way (``sam2.1_hiera_base_plus:sa1b``).
* ``hiera_backbones://<source>`` paths (an iopath handler registered on import): detectron2's
  own ``DetectionCheckpointer`` (``tools/lazyconfig_train_net.py``, ``tools/train_net.py``)
  loads any file ``hiera-convert`` reads, converted on the fly for the detector's backbone,
  e.g. ``train.init_checkpoint = "hiera_backbones://hiera_base_224:mae_in1k"`` or
  ``MODEL.WEIGHTS hiera_backbones:///path/to/mae_hiera_base_224.pth``.
* :func:`get_hiera_lr_decay_rate`: ``lr_factor_func`` for ``get_default_optimizer_params``.
* yacs: ``MODEL.BACKBONE.NAME`` = ``D2Hiera`` / ``D2HieraDet`` / ``D2HVT`` /
  ``build_hiera_fpn_backbone`` / ``build_hieradet_fpn_backbone`` / ``build_hvt_fpn_backbone``
  after :func:`add_hiera_config`.
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from . import layer_decay
from .checkpoints import (
    CheckpointError,
    backbone_weights_for,
    cache_dir,
    content_metadata,
    export_weights,
    is_official_tag,
    load_torch_file,
    read_backbone_weights,
    read_checkpoint,
    resolve_source,
)
from .checkpoints.hiera_formats import detect_hiera_format
from .checkpoints.hieradet_formats import detect_hieradet_format
from .checkpoints.hvt_formats import detect_hvt_format
from .checkpoints.io import RawCheckpoint
from .data import SHAPE_CLASSES, ensure_coco_shapes
from .models import HVT, Hiera, HieraDet

__all__ = [
    "D2HVT",
    "D2Hiera",
    "D2HieraDet",
    "HieraBackbonesPathHandler",
    "HieraCheckpointer",
    "add_hiera_config",
    "build_hiera_fpn_backbone",
    "build_hieradet_fpn_backbone",
    "build_hvt_fpn_backbone",
    "get_hiera_lr_decay_rate",
    "register_coco_shapes",
]

def _feature_name(stride: int) -> str:
    return f"res{int(math.log2(stride))}"


def _out_indices(
    arch: str, strides: Sequence[int], out_features: Sequence[str] | None
) -> tuple[int, ...]:
    """Stage indices for feature names ``res{log2(stride)}``, checked."""
    names = [_feature_name(s) for s in strides]
    if out_features is None:
        return tuple(range(len(names)))
    if isinstance(out_features, str):
        out_features = [out_features]
    unknown = [f for f in out_features if f not in names]
    if unknown or not out_features:
        raise ValueError(
            f"{arch}: out_features={list(out_features)} is not a non-empty subset of its stages "
            f"{names} (named res<log2 stride>)"
        )
    indices = [names.index(f) for f in out_features]
    if indices != sorted(set(indices)):
        raise ValueError(f"{arch}: out_features={list(out_features)} must be finest first")
    return tuple(indices)


def _frozen_stages(arch: Any, freeze_at: int) -> int:
    """detectron2's ``freeze_at`` (0 nothing, 1 the stem, k the stem and k - 1 stages) as the
    models' ``frozen_stages`` (-1 nothing, 0 the embeddings, k the embeddings and k stages)."""
    if int(freeze_at) < 0:
        raise ValueError(f"{arch}: freeze_at={freeze_at} must be >= 0")
    return int(freeze_at) - 1


#: Every D2Hiera / D2HieraDet / D2HVT alive in this process (weakly held): the models a
#: ``hiera_backbones://`` path is converted for.
_BUILT_BACKBONES: weakref.WeakSet = weakref.WeakSet()
_BUILD_COUNTER = itertools.count()


class _D2BackboneMixin:
    """detectron2 ``Backbone`` behaviour on top of one of our models (which sets
    ``out_strides``, ``out_channels`` and ``size_multiple``)."""

    def _setup_d2(self, square_pad: int) -> None:
        # hiera_backbones:// paths convert for the last one built.
        self._build_order = next(_BUILD_COUNTER)
        _BUILT_BACKBONES.add(self)
        names = [_feature_name(s) for s in self.out_strides]
        self._out_features = names
        self._out_feature_channels = dict(zip(names, self.out_channels))
        self._out_feature_strides = dict(zip(names, self.out_strides))
        square_pad = int(square_pad)
        if square_pad < 0 or (square_pad and square_pad % self.size_divisibility):
            raise ValueError(
                f"{self.arch}: square_pad={square_pad} must be 0 or a multiple of "
                f"{self.size_divisibility}"
            )
        self._square_pad = square_pad

    @classmethod
    def _model_kwargs(
        cls,
        arch: Any,
        overrides: dict[str, Any],
        *,
        input_size: Sequence[int],
        out_features: Sequence[str] | None,
        out_norm: bool,
        freeze_at: int,
    ) -> dict[str, Any]:
        """detectron2's arguments as the model's: ``out_features`` (by stride name) as
        ``out_indices``, ``freeze_at`` as ``frozen_stages``."""
        info = cls.stage_info(arch, **overrides)
        return dict(
            overrides,
            input_size=tuple(input_size),
            out_indices=_out_indices(arch, [i["reduction"] for i in info], out_features),
            out_norm=out_norm,
            frozen_stages=_frozen_stages(arch, freeze_at),
        )

    @staticmethod
    def _yacs_kwargs(c: CfgNode, input_shape: ShapeSpec | None) -> dict[str, Any]:
        """The constructor arguments every ``MODEL.<BACKBONE>`` node holds."""
        return dict(
            arch=c.ARCH,
            out_features=list(c.OUT_FEATURES),
            input_size=tuple(c.INPUT_SIZE),
            square_pad=c.SQUARE_PAD,
            out_norm=c.OUT_NORM,
            drop_path_rate=c.DROP_PATH_RATE,
            grad_checkpointing=c.GRAD_CHECKPOINTING,
            freeze_at=c.FREEZE_AT,
            in_chans=input_shape.channels if input_shape and input_shape.channels else 3,
        )

    @property
    def out_features(self) -> list[str]:
        return list(self._out_features)

    @property
    def size_divisibility(self) -> int:
        # The model's own constraint (Hiera: mask units and every unroll level, 32; HVT: the
        # patch) and exact 2x nesting of the returned maps for FPN's top-down additions.
        return math.lcm(*self.size_multiple[-2:], max(self.out_strides))

    @property
    def padding_constraints(self) -> dict[str, int]:
        constraints = {"size_divisibility": self.size_divisibility}
        if self._square_pad:
            constraints["square_size"] = self._square_pad
        return constraints

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(N, 3, H, W)`` -> ``{"res<k>": (N, C, H / 2**k, W / 2**k)}``."""
        return dict(zip(self._out_features, super().forward(x)))


class D2Hiera(_D2BackboneMixin, Hiera, Backbone):
    """An image :class:`~hiera_backbones.models.Hiera` that is a detectron2 ``Backbone``.

    Args:
        arch: official image model name, e.g. ``"hiera_base_224"`` (geometry and width).
        out_features: stages to return, named by stride: ``res2`` (4) ... ``res5`` (32).
        input_size: ``(H, W)`` the position embedding is defined on: the training size (e.g.
            1024x1024 with square padding) so it is resized once, when weights are loaded.
        square_pad: > 0 pads every batch to this square (used when this is the outermost
            backbone; inside an ``FPN`` set the FPN's ``square_pad``).
        out_norm: LayerNorm on each returned map (``out_norms.<stage>``; new parameters, like
            detectron2's MViT ``scale<k>_norm``).
        freeze_at: detectron2's ``FREEZE_AT``: 0 trains everything, 1 freezes the patch and
            position embeddings (the "stem"), ``k`` > 1 also stages ``res2`` ..
            ``res{k}`` (the first ``k - 1`` stages); frozen parts stay in eval mode.
        **overrides: any :class:`~hiera_backbones.models.Hiera` argument (``drop_path_rate``,
            ``grad_checkpointing``, ``stages``, ``embed_dim``, ...).
    """

    @configurable
    def __init__(
        self,
        arch: str = "hiera_base_224",
        *,
        out_features: Sequence[str] | None = ("res2", "res3", "res4", "res5"),
        input_size: Sequence[int] = (1024, 1024),
        square_pad: int = 0,
        out_norm: bool = True,
        freeze_at: int = 0,
        **overrides: Any,
    ) -> None:
        if len(Hiera.resolve_arch(arch, overrides)[1]["patch_stride"]) != 2:
            images = sorted(k for k, v in Hiera.arch_zoo.items() if len(v["input_size"]) == 2)
            raise ValueError(f"D2Hiera: arch={arch!r}; use an image model: {', '.join(images)}")
        cfg = self._model_kwargs(
            arch, overrides, input_size=input_size, out_features=out_features,
            out_norm=out_norm, freeze_at=freeze_at,
        )
        super().__init__(arch, **cfg)
        self._setup_d2(square_pad)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        return cls._yacs_kwargs(cfg.MODEL.HIERA, input_shape)


class D2HieraDet(_D2BackboneMixin, HieraDet, Backbone):
    """A SAM 2 / SAM 2.1 :class:`~hiera_backbones.models.HieraDet` trunk that is a detectron2
    ``Backbone``: ``res2`` ... ``res5`` at strides 4 ... 32 (Hiera-B+: 112 / 224 / 448 / 896
    channels). Parameters keep SAM 2's trunk names (MLP as ``mlp.fc1`` / ``fc2``), so SAM 2 release
    files load through :class:`HieraCheckpointer` or ``hiera_backbones://sam2.1_hiera_<size>:sa1b``
    with no missing keys.

    Args:
        arch: a SAM 2 trunk (``"sam2_hiera_tiny"``, ``"sam2_hiera_small"``,
            ``"sam2_hiera_base_plus"``, ``"sam2_hiera_large"``) or a dict of overrides.
        out_features: stages to return, ``res2`` (4) ... ``res5`` (32).
        input_size: the nominal ``(H, W)``; no parameter depends on it (the abs-win position
            embedding is interpolated for every input), it must follow the size rule (multiples
            of 32) and names the converted file of a ``hiera_backbones://`` path.
        square_pad, out_norm, freeze_at: as :class:`D2Hiera`.
        **overrides: any :class:`~hiera_backbones.models.HieraDet` argument (``drop_path_rate``,
            ``window_spec``, ``global_att_blocks``, ``stages``, ``embed_dim``, ...).
    """

    @configurable
    def __init__(
        self,
        arch: str = "sam2_hiera_base_plus",
        *,
        out_features: Sequence[str] | None = ("res2", "res3", "res4", "res5"),
        input_size: Sequence[int] = (1024, 1024),
        square_pad: int = 0,
        out_norm: bool = True,
        freeze_at: int = 0,
        **overrides: Any,
    ) -> None:
        if isinstance(arch, str) and arch not in HieraDet.arch_zoo:
            raise ValueError(
                f"D2HieraDet: arch={arch!r}; use one of {', '.join(HieraDet.arch_zoo)}"
            )
        cfg = self._model_kwargs(
            arch, overrides, input_size=input_size, out_features=out_features,
            out_norm=out_norm, freeze_at=freeze_at,
        )
        super().__init__(arch, **cfg)
        self._setup_d2(square_pad)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        return cls._yacs_kwargs(cfg.MODEL.HIERADET, input_shape)


class D2HVT(_D2BackboneMixin, HVT, Backbone):
    """An image :class:`~hiera_backbones.models.HVT` in dense mode (``pooling="2d"``) that is a
    detectron2 ``Backbone``. With ``patch_size=4`` stage ``k`` has stride ``4 * 2**k``: HVT-S-4
    (pools after blocks 0, 3, 6, 9) gives ``res2`` ... ``res6``, strides 4 ... 64.

    Args:
        arch: official variant, e.g. ``"hvt_s_4"``.
        patch_size: patch (= stride of stage 0); the converter resamples the 16x16 kernel.
        out_features: stages to return (default: all), named ``res{log2(stride)}``.
        input_size, square_pad, out_norm, freeze_at, **overrides: as :class:`D2Hiera`.
    """

    @configurable
    def __init__(
        self,
        arch: str = "hvt_s_4",
        *,
        patch_size: int = 4,
        out_features: Sequence[str] | None = None,
        input_size: Sequence[int] = (1024, 1024),
        square_pad: int = 0,
        out_norm: bool = True,
        freeze_at: int = 0,
        **overrides: Any,
    ) -> None:
        if isinstance(arch, str) and arch not in HVT.arch_zoo:
            raise ValueError(f"D2HVT: arch={arch!r}; use one of {', '.join(HVT.arch_zoo)}")
        if overrides.pop("pooling", "2d") != "2d" or overrides.pop("video", False):
            raise ValueError("D2HVT: detection needs the dense image mode (pooling='2d')")
        cfg = self._model_kwargs(
            arch, dict(overrides, patch_size=patch_size), input_size=input_size,
            out_features=out_features, out_norm=out_norm, freeze_at=freeze_at,
        )
        super().__init__(arch, **cfg, pooling="2d")
        self._setup_d2(square_pad)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        kwargs = cls._yacs_kwargs(cfg.MODEL.HVT, input_shape)
        # An empty OUT_FEATURES means every stage (HVT-S-4 has five).
        return dict(kwargs, patch_size=cfg.MODEL.HVT.PATCH_SIZE,
                    out_features=kwargs["out_features"] or None)


# ---------------------------------------------------------------------------- yacs configs
def add_hiera_config(cfg: CfgNode) -> CfgNode:
    """Adds ``MODEL.HIERA``, ``MODEL.HIERADET`` and ``MODEL.HVT`` (defaults: the COCO recipes'
    Hiera-B, SAM 2.1 Hiera-B+ trunk and HVT-S-4 dense) to a yacs config; returns it."""
    cfg.MODEL.HIERA = CfgNode()
    cfg.MODEL.HIERA.ARCH = "hiera_base_224"
    cfg.MODEL.HIERA.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.HIERA.INPUT_SIZE = [1024, 1024]
    cfg.MODEL.HIERA.SQUARE_PAD = 0
    cfg.MODEL.HIERA.OUT_NORM = True
    cfg.MODEL.HIERA.DROP_PATH_RATE = 0.2
    cfg.MODEL.HIERA.GRAD_CHECKPOINTING = False
    cfg.MODEL.HIERA.FREEZE_AT = 0
    cfg.MODEL.HIERADET = CfgNode()
    cfg.MODEL.HIERADET.ARCH = "sam2_hiera_base_plus"
    cfg.MODEL.HIERADET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.HIERADET.INPUT_SIZE = [1024, 1024]
    cfg.MODEL.HIERADET.SQUARE_PAD = 0
    cfg.MODEL.HIERADET.OUT_NORM = True
    cfg.MODEL.HIERADET.DROP_PATH_RATE = 0.2
    cfg.MODEL.HIERADET.GRAD_CHECKPOINTING = False
    cfg.MODEL.HIERADET.FREEZE_AT = 0
    cfg.MODEL.HVT = CfgNode()
    cfg.MODEL.HVT.ARCH = "hvt_s_4"
    cfg.MODEL.HVT.PATCH_SIZE = 4
    cfg.MODEL.HVT.OUT_FEATURES = []  # empty: every stage
    cfg.MODEL.HVT.INPUT_SIZE = [1024, 1024]
    cfg.MODEL.HVT.SQUARE_PAD = 0
    cfg.MODEL.HVT.OUT_NORM = True
    cfg.MODEL.HVT.DROP_PATH_RATE = 0.1
    cfg.MODEL.HVT.GRAD_CHECKPOINTING = False
    cfg.MODEL.HVT.FREEZE_AT = 0
    return cfg


BACKBONE_REGISTRY.register(D2Hiera)
BACKBONE_REGISTRY.register(D2HieraDet)
BACKBONE_REGISTRY.register(D2HVT)


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


# ---------------------------------------------------------------------------- layer decay
def get_hiera_lr_decay_rate(
    name: str,
    lr_decay_rate: float = 1.0,
    num_layers: int = 24,
    prefix: str = "backbone.bottom_up.",
) -> float:
    """lr multiplier of detector parameter ``name`` for layer-wise lr decay; use as
    ``optimizer.params.lr_factor_func = partial(get_hiera_lr_decay_rate, num_layers=N,
    lr_decay_rate=d)`` with ``N = len(model.backbone.bottom_up.blocks)`` (the number of blocks).

    The rule is the package's one (:mod:`hiera_backbones.layer_decay`, shared with OpenMMLab;
    the official Hiera training code's): ``patch_embed`` / ``pos_embed`` id 0, ``blocks.i.*``
    ``i + 1``, everything else (backbone output norms, neck, heads) ``num_layers``; the factor
    is ``lr_decay_rate ** (num_layers - id)``. The Hiera COCO recipe uses no decay
    (``lr_decay_rate=1``)."""
    return layer_decay.lr_scale(name, lr_decay_rate, num_layers, prefix)


# ---------------------------------------------------------------------------- checkpoints
class HieraBackbonesPathHandler(PathHandler):
    """``hiera_backbones://<source>`` for detectron2's own checkpointer and tools.

    ``<source>`` is anything ``hiera-convert`` reads: ``"<model>:<tag>"`` (official file,
    downloaded once into the cache; offline, one error naming the file to fetch), or a local path
    (``hiera_backbones:///abs/path.pth``, ``hiera_backbones://relative/path.pth``) to an official,
    MAE, timm, Hugging Face, transformers, HVT or SAM 2 / SAM 2.1 file (e.g.
    ``hiera_backbones://sam2.1_hiera_base_plus:sa1b`` for a :class:`D2HieraDet`).
    ``get_local_path`` converts it for the detector being loaded: of the :class:`D2Hiera` /
    :class:`D2HieraDet` / :class:`D2HVT` alive in this process with
    the architecture the file holds, the one built last (position embeddings resized to its
    ``input_size``; HVT made 2D with its patch size), and writes
    ``{"model": {"backbone.bottom_up.<key>": ...}}`` into ``<cache>/detectron2/`` (atomically),
    which ``DetectionCheckpointer`` then reads like any detectron2 checkpoint. The model must
    exist before loading, as in detectron2's tools."""

    PREFIX = "hiera_backbones://"

    def _get_supported_prefixes(self) -> list[str]:
        return [self.PREFIX]

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        source = path[len(self.PREFIX):]
        if not os.path.exists(source) and comm.get_world_size() > 1:
            # Every process loads at once: the main process downloads, the others then find
            # the file in the cache.
            if comm.is_main_process():
                resolve_source(source)
            comm.synchronize()
        raw = read_checkpoint(resolve_source(source))  # read (and hashed) once
        backbone = _backbone_for(raw, path)
        size = "x".join(str(s) for s in backbone.input_size)
        patch = f"-p{backbone.patch_size}" if isinstance(backbone, HVT) else ""
        name = os.path.splitext(os.path.basename(raw.path))[0]
        dst = os.path.join(
            cache_dir(), "detectron2",
            f"{name}-{raw.sha256[:12]}-{backbone.arch}-{size}{patch}.pth",
        )
        if not os.path.isfile(dst):
            weights = backbone_weights_for(backbone, raw, target="detectron2")
            export_weights(weights, dst, to="detectron2", force=True)
        return dst

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any):
        self._check_kwargs(kwargs)
        if "w" in mode or "a" in mode:
            raise OSError(f"{path}: hiera_backbones:// paths are read-only")
        return open(self._get_local_path(path), mode, buffering=buffering)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        source = path[len(self.PREFIX):]
        return os.path.exists(source) or ":" in source

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return self._exists(path, **kwargs)


def _backbone_for(raw: RawCheckpoint, path: str) -> Hiera | HieraDet | HVT:
    """The D2Hiera / D2HieraDet / D2HVT that ``source``'s weights are for: of those alive in
    this process with the file's architecture, the one built last (detectron2's tools build the
    model, then load the checkpoint)."""
    gc.collect()  # models dropped but still in reference cycles must not count
    built = sorted(_BUILT_BACKBONES, key=lambda b: b._build_order)
    if not built:
        raise CheckpointError(
            f"{path}: no D2Hiera / D2HieraDet / D2HVT has been built in this process; build the "
            "model first (as detectron2's tools do), then load the checkpoint"
        )
    arch = read_backbone_weights(raw).arch
    matches = [b for b in built if b.is_arch(arch)]
    if not matches:
        have = ", ".join(sorted({b.arch for b in built}))
        raise CheckpointError(f"{path} holds {arch} weights; the built backbones are {have}")
    return matches[-1]


PathManager.register_handler(HieraBackbonesPathHandler(), allow_override=True)


class HieraCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` for detectors with a :class:`D2Hiera` / :class:`D2HieraDet` /
    :class:`D2HVT`.

    On top of detectron2's behaviour:

    * ``.pth`` files are read with ``torch.load(weights_only=True)`` (plus
      :data:`hiera_backbones.checkpoints.io.SAFE_GLOBALS`), so a file that would run code is
      refused with a clear error, whatever fvcore's default is. This covers ``--resume``
      checkpoints.
    * Backbone files that are not detector checkpoints (official ``{"model_state": ...}`` and MAE
      files, timm / Hugging Face Hiera, HVT releases, this package's converted files for any
      target and size) go through the converter: names get the backbone's prefix in the
      detector, MAE-only tensors are dropped, position embeddings (and HVT's layout and patch
      kernel) are adapted to the backbone. Foreign formats are logged as converted on the fly.
      A file holding another architecture, or missing backbone tensors, raises
      :class:`~hiera_backbones.checkpoints.CheckpointError`.
    * ``"<model>:<tag>"`` (e.g. ``"hiera_base_224:mae_in1k"``) names an official file, downloaded
      once into ``~/.cache/hiera_backbones`` (by the main process first).
    """

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if path and is_official_tag(path):
            # One download: the main process fetches, the others then find it cached.
            if comm.is_main_process():
                path = resolve_source(path)
            comm.synchronize()
            if not comm.is_main_process():
                path = resolve_source(path)
        return super().load(path, *args, **kwargs)

    def _torch_load(self, f: str) -> dict[str, Any]:
        # Not memory-mapped: a resumed optimizer state lives on while training overwrites the
        # checkpoint it came from.
        return load_torch_file(f, mmap=False)

    def _backbone(self) -> tuple[str, Hiera | HieraDet | HVT] | None:
        for name, module in self.model.named_modules():
            if isinstance(module, (D2Hiera, D2HieraDet, D2HVT)):
                return name + "." if name else "", module
        return None

    def _load_file(self, filename: str) -> dict[str, Any]:
        loaded = super()._load_file(filename)
        found = self._backbone()
        if found is None or loaded.get("matching_heuristics") or filename.endswith(".pkl"):
            return loaded
        prefix, backbone = found
        state = loaded.get("model")
        own = content_metadata(loaded) is not None
        if not own and isinstance(state, dict) and set(state) & set(self.model.state_dict()):
            return loaded  # a detector checkpoint (e.g. --resume): detectron2's usual path
        original = loaded["model"] if set(loaded) <= {"model", "matching_heuristics"} else loaded
        fmt = None if own else (
            detect_hieradet_format(original)
            or detect_hiera_format(original)
            or detect_hvt_format(original)
        )
        if not own and fmt is None:
            return loaded  # unknown: let detectron2 report what does not match
        return {"model": self._convert(filename, backbone, prefix, fmt)}

    def _convert(
        self, filename: str, backbone: Hiera | HieraDet | HVT, prefix: str, fmt: str | None
    ):
        weights = backbone_weights_for(backbone, filename, target="detectron2")
        if fmt is not None:
            size = "x".join(str(s) for s in backbone.input_size)
            self.logger.info(
                f"{filename} is a {fmt} checkpoint of {weights.arch}: converting it on the fly "
                f"for the detector (input size {size}; dropped {len(weights.dropped)} tensors "
                f"not used by the backbone). To do this once: hiera-convert {filename} OUT.pth "
                f"--to detectron2 --input-size {size.replace('x', ' ')}"
            )
        return {prefix + k: v for k, v in weights.backbone.items()}


# ---------------------------------------------------------------------------- data
def register_coco_shapes(
    root: str | None = None,
    *,
    prefix: str = "coco_shapes",
    num_train: int = 200,
    num_val: int = 50,
    image_size: tuple[int, int] = (128, 128),
    max_shapes: int = 3,
    seed: int = 0,
) -> tuple[str, str]:
    """Registers the synthetic shapes set (:mod:`hiera_backbones.data.coco_shapes`) as
    ``<prefix>_train`` / ``<prefix>_val``, generating it first if ``root`` (default
    ``$DETECTRON2_DATASETS/coco_shapes``, as detectron2's builtin data sets) has no annotations
    (:func:`hiera_backbones.data.ensure_coco_shapes`: safe for concurrent processes). Returns
    the two data set names."""
    if root is None:
        root = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "coco_shapes")
    root = os.path.abspath(os.path.expanduser(root))
    ann = ensure_coco_shapes(root, num_train, num_val, tuple(image_size), max_shapes, seed)
    names = []
    for split in ("train", "val"):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            if MetadataCatalog.get(name).get("json_file") == ann[split]:
                names.append(name)
                continue
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, {}, ann[split], os.path.join(root, split))
        MetadataCatalog.get(name).set(thing_classes=list(SHAPE_CLASSES))
        names.append(name)
    return names[0], names[1]
