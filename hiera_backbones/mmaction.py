"""MMAction2 1.x adapter: Hiera and HVT video backbones, the official Hiera / HVT classifier as a
recognition head, and a layer-wise lr decay optimizer-wrapper constructor.

Add to any MMAction2 config::

    custom_imports = dict(imports=['hiera_backbones.mmaction'], allow_failed_imports=False)
    model = dict(
        type='Recognizer3D',
        backbone=dict(type='Hiera', arch='hiera_base_16x224', drop_path_rate=0.2,
                      init_cfg=dict(type='Pretrained', checkpoint='hiera_base_16x224:mae_k400')),
        cls_head=dict(type='HieraHead', in_channels=768, num_classes=400, dropout_ratio=0.3))

Registered in ``mmaction.registry``:

* ``MODELS``: ``Hiera``, ``HVT`` (video backbones), ``HieraHead``, ``HVTHead`` (classifiers).
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``LayerDecayOptimWrapperConstructor``.

Layout of the weights. The backbones *are* our pure-PyTorch models (subclasses that are also
mmengine ``BaseModule``), so their parameters sit directly under ``backbone.`` with the official
names: files from ``hiera-convert --to mmaction`` load with ``load_from`` or
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` with no missing keys,
and ``init_cfg`` also takes official files and ``"<model>:<tag>"`` names (converted on the fly;
HVT image weights are inflated to video). The official classifier (mean over tokens ->
``norm`` -> ``head.projection``; HVT: ``norm`` -> mean -> ``head``) is the recognition head
``HieraHead`` / ``HVTHead``, whose parameters are ``cls_head.norm.*`` and ``cls_head.fc_cls.*``:
give the head the same ``init_cfg`` as the backbone to evaluate a fine-tuned file
(``mae_k400_ft_k400``, or a ``--keep-head`` conversion), it maps ``norm.*`` -> ``norm.*`` and
``head.projection.*`` (HVT ``head.*``) -> ``fc_cls.*``.

Outputs. A backbone returns the map of each requested stage, ``(N, C, T', H', W')``, as one
tensor when one stage is requested (the default: the last one, stride 32 for Hiera) and as a
tuple otherwise. That is what MMAction2's recognition heads and, for AVA, ``AVARoIHead`` /
``SingleRoIExtractor3D`` take (set its ``featmap_stride`` to ``backbone.out_strides[-1]``; the
paper pools RoI features of the last layer with spatial max pooling: ``BBoxHeadAVA(
spatial_pool_type='max')``). ``pad_input=True`` pads H and W up to the size multiple (32 for
Hiera) at the bottom/right, which leaves box coordinates valid: AVA tests on full frames.

Importing this module also works around the mmaction2 1.2.0 wheel bug (open-mmlab/mmaction2#2714,
one warning line) and, next to transformers >= 4.56 (5.x), MMAction2's failing VindLU import (one
warning line; see :func:`hiera_backbones.compat.patch_mmaction_multimodal`), gives the MMAction2
modules that read names numpy 2 removed (``np.NAN`` in the AVA evaluation) those names (see
:func:`hiera_backbones.compat.patch_numpy2_removed_names`), and lets mmengine
resume its own checkpoints on torch >= 2.6 (see
:func:`hiera_backbones.openmmlab.loading.allow_mmengine_checkpoints`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .compat import patch_mmaction_drn, patch_mmaction_multimodal, patch_numpy2_removed_names

# Both before anything imports mmaction.models.
patch_mmaction_drn()
patch_mmaction_multimodal()

import mmaction.models  # noqa: E402,F401  (registers MMAction2's own modules, AVA heads)
from mmaction.models.heads import BaseHead  # noqa: E402
from mmaction.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.model import BaseModule  # noqa: E402

# MMAction2 1.2 reads names numpy 2 removed (np.NAN in AVAMetric whenever a label-map class has
# no ground truth in the split): give those modules, and only them, the old names.
patch_numpy2_removed_names()

from .checkpoints import (  # noqa: E402
    CheckpointError,
    check_fit,
    framework_state,
    read_backbone_weights,
    read_checkpoint,
    resolve_source,
)
from .models import HVT as _HVT  # noqa: E402
from .models import Hiera as _Hiera  # noqa: E402
from .openmmlab.backbone import OpenMMLabBackbone  # noqa: E402
from .openmmlab.loading import allow_mmengine_checkpoints  # noqa: E402
from .openmmlab.optim import LayerDecayOptimWrapperConstructor  # noqa: E402

__all__ = [
    "HVT",
    "HVTHead",
    "Hiera",
    "HieraHead",
    "LayerDecayOptimWrapperConstructor",
    "require_ava",
]

if "LayerDecayOptimWrapperConstructor" not in OPTIM_WRAPPER_CONSTRUCTORS.module_dict:
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(
        name="LayerDecayOptimWrapperConstructor", module=LayerDecayOptimWrapperConstructor
    )
allow_mmengine_checkpoints()

def _log(msg: str) -> None:
    print_log(msg, logger="current")


def require_ava() -> None:
    """Raises a clear ``ImportError`` unless AVA detection can be built: MMDetection's
    ``FastRCNN`` and MMAction2's ``AVARoIHead``, which MMAction2 registers into MMDetection's
    registry only when ``mmdet`` and mmcv's compiled ops import (it skips them silently)."""
    try:
        from mmdet.registry import MODELS as DET_MODELS
    except ImportError as err:
        raise ImportError(
            f"AVA detection needs MMDetection ({err}): pip install 'hiera_backbones[mmdet]'"
        ) from None
    import mmdet.models  # noqa: F401  (registers FastRCNN)

    if "AVARoIHead" not in DET_MODELS.module_dict:
        raise ImportError(
            "MMAction2 did not register AVARoIHead in MMDetection's registry: mmaction.models."
            "roi_heads failed to import, usually because mmcv was installed without its "
            "compiled ops (mmcv-lite). Install mmcv 2.1.0 built with MMCV_WITH_OPS=1."
        )


