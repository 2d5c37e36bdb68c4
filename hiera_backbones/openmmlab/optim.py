"""The layer-wise lr decay optimizer-wrapper constructor for mmengine (MMDetection and MMAction2
register it in their ``OPTIM_WRAPPER_CONSTRUCTORS``)."""

from __future__ import annotations

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..layer_decay import layer_decay_rules

__all__ = ["LayerDecayOptimWrapperConstructor"]


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's ``DefaultOptimWrapperConstructor`` plus layer-wise lr decay for a model whose
    backbone is one of ours (the rule: :mod:`hiera_backbones.layer_decay`).

    Every ``paramwise_cfg`` option of the default constructor (``custom_keys``,
    ``norm_decay_mult``, ``bias_decay_mult``, ...) still applies, then the backbone lr scale
    multiplies each parameter's lr, and position embeddings get weight decay 0. Extra
    ``paramwise_cfg`` keys: ``decay_rate`` (default 1.0: no layer decay, as the Hiera COCO
    recipe), ``num_layers`` (default: the backbone's block count), ``backbone`` (attribute
    name, default ``"backbone"``).
    """

    _OWN_KEYS = ("decay_rate", "num_layers", "backbone")

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        decay_rate = float(paramwise_cfg.get("decay_rate", 1.0))
        if not 0.0 < decay_rate <= 1.0:
            raise ValueError(f"paramwise_cfg.decay_rate must be in (0, 1], got {decay_rate}")
        num_layers = paramwise_cfg.get("num_layers")
        if num_layers is not None and int(num_layers) < 1:
            raise ValueError(f"paramwise_cfg.num_layers must be >= 1, got {num_layers}")
        self.decay_rate = decay_rate
        self.num_layers = None if num_layers is None else int(num_layers)
        self.backbone_attr = str(paramwise_cfg.get("backbone", "backbone"))
        # Always non-empty, so the base class goes through add_params().
        paramwise_cfg.setdefault("decay_rate", decay_rate)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_lr is None:
            raise ValueError("optimizer.lr must be set for layer-wise lr decay")

    def add_params(self, params, module, prefix="", is_dcn_module=None):
        start = len(params)
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # recursive call for a child; the top-level call does the rest
            return
        rules = layer_decay_rules(module, self.decay_rate, self.num_layers, self.backbone_attr)
        names = {id(p): n for n, p in module.named_parameters()}
        scales = []
        for group in params[start:]:
            rule = rules.get(names.get(id(group["params"][0]), ""))
            if rule is None:
                continue
            scale, no_decay = rule
            group["lr"] = group.get("lr", self.base_lr) * scale
            group["lr_scale"] = scale
            if no_decay and self.base_wd is not None:
                group["weight_decay"] = 0.0
            scales.append(scale)
        if scales:
            print_log(
                f"layer-wise lr decay {self.decay_rate}: backbone lr x{min(scales):.3g} "
                f"(embeddings) to x{max(scales):.3g}; position embeddings without weight "
                "decay",
                logger="current",
            )
