"""detectron2 integration: Hiera, HieraDet (SAM 2 / SAM 2.1 trunks) and HVT as detectron2
backbones, checkpoint loading, layer-wise lr decay, yacs registration and the synthetic shapes
data set.

Importing this package imports detectron2; nothing else in hiera_backbones does. By concern:
:mod:`.backbones` (the backbones, lr decay), :mod:`.config` (yacs nodes and FPN builders),
:mod:`.checkpoint` (``hiera_backbones://`` paths, :class:`HieraCheckpointer`), :mod:`.data`
(the shapes set); everything is importable from here.

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

from .backbones import D2HVT, D2Hiera, D2HieraDet, get_hiera_lr_decay_rate
from .checkpoint import HieraBackbonesPathHandler, HieraCheckpointer
from .config import (
    add_hiera_config,
    build_hiera_fpn_backbone,
    build_hieradet_fpn_backbone,
    build_hvt_fpn_backbone,
)
from .data import register_coco_shapes

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