# ---------------------------------------------------------------------- backbones
class _VideoBackboneMixin(OpenMMLabBackbone):
    """mmengine glue shared by the video backbones: ``init_cfg`` (any backbone file, or a
    trained recognizer's ``backbone.*``), input padding, and one tensor out when one stage is
    requested."""

    task = "video"
    pad_input: bool

    def __init__(
        self,
        arch: str | dict | None = None,
        input_size: Sequence[int] = (16, 224, 224),
        out_indices: Sequence[int] | None = None,
        out_norm: bool = False,
        pad_input: bool = False,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
        frozen_stages: int = -1,
        init_cfg: dict | list[dict] | None = None,
        **kwargs,
    ) -> None:
        """Arguments: see :class:`Hiera`; ``out_indices`` None is the last stage."""
        arch = self.default_arch if arch is None else arch
        _no_classifier(kwargs, arch)
        if out_indices is None:  # the last stage, as the official classifier and AVA heads use
            model_kwargs = dict(kwargs)
            self._check_arch(arch, model_kwargs)
            out_indices = (len(self.stage_info(arch, **model_kwargs)) - 1,)
        self._init_backbone(
            arch, kwargs, input_size=input_size, out_indices=out_indices,
            init_cfg=init_cfg, out_norm=out_norm, drop_path_rate=drop_path_rate,
            grad_checkpointing=grad_checkpointing, frozen_stages=frozen_stages,
        )
        self.pad_input = bool(pad_input)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            return x  # the model's own check reports the shape
        mh, mw = self.size_multiple[-2:]
        ph, pw = -x.shape[-2] % mh, -x.shape[-1] % mw
        # Bottom/right zeros (= the mean colour after normalization): pixel coordinates, and
        # so RoIs, stay valid.
        return F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """``(N, C, T, H, W)`` -> the requested stage maps ``(N, C_i, T', H / s_i, W / s_i)``:
        one tensor for one stage, else a tuple."""
        if self.pad_input:
            x = self._pad(x)
        outs = super().forward(x)
        return outs[0] if len(outs) == 1 else outs


def _no_classifier(kwargs: Mapping, arch: str) -> None:
    if kwargs.get("num_classes"):
        raise ValueError(
            f"{arch}: num_classes is the head's in MMAction2 (cls_head=dict(type='HieraHead' or "
            "'HVTHead', num_classes=...)); the backbone returns feature maps"
        )


