"""detectron2 integration: Hiera and HVT as detectron2 backbones, checkpoint loading, layer-wise lr
decay, yacs registration and the synthetic shapes data set.

Importing this module imports detectron2; nothing else in the package does.

* :class:`D2Hiera` / :class:`D2HVT` *are* our backbones (multiple inheritance: the model class
  first, then detectron2's ``Backbone``), so their parameters keep our (= official) names and sit
  directly under the detector's ``backbone.bottom_up.`` in a ``FPN``: files written by
  ``hiera-convert --to detectron2`` load with no missing backbone keys. Outputs are named by
  stride, ``res{log2(stride)}`` (``res2`` ... ``res5`` for Hiera).
* :class:`HieraCheckpointer`: a ``DetectionCheckpointer`` that also loads official / MAE / timm /
  Hugging Face Hiera files and HVT releases by converting them on the fly (and says so), resizes
  position embeddings of converted files to the detector's size, resolves
  ``"<model>:<tag>"`` names (e.g. ``hiera_base_224:mae_in1k``) and reads every ``.pth`` with
  ``torch.load(weights_only=True)``.
* :func:`get_hiera_lr_decay_rate`: ``lr_factor_func`` for ``get_default_optimizer_params``.
* yacs: ``MODEL.BACKBONE.NAME`` = ``D2Hiera`` / ``D2HVT`` / ``build_hiera_fpn_backbone`` /
  ``build_hvt_fpn_backbone`` after :func:`add_hiera_config`.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import shutil
import tempfile
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

from .checkpoints.convert import OFFICIAL_CHECKPOINTS, read_backbone_weights, resolve_source
from .checkpoints.hiera_formats import detect_hiera_format
from .checkpoints.hvt_formats import detect_hvt_format
from .checkpoints.io import CheckpointError
from .data import SHAPE_CLASSES, make_coco_shapes
from .models.hiera import HIERA_CONFIGS, Hiera
from .models.hvt import HVT, HVT_CONFIGS, hvt_pool_blocks

__all__ = [
    "D2HVT",
    "D2Hiera",
    "HieraCheckpointer",
    "add_hiera_config",
    "build_hiera_fpn_backbone",
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


class _D2BackboneMixin:
    """detectron2 ``Backbone`` behaviour on top of one of our models (which sets
    ``out_strides``, ``out_channels`` and ``size_multiple``)."""

    def _setup_d2(self, square_pad: int) -> None:
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
        **overrides: Any,
    ) -> None:
        if arch not in HIERA_CONFIGS or len(HIERA_CONFIGS[arch]["input_size"]) != 2:
            images = sorted(k for k, v in HIERA_CONFIGS.items() if len(v["input_size"]) == 2)
            raise ValueError(f"D2Hiera: arch={arch!r}; use an image model: {', '.join(images)}")
        cfg = {**HIERA_CONFIGS[arch], **overrides}
        stages = len(cfg["stages"])
        q_pool = cfg.get("q_pool", 3)
        strides = [cfg["patch_stride"][-1] * cfg["q_stride"][-1] ** min(i, q_pool)
                   for i in range(stages)]
        cfg.update(
            arch=arch,
            input_size=tuple(input_size),
            out_indices=_out_indices(arch, strides, out_features),
            out_norm=out_norm,
        )
        super().__init__(**cfg)
        self._setup_d2(square_pad)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        c = cfg.MODEL.HIERA
        return dict(
            arch=c.ARCH,
            out_features=list(c.OUT_FEATURES),
            input_size=tuple(c.INPUT_SIZE),
            square_pad=c.SQUARE_PAD,
            out_norm=c.OUT_NORM,
            drop_path_rate=c.DROP_PATH_RATE,
            grad_checkpointing=c.GRAD_CHECKPOINTING,
            in_chans=input_shape.channels if input_shape and input_shape.channels else 3,
        )


class D2HVT(_D2BackboneMixin, HVT, Backbone):
    """An image :class:`~hiera_backbones.models.HVT` in dense mode (``pooling="2d"``) that is a
    detectron2 ``Backbone``. With ``patch_size=4`` stage ``k`` has stride ``4 * 2**k``: HVT-S-4
    (pools after blocks 0, 3, 6, 9) gives ``res2`` ... ``res6``, strides 4 ... 64.

    Args:
        arch: official variant, e.g. ``"hvt_s_4"``.
        patch_size: patch (= stride of stage 0); the converter resamples the 16x16 kernel.
        out_features: stages to return (default: all), named ``res{log2(stride)}``.
        input_size, square_pad, out_norm, **overrides: as :class:`D2Hiera`.
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
        **overrides: Any,
    ) -> None:
        if arch not in HVT_CONFIGS:
            raise ValueError(f"D2HVT: arch={arch!r}; use one of {', '.join(HVT_CONFIGS)}")
        if overrides.get("pooling", "2d") != "2d" or overrides.get("video", False):
            raise ValueError("D2HVT: detection needs the dense image mode (pooling='2d')")
        cfg = {**HVT_CONFIGS[arch], **overrides}
        num_stages = len(hvt_pool_blocks(cfg.get("depth", 12), cfg["pool_block_width"])) + 1
        strides = [patch_size * 2**k for k in range(num_stages)]
        cfg.update(
            arch=arch,
            pooling="2d",
            patch_size=patch_size,
            input_size=tuple(input_size),
            out_indices=_out_indices(arch, strides, out_features),
            out_norm=out_norm,
        )
        super().__init__(**cfg)
        self._setup_d2(square_pad)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        c = cfg.MODEL.HVT
        return dict(
            arch=c.ARCH,
            patch_size=c.PATCH_SIZE,
            out_features=list(c.OUT_FEATURES) or None,
            input_size=tuple(c.INPUT_SIZE),
            square_pad=c.SQUARE_PAD,
            out_norm=c.OUT_NORM,
            drop_path_rate=c.DROP_PATH_RATE,
            grad_checkpointing=c.GRAD_CHECKPOINTING,
            in_chans=input_shape.channels if input_shape and input_shape.channels else 3,
        )


