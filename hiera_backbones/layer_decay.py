"""Layer-wise learning-rate decay: the one rule, for detectron2 and OpenMMLab alike.

A backbone parameter's layer id is :func:`~hiera_backbones.models.base.backbone_layer_id`:
embeddings 0, ``blocks.i`` ``i + 1``, anything else in the backbone (output norms)
``num_layers``, where ``num_layers`` is the number of blocks. Every parameter outside the
backbone (neck, heads) also gets ``num_layers``. The lr scale of layer id ``i`` is
``decay_rate ** (num_layers - i)``: the last block, output norms, neck and heads train at the
base lr, the patch embedding at ``decay_rate ** num_layers`` times it. This is the official Hiera
training code's rule (``hiera/train/utils.py`` ``make_param_groups``, v0.2.0), for which the
paper's layer-decay rates (e.g. 0.8 / 0.875 on Kinetics-400) were tuned; MAE's
``param_groups_lrd`` and ViTDet's ``get_vit_lr_decay_rate`` give the rest one id more, which
would decay every backbone layer once more than those rates assume.
"""

from __future__ import annotations

from torch import nn

from .models.base import backbone_layer_id

__all__ = ["layer_decay_rules", "layer_id", "lr_scale"]


def _check_rate(decay_rate: float) -> float:
    if not 0.0 < float(decay_rate) <= 1.0:
        raise ValueError(f"layer decay rate must be in (0, 1], got {decay_rate}")
    return float(decay_rate)


def layer_id(name: str, num_layers: int, backbone_prefix: str) -> int:
    """Layer id of model parameter ``name`` (DDP's ``module.`` ignored): the backbone rule for
    names under ``backbone_prefix``, ``num_layers`` for the rest."""
    if num_layers < 1:
        raise ValueError(f"num_layers={num_layers} must be >= 1 (the number of blocks)")
    name = name.removeprefix("module.")
    if name.startswith(backbone_prefix):
        return backbone_layer_id(name[len(backbone_prefix):], num_layers)
    return num_layers


def lr_scale(name: str, decay_rate: float, num_layers: int, backbone_prefix: str) -> float:
    """lr multiplier of model parameter ``name``: ``decay_rate ** (num_layers - id)``."""
    rate = _check_rate(decay_rate)
    return rate ** (num_layers - layer_id(name, num_layers, backbone_prefix))


def layer_decay_rules(
    model: nn.Module,
    decay_rate: float,
    num_layers: int | None = None,
    backbone_attr: str = "backbone",
) -> dict[str, tuple[float, bool]]:
    """``{"<backbone_attr>.<name>": (lr scale, no weight decay)}`` for every parameter of
    ``model.<backbone_attr>``, one of our backbones (``num_layers`` defaults to its block count;
    names in its ``no_weight_decay()``, the position embeddings, get no weight decay).
    Parameters outside the backbone train at the base lr (scale 1) and are not listed."""
    rate = _check_rate(decay_rate)
    backbone = getattr(model, backbone_attr, None)
    if backbone is None or not callable(getattr(backbone, "get_layer_id", None)):
        kind = type(backbone).__name__ if backbone is not None else "nothing"
        raise TypeError(
            f"layer-wise lr decay needs model.{backbone_attr} with get_layer_id() and num_layers "
            f"(a hiera_backbones Hiera or HVT); {type(model).__name__}.{backbone_attr} is {kind}"
        )
    no_decay = set(backbone.no_weight_decay()) if hasattr(backbone, "no_weight_decay") else set()
    if num_layers is None:  # the backbone's own ids (its get_layer_id, from 0 to num_layers)
        num_layers = int(backbone.num_layers)
        ids = {name: backbone.get_layer_id(name) for name, _ in backbone.named_parameters()}
    else:  # a forced depth: the shared rule with that many blocks
        num_layers = int(num_layers)
        ids = {name: layer_id(name, num_layers, "") for name, _ in backbone.named_parameters()}
    return {
        f"{backbone_attr}.{name}": (rate ** (num_layers - ids[name]), name in no_decay)
        for name, _ in backbone.named_parameters()
    }
