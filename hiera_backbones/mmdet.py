"""MMDetection 3.x adapter: Hiera, HieraDet (SAM 2 / SAM 2.1 trunks) and HVT backbones, a
channels-first LayerNorm for necks and heads, and a layer-wise lr decay optimizer-wrapper
constructor.

Add to any MMDetection config::

    custom_imports = dict(imports=['hiera_backbones.mmdet'], allow_failed_imports=False)
    model = dict(
        backbone=dict(_delete_=True, type='Hiera', arch='hiera_base_224',
                      input_size=(1024, 1024), drop_path_rate=0.2,
                      init_cfg=dict(type='Pretrained', checkpoint='hiera_base_224:mae_in1k')),
        neck=dict(in_channels=[96, 192, 384, 768]))

Registered in ``mmdet.registry``:

* ``MODELS``: ``Hiera`` (incl. timm's abs-win ``hiera_*_abswin_256``), ``HieraDet``, ``HVT``
  (backbones), ``LayerNorm2d`` (norm for ``norm_cfg``).
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``LayerDecayOptimWrapperConstructor``.

The backbones *are* our pure-PyTorch models (subclasses that are also mmengine ``BaseModule``),
so their parameters sit directly under ``backbone.``: files from ``hiera-convert --to mmdet``
load with ``load_from`` or ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
with no missing keys, and ``init_cfg`` also takes official files, e.g. SAM 2.1 releases for
``HieraDet`` (``checkpoint='sam2.1_hiera_base_plus:sa1b'``), converted on the fly (see
:func:`hiera_backbones.checkpoints.load_pretrained`). Importing this module also lets mmengine
resume its own checkpoints on torch >= 2.6 (:func:`~hiera_backbones.openmmlab.loading.
allow_mmengine_checkpoints`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.model import BaseModule
from torch import nn

from .models import HVT as _HVT
from .models import Hiera as _Hiera
from .models import HieraDet as _HieraDet
from .openmmlab.backbone import OpenMMLabBackbone
from .openmmlab.loading import allow_mmengine_checkpoints
from .openmmlab.optim import LayerDecayOptimWrapperConstructor

__all__ = ["HVT", "Hiera", "HieraDet", "LayerDecayOptimWrapperConstructor", "LayerNorm2d"]

if "LayerDecayOptimWrapperConstructor" not in OPTIM_WRAPPER_CONSTRUCTORS.module_dict:
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(
        name="LayerDecayOptimWrapperConstructor", module=LayerDecayOptimWrapperConstructor
    )
allow_mmengine_checkpoints()


class _DetectionBackbone(OpenMMLabBackbone):
    """The constructor MMDetection's backbones share (arguments: see :class:`Hiera`)."""

    task = "detection"

    def __init__(
        self,
        arch: str | dict | None = None,
        input_size: Sequence[int] = (1024, 1024),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_norm: bool = True,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
        frozen_stages: int = -1,
        init_cfg: dict | list[dict] | None = None,
        **kwargs,
    ) -> None:
        self._init_backbone(
            arch, kwargs, input_size=input_size, out_indices=out_indices,
            init_cfg=init_cfg, out_norm=out_norm, drop_path_rate=drop_path_rate,
            grad_checkpointing=grad_checkpointing, frozen_stages=frozen_stages,
        )