@MODELS.register_module(name="Hiera")
class Hiera(_VideoBackboneMixin, _Hiera, BaseModule):
    """Hiera video backbone for MMAction2: ``(N, C, T/2, H/s, W/s)`` maps, ``s`` = 4, 8, 16, 32.

    Args:
        arch: a video model of :data:`~hiera_backbones.models.HIERA_CONFIGS` (default
            ``hiera_base_16x224``; ``hiera_{base,base_plus,large,huge}_16x224``) or a dict
            of architecture overrides
            (``dict(base='hiera_base_16x224', embed_dim=32, stages=(1, 1, 2, 1))``).
        input_size: ``(T, H, W)`` the position embedding is kept at (pretrained weights are
            resized to it once); other inputs with T even and H, W multiples of 32 still run
            (resized on the fly).
        out_indices: stages to return (default: the last, as the official classifier and the
            paper's AVA head use); later stages are not computed.
        out_norm: LayerNorm on each returned map (``out_norms.<stage>``; for RoI heads).
        pad_input: pad H, W at the bottom/right to multiples of 32 (full-frame AVA testing).
        drop_path_rate, grad_checkpointing: stochastic depth; activation checkpointing.
        frozen_stages: -1 trains everything; 0 freezes the patch and position embeddings,
            ``k`` > 0 also stages ``0 .. k-1`` (no gradients, eval mode), as Swin / MViT.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='hiera_base_16x224:mae_k400')``.
        **kwargs: any other :class:`hiera_backbones.models.Hiera` argument (e.g. ``stages``,
            ``embed_dim`` for a reduced model).
    """

    default_arch = "hiera_base_16x224"  # the model's default is an image model