# ---------------------------------------------------------------------------- yacs configs
def add_hiera_config(cfg: CfgNode) -> CfgNode:
    """Adds ``MODEL.HIERA`` and ``MODEL.HVT`` (defaults: the COCO recipe's Hiera-B / HVT-S-4
    dense) to a yacs config; returns it."""
    cfg.MODEL.HIERA = CfgNode()
    cfg.MODEL.HIERA.ARCH = "hiera_base_224"
    cfg.MODEL.HIERA.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.HIERA.INPUT_SIZE = [1024, 1024]
    cfg.MODEL.HIERA.SQUARE_PAD = 0
    cfg.MODEL.HIERA.OUT_NORM = True
    cfg.MODEL.HIERA.DROP_PATH_RATE = 0.2
    cfg.MODEL.HIERA.GRAD_CHECKPOINTING = False
    cfg.MODEL.HVT = CfgNode()
    cfg.MODEL.HVT.ARCH = "hvt_s_4"
    cfg.MODEL.HVT.PATCH_SIZE = 4
    cfg.MODEL.HVT.OUT_FEATURES = []  # empty: every stage
    cfg.MODEL.HVT.INPUT_SIZE = [1024, 1024]
    cfg.MODEL.HVT.SQUARE_PAD = 0
    cfg.MODEL.HVT.OUT_NORM = True
    cfg.MODEL.HVT.DROP_PATH_RATE = 0.1
    cfg.MODEL.HVT.GRAD_CHECKPOINTING = False
    return cfg