@MODELS.register_module(name="Hiera")
class Hiera(_DetectionBackbone, _Hiera, BaseModule):
    """Hiera image backbone for MMDetection: NCHW maps at strides 4/8/16/32.

    Args:
        arch: an image model of :data:`~hiera_backbones.models.HIERA_CONFIGS` (default
            ``hiera_base_224``; ``hiera_{tiny,small,base,base_plus,large,huge}_224``), timm's
            abs-win ``hiera_{small,base}_abswin_256`` or a dict of architecture overrides
            (``dict(base='hiera_tiny_224', embed_dim=32)``).
        input_size: ``(H, W)`` the position embedding is kept at (pretrained weights are
            resized to it once); other inputs with H, W multiples of 32 still run (resized on
            the fly). Use the training crop size, e.g. 1024 for LSJ.
        out_indices: stages to return; later stages are not computed.
        out_norm: LayerNorm on each returned map (the official intermediates are not normalized;
            ViTDet-style FPNs expect normalized inputs).
        drop_path_rate, grad_checkpointing: stochastic depth; activation checkpointing.
        frozen_stages: -1 trains everything; 0 freezes the patch and position embeddings,
            ``k`` > 0 also stages ``0 .. k-1`` (no gradients, eval mode), as Swin / MViT.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='hiera_base_224:mae_in1k')``.
        **kwargs: any other :class:`hiera_backbones.models.Hiera` argument (e.g. ``stages``).
    """


@MODELS.register_module(name="HieraDet")
class HieraDet(_DetectionBackbone, _HieraDet, BaseModule):
    """SAM 2 / SAM 2.1 HieraDet trunk for MMDetection: NCHW maps at strides 4/8/16/32
    (Hiera-B+: 112/224/448/896 channels).

    Args:
        arch: ``sam2_hiera_{tiny,small,base_plus,large}`` (default ``sam2_hiera_base_plus``) or a
            dict of architecture overrides
            (``dict(base='sam2_hiera_tiny', embed_dim=32, stages=(1, 1, 2, 1))``).
        input_size: the nominal ``(H, W)`` (multiples of 32); no parameter depends on it (the
            abs-win position embedding is interpolated for every input).
        out_indices, out_norm, drop_path_rate, grad_checkpointing, frozen_stages: as
            :class:`Hiera`.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='sam2.1_hiera_base_plus:sa1b')``, a
            SAM 2 / 2.1 release file, a timm ``sam2_hiera_*`` file or a converted file.
        **kwargs: any other :class:`hiera_backbones.models.HieraDet` argument (``window_spec``,
            ``global_att_blocks``, ...).
    """


@MODELS.register_module(name="HVT")
class HVT(_DetectionBackbone, _HVT, BaseModule):
    """HVT backbone for MMDetection with 2D (grid) pooling: NCHW maps at strides
    ``patch_size * 2**k``; ``patch_size=4`` gives 4/8/16/32/64 for HVT-S-4's five stages.

    Args:
        arch: a variant of :data:`~hiera_backbones.models.HVT_CONFIGS` (e.g. ``hvt_s_4``) or a
            dict of architecture overrides.
        input_size: ``(H, W)`` the position embeddings are kept at (see :class:`Hiera`).
        patch_size: 4 for FPN strides from 4; official (16) checkpoints are resampled on load.
        out_indices: stages to return (default: all).
        out_norm, drop_path_rate, grad_checkpointing, frozen_stages, init_cfg: as
            :class:`Hiera`.
        **kwargs: any other :class:`hiera_backbones.models.HVT` argument.
    """

    def __init__(
        self,
        arch: str | dict = "hvt_s_4",
        input_size: Sequence[int] = (1024, 1024),
        patch_size: int = 4,
        out_indices: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(arch, input_size, out_indices, patch_size=patch_size, **kwargs)

    @classmethod
    def _check_arch(cls, arch: Any, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        if model_kwargs.pop("video", False) or model_kwargs.pop("pooling", "2d") != "2d":
            raise ValueError(f"{arch}: detection needs 2D maps (pooling='2d', video=False)")
        return {"pooling": "2d"}


@MODELS.register_module(name="LayerNorm2d")
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an ``(N, C, H, W)`` map (ViTDet's "LN" in FPN and heads):
    ``norm_cfg=dict(type='LayerNorm2d')``. The output is contiguous NCHW: mmcv's ``RoIAlign``
    reads the raw NCHW memory of its input, so a permuted view would give it scrambled
    features."""

    _abbr_ = "ln"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()