@MODELS.register_module(name="HVT")
class HVT(_VideoBackboneMixin, _HVT, BaseModule):
    """Video HVT for MMAction2 (2D pooling over space, space-time tokens of ``(2, p, p)``
    pixels): ``(N, C, T/2, H/s, W/s)`` maps with ``s = patch_size * 2**k`` after ``k`` pools.

    Args:
        arch: a variant of :data:`~hiera_backbones.models.HVT_CONFIGS`. ``hvt_s_4`` pools after
            blocks 0, 3, 6, 9 (strides 16 ... 256); ``hvt_s_1`` pools only after block 0, so its
            last stage, all 12 blocks deep, has stride 32 (the AVA configs use it).
        input_size: ``(T, H, W)`` the position embeddings are kept at.
        patch_size: spatial patch size (official 16).
        out_indices: stages to return (default: the last).
        temporal_pool: also halve time at every pool.
        out_norm, pad_input, drop_path_rate, grad_checkpointing, frozen_stages, init_cfg: as
            :class:`Hiera`;
            ``init_cfg`` takes image HVT weights (official releases, ``hvt_s_4:in1k``), inflated
            to video on load.
        **kwargs: any other :class:`hiera_backbones.models.HVT` argument.
    """

    def __init__(
        self,
        arch: str | dict = "hvt_s_4",
        input_size: Sequence[int] = (16, 224, 224),
        patch_size: int = 16,
        out_indices: Sequence[int] | None = None,
        temporal_pool: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(
            arch, input_size, out_indices, patch_size=patch_size, temporal_pool=temporal_pool,
            **kwargs,
        )

    @classmethod
    def _check_arch(cls, arch: Any, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        if model_kwargs.pop("pooling", "2d") != "2d" or not model_kwargs.pop("video", True):
            raise ValueError(f"{arch}: MMAction2 needs the video model (pooling='2d', video=True)")
        return {"pooling": "2d", "video": True}


# ---------------------------------------------------------------------- heads
def _classifier_state(head: HieraHead, path: str, prefix: str | None) -> dict[str, torch.Tensor]:
    """The classifier tensors of ``path`` under the head's names (``norm.*``, ``fc_cls.*``)."""
    # The one read, shared below (a trained recognizer's file holds mmengine's classes:
    # allowed since this module's import).
    raw = read_checkpoint(path)
    # A framework checkpoint (a trained recognizer): its cls_head.* as they are.
    found = framework_state(raw, prefix or "cls_head.")
    if found:
        return found
    # Any Hiera / HVT format: official fine-tuned files, `hiera-convert --keep-head` output.
    weights = read_backbone_weights(raw)
    if not weights.head:
        raise CheckpointError(
            f"{path} has no classifier (norm/head), e.g. an MAE or backbone-only file: train "
            f"the head from scratch (no cls_head.init_cfg)"
        )
    is_hvt = weights.arch.startswith(("hvt", "scale_hvt"))
    if is_hvt != head.norm_first:
        want = "HVTHead" if is_hvt else "HieraHead"
        raise CheckpointError(
            f"{path} holds a {weights.arch} classifier; use cls_head=dict(type='{want}') (the "
            "official models differ in the order of norm and mean pooling)"
        )
    out = {}
    for k, v in weights.head.items():
        if k.startswith("norm."):
            out[k] = v
        elif k.startswith(("head.projection.", "head.")):
            out["fc_cls." + k.rsplit(".", 1)[1]] = v
    return out


@MODELS.register_module()
class HieraHead(BaseHead):
    """The official Hiera classifier as an MMAction2 head: the mean over all positions of the
    last map (or of a ``(N, C)`` feature), ``norm`` (LayerNorm), dropout, ``fc_cls``.

    Args:
        num_classes, in_channels, loss_cls: as :class:`mmaction.models.heads.BaseHead`; any other
            ``BaseHead`` argument (``label_smooth_eps``, ``average_clips``, ``topk``) too.
        dropout_ratio: dropout before ``fc_cls`` (the paper: 0.3 for B/B+, 0.5 for L/H).
        init_scale: ``fc_cls`` starts from trunc-normal(0.02) times this (official 0.001, so
            fine-tuning starts from near-uniform predictions); bias 0.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads the classifier of a
            fine-tuned file (official ``{"model_state"}``, ``"<model>:<tag>"``, converter output
            with ``--keep-head``: ``norm.*`` and ``head.projection.*``) or the ``cls_head.*`` of
            a trained recognizer (``prefix`` to change it).
    """

    norm_first = False

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        loss_cls: dict | None = None,
        dropout_ratio: float = 0.0,
        init_scale: float = 0.001,
        init_cfg: dict | list[dict] | None = None,
        **kwargs,
    ) -> None:
        if num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"{type(self).__name__}: num_classes and in_channels must be >= 1, got "
                f"{num_classes} and {in_channels}"
            )
        loss_cls = loss_cls or dict(type="CrossEntropyLoss")
        super().__init__(num_classes, in_channels, loss_cls, init_cfg=init_cfg, **kwargs)
        self.init_scale = float(init_scale)
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def init_weights(self) -> None:
        nn.init.ones_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        nn.init.trunc_normal_(self.fc_cls.weight, std=0.02)
        self.fc_cls.weight.data.mul_(self.init_scale)
        nn.init.zeros_(self.fc_cls.bias)
        cfgs = self.init_cfg or []
        cfgs = [cfgs] if isinstance(cfgs, Mapping) else list(cfgs)
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        if pretrained:
            self.load_classifier(pretrained[-1]["checkpoint"], pretrained[-1].get("prefix"))

    def load_classifier(self, checkpoint: str, prefix: str | None = None) -> None:
        """Loads the classifier of ``checkpoint`` (see ``init_cfg``); raises
        :class:`~hiera_backbones.checkpoints.CheckpointError` if it does not fit."""
        path = resolve_source(checkpoint)
        state = _classifier_state(self, path, prefix)
        check_fit(
            self, state, f"{path}'s classifier", f"{type(self).__name__}(num_classes="
            f"{self.num_classes}, in_channels={self.in_channels})",
            hint="Fine-tune a new head instead (no cls_head.init_cfg)",
        )
        self.load_state_dict(state, strict=True)
        _log(f"{type(self).__name__}: loaded the classifier of {path}")

    def pre_logits(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Pooled, normalized features ``(N, C)``."""
        if isinstance(x, (tuple, list)):
            x = x[-1]  # the deepest requested stage
        if x.dim() < 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected (N, {self.in_channels}, ...) features, got "
                f"shape {tuple(x.shape)}; set in_channels to the backbone's out_channels[-1]"
            )
        if x.dim() == 2:
            return self.norm(x)
        tokens = x.flatten(2).transpose(1, 2)  # (N, T'H'W', C)
        if self.norm_first:
            return self.norm(tokens).mean(dim=1)
        return self.norm(tokens.mean(dim=1))

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor], **kwargs) -> torch.Tensor:
        """Class scores ``(N, num_classes)``."""
        return self.fc_cls(self.dropout(self.pre_logits(x)))


@MODELS.register_module()
class HVTHead(HieraHead):
    """The official HVT classifier: ``norm`` on every token, then the mean, dropout, ``fc_cls``
    (``head.*`` of official checkpoints). Arguments as :class:`HieraHead`."""

    norm_first = True
