"""detectron2 backbones: Hiera, HieraDet (SAM 2 / SAM 2.1 trunks) and HVT *are* detectron2
``Backbone`` s (multiple inheritance: the model class first, then ``Backbone``), so their
parameters keep our (= official) names directly under a detector's ``backbone.bottom_up.``.
Outputs are named by stride, ``res{log2(stride)}``. Also the layer-wise lr decay rule as
detectron2's ``lr_factor_func`` (next to the backbone, as detectron2's ViT)."""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from .. import layer_decay
from ..models import HVT, Hiera, HieraDet

__all__ = ["D2HVT", "D2Hiera", "D2HieraDet", "get_hiera_lr_decay_rate"]


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

    #: Per class: the yacs node of its arguments (``arch`` defaults to the model's).
    yacs_node: str

    @configurable
    def __init__(
        self,
        arch: str | dict | None = None,
        *,
        out_features: Sequence[str] | None = ("res2", "res3", "res4", "res5"),
        input_size: Sequence[int] = (1024, 1024),
        square_pad: int = 0,
        out_norm: bool = True,
        freeze_at: int = 0,
        **overrides: Any,
    ) -> None:
        """The one constructor of the detectron2 backbones (arguments: see :class:`D2Hiera`):
        detectron2's arguments as the model's (``out_features`` by stride name as
        ``out_indices``, ``freeze_at`` as ``frozen_stages``), the model built with them and
        with what the class fixes (:meth:`_check_arch`), then the ``Backbone`` attributes."""
        arch = self.default_arch if arch is None else arch
        fixed = self._check_arch(arch, overrides)
        strides = [i["reduction"] for i in self.stage_info(arch, **overrides)]
        super().__init__(  # the model class (next in the MRO)
            arch,
            **overrides,
            **fixed,
            input_size=tuple(input_size),
            out_indices=_out_indices(arch, strides, out_features),
            out_norm=out_norm,
            frozen_stages=_frozen_stages(arch, freeze_at),
        )
        self._setup_d2(square_pad)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        return cls._yacs_kwargs(getattr(cfg.MODEL, cls.yacs_node), input_shape)

    @classmethod
    def _check_arch(cls, arch: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        """Refuses an ``arch`` of the model class that this backbone cannot be; returns model
        arguments the backbone fixes (and pops them from ``overrides``)."""
        return {}

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

    yacs_node = "HIERA"

    @classmethod
    def _check_arch(cls, arch: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        if len(Hiera.resolve_arch(arch, overrides)[1]["patch_stride"]) != 2:
            images = sorted(k for k, v in Hiera.arch_zoo.items() if len(v["input_size"]) == 2)
            raise ValueError(f"D2Hiera: arch={arch!r}; use an image model: {', '.join(images)}")
        return {}


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

    yacs_node = "HIERADET"

    @classmethod
    def _check_arch(cls, arch: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        if isinstance(arch, str) and arch not in HieraDet.arch_zoo:
            raise ValueError(
                f"D2HieraDet: arch={arch!r}; use one of {', '.join(HieraDet.arch_zoo)}"
            )
        return {}


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

    yacs_node = "HVT"

    @configurable
    def __init__(
        self,
        arch: str | dict = "hvt_s_4",
        *,
        patch_size: int = 4,
        out_features: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(arch, patch_size=patch_size, out_features=out_features, **kwargs)

    @classmethod
    def _check_arch(cls, arch: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        if isinstance(arch, str) and arch not in HVT.arch_zoo:
            raise ValueError(f"D2HVT: arch={arch!r}; use one of {', '.join(HVT.arch_zoo)}")
        if overrides.pop("pooling", "2d") != "2d" or overrides.pop("video", False):
            raise ValueError("D2HVT: detection needs the dense image mode (pooling='2d')")
        return {"pooling": "2d"}

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        kwargs = super().from_config(cfg, input_shape)
        # An empty OUT_FEATURES means every stage (HVT-S-4 has five).
        return dict(kwargs, patch_size=cfg.MODEL.HVT.PATCH_SIZE,
                    out_features=kwargs["out_features"] or None)


BACKBONE_REGISTRY.register(D2Hiera)
BACKBONE_REGISTRY.register(D2HieraDet)
BACKBONE_REGISTRY.register(D2HVT)


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