BACKBONE_REGISTRY.register(D2Hiera)
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
    lr_decay_rate=d)`` with ``N = len(model.backbone.bottom_up.blocks)``.

    Layer ids follow the backbones' ``get_layer_id`` (official Hiera fine-tuning rule):
    ``patch_embed`` / ``pos_embed`` 0, ``blocks.i.*`` ``i + 1`` (HVT's stage embeddings
    ``blocks.i.pos_embed`` included). Everything else, backbone output norms, neck and heads,
    is id ``num_layers + 1``, one above the last block as in ViTDet's
    ``get_vit_lr_decay_rate``. Returns ``lr_decay_rate ** (num_layers + 1 - id)``. The Hiera
    COCO recipe uses no decay (``lr_decay_rate=1``)."""
    if num_layers < 1:
        raise ValueError(f"num_layers={num_layers} must be >= 1 (the number of blocks)")
    name = name.removeprefix("module.")  # DistributedDataParallel
    layer_id = num_layers + 1
    if name.startswith(prefix):
        rest = name[len(prefix):]
        if rest.startswith(("pos_embed", "patch_embed")):
            layer_id = 0
        elif rest.startswith("blocks."):
            layer_id = int(rest.split(".")[1]) + 1
            if layer_id > num_layers:
                raise ValueError(f"{name}: block index beyond num_layers={num_layers}")
    return lr_decay_rate ** (num_layers + 1 - layer_id)


# ---------------------------------------------------------------------------- checkpoints
#: Classes unpickled besides tensors and plain containers. Checkpoints detectron2 writes
#: (model, trainer, optimizer, scheduler and grad-scaler states) need none; the official HVT
#: releases (DeiT training code) carry an ``argparse.Namespace`` of training arguments, a plain
#: attribute bag. Add a class only after checking that rebuilding it cannot run code.
SAFE_CHECKPOINT_GLOBALS: list[Any] = [argparse.Namespace]


def _same_arch(a: str, b: str) -> bool:
    # Aliases (HVT-S-4 = Scale HVT-Ti-4) are the same architecture.
    configs = {**HIERA_CONFIGS, **HVT_CONFIGS}
    return a == b or (a in configs and configs.get(a) == configs.get(b))


class HieraCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` for detectors with a :class:`D2Hiera` / :class:`D2HVT`.

    On top of detectron2's behaviour:

    * ``.pth`` files are read with ``torch.load(weights_only=True)`` (plus
      :data:`SAFE_CHECKPOINT_GLOBALS`), so a file that would run code is refused with a clear
      error, whatever fvcore's default is. This covers ``--resume`` checkpoints.
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
        if path and path in OFFICIAL_CHECKPOINTS:
            # One download: the main process fetches, the others then find it cached.
            if comm.is_main_process():
                path = resolve_source(path)
            comm.synchronize()
            if not comm.is_main_process():
                path = resolve_source(path)
        return super().load(path, *args, **kwargs)

    def _torch_load(self, f: str) -> dict[str, Any]:
        try:
            with torch.serialization.safe_globals(SAFE_CHECKPOINT_GLOBALS):
                return torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"{f} holds pickled Python objects beyond tensors and plain containers, so it "
                f"was not loaded (a pickle can run arbitrary code): {str(err).splitlines()[0]}. "
                "Convert backbone weights with `hiera-convert`; for a trusted detector checkpoint "
                "add the class to hiera_backbones.detectron2.SAFE_CHECKPOINT_GLOBALS."
            ) from None

    def _backbone(self) -> tuple[str, Hiera | HVT] | None:
        for name, module in self.model.named_modules():
            if isinstance(module, (D2Hiera, D2HVT)):
                return name + "." if name else "", module
        return None

    def _load_file(self, filename: str) -> dict[str, Any]:
        loaded = super()._load_file(filename)
        found = self._backbone()
        if found is None or loaded.get("matching_heuristics") or filename.endswith(".pkl"):
            return loaded
        prefix, backbone = found
        state = loaded.get("model")
        meta = loaded.get("meta")
        own = isinstance(meta, dict) and meta.get("format") == "hiera_backbones"
        if not own and isinstance(state, dict) and set(state) & set(self.model.state_dict()):
            return loaded  # a detector checkpoint (e.g. --resume): detectron2's usual path
        original = loaded["model"] if set(loaded) <= {"model", "matching_heuristics"} else loaded
        fmt = None if own else (detect_hiera_format(original) or detect_hvt_format(original))
        if not own and fmt is None:
            return loaded  # unknown: let detectron2 report what does not match
        return {"model": self._convert(filename, backbone, prefix, fmt)}

    def _convert(self, filename: str, backbone: Hiera | HVT, prefix: str, fmt: str | None):
        hvt = {}
        if isinstance(backbone, HVT):
            hvt = dict(hvt_mode="2d", patch_size=backbone.patch_size)
        weights = read_backbone_weights(
            filename, input_size=backbone.input_size, target="detectron2", **hvt
        )
        if not _same_arch(weights.arch, backbone.arch):
            raise CheckpointError(
                f"{filename} holds {weights.arch} weights but the detector's backbone is "
                f"{backbone.arch}"
            )
        expected = {
            k: v.shape for k, v in backbone.state_dict().items() if not k.startswith("out_norms.")
        }
        missing = sorted(set(expected) - set(weights.backbone))
        wrong = sorted(k for k in set(expected) & set(weights.backbone)
                       if weights.backbone[k].shape != expected[k])
        if missing or wrong:
            raise CheckpointError(
                f"{filename} does not fit the detector's {backbone.arch} (built with other "
                f"overrides?): missing {missing[:4]}, wrong shapes {wrong[:4]}"
            )
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
    ``$DETECTRON2_DATASETS/coco_shapes``, as detectron2's builtin data sets) has no annotations.
    Generation goes to a temporary folder renamed into place, so concurrent processes are safe.
    Returns the two data set names."""
    if root is None:
        root = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "coco_shapes")
    root = os.path.abspath(os.path.expanduser(root))
    ann = {s: os.path.join(root, "annotations", f"instances_{s}.json") for s in ("train", "val")}
    if not all(os.path.isfile(p) for p in ann.values()):
        if os.path.exists(root):
            raise FileExistsError(f"{root} exists but lacks {ann['train']} / {ann['val']}")
        os.makedirs(os.path.dirname(root), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".coco_shapes-", dir=os.path.dirname(root))
        make_coco_shapes(tmp, num_train, num_val, tuple(image_size), max_shapes, seed)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 is for the temporary name only
        try:
            os.rename(tmp, root)
        except OSError:  # another process got there first; its files are the same
            shutil.rmtree(tmp, ignore_errors=True)
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
