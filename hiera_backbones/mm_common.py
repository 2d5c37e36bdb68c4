"""Pieces shared by the OpenMMLab adapters (MMDetection, MMAction2).

Nothing here imports mmengine at module import time, so ``hiera_backbones`` stays light; the
functions that need it import it when called.

* :func:`hiera_arguments`, :func:`checked_input_size`: an adapter's Hiera arguments (official
  config, user overrides, the adapter's own settings), with one error for an arch of the wrong
  kind and one for an ``input_size`` of the wrong length.
* :func:`layer_decay_rules`: the layer-wise lr decay rule for a model whose ``backbone`` is one of
  our backbones (pure PyTorch).
* :func:`layer_decay_constructor`: an mmengine optimizer-wrapper constructor applying that rule,
  for each framework to register in its ``OPTIM_WRAPPER_CONSTRUCTORS``.
* :func:`allow_mmengine_checkpoints`: lets ``torch.load(weights_only=True)`` (torch >= 2.6's
  default, which mmengine 0.10.x relies on) read the checkpoints mmengine itself saves, by
  allowlisting the few harmless classes they contain, instead of turning ``weights_only`` off.
* :func:`load_pretrained`: ``init_cfg=dict(type='Pretrained', ...)`` for our backbones: converter
  output, official files (converted on the fly) and whole-model mmengine checkpoints.
* :func:`setup_cpu_distributed`: what mmengine's ``pytorch`` launcher lacks on CPU-only machines.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "PretrainedInitMixin",
    "allow_mmengine_checkpoints",
    "checked_input_size",
    "fetch_checkpoint",
    "hiera_arguments",
    "layer_decay_constructor",
    "layer_decay_rules",
    "load_pretrained",
    "mmengine_state_with_prefix",
    "mmengine_safe_globals",
    "setup_cpu_distributed",
]


# ---------------------------------------------------------------------- backbone arguments
def checked_input_size(
    input_size: Sequence[int], spatial_dims: int, arch: str, task: str
) -> tuple[int, ...]:
    """``input_size`` as ints, which must be ``(H, W)`` (2 dims) or ``(T, H, W)`` (3 dims)."""
    size = tuple(int(s) for s in input_size)
    if len(size) != spatial_dims:
        wanted = "(H, W)" if spatial_dims == 2 else "(T, H, W)"
        raise ValueError(f"{arch}: input_size must be {wanted} for {task}, got {input_size}")
    return size


def hiera_arguments(
    arch: str,
    spatial_dims: int,
    task: str,
    overrides: Mapping[str, Any],
    input_size: Sequence[int],
    **settings: Any,
) -> dict[str, Any]:
    """Arguments of :class:`~hiera_backbones.models.Hiera` for an OpenMMLab backbone: the
    official config of ``arch``, which must be a ``spatial_dims``-D (2: image, 3: video) model,
    then the user's ``overrides`` (e.g. ``stages``), then the checked ``input_size`` and the
    adapter's own ``settings``."""
    from .models.hiera import HIERA_CONFIGS

    names = [n for n, c in HIERA_CONFIGS.items() if len(c["patch_stride"]) == spatial_dims]
    if arch not in names:
        raise ValueError(f"unknown Hiera arch {arch!r} for {task}; choose from {names}")
    size = checked_input_size(input_size, spatial_dims, arch, task)
    return {**HIERA_CONFIGS[arch], **overrides, "arch": arch, "input_size": size, **settings}


# ---------------------------------------------------------------------- layer-wise lr decay
def layer_decay_rules(
    model: nn.Module,
    decay_rate: float,
    num_layers: int | None = None,
    backbone_attr: str = "backbone",
) -> dict[str, tuple[float, bool]]:
    """Per-parameter lr scale and "no weight decay" flag for ``model.<backbone_attr>``'s params.

    A backbone parameter ``name`` gets lr scale ``decay_rate ** (num_layers - layer_id)`` with
    ``layer_id = backbone.get_layer_id(name)``: 0 for the embeddings, ``i + 1`` for
    ``blocks.i``, ``num_layers`` for everything after the blocks (output norms), so the last
    block and everything outside the backbone (neck, heads) train at the base lr. Names in
    ``backbone.no_weight_decay()`` (position embeddings) get no weight decay.

    Args:
        model: the whole model (detector, recognizer); must have ``model.<backbone_attr>``.
        decay_rate: in (0, 1]; 1 means no decay.
        num_layers: defaults to ``backbone.num_layers`` (the number of blocks).
        backbone_attr: attribute holding the backbone.

    Returns:
        ``{"backbone.<name>": (lr_scale, no_weight_decay)}`` for every backbone parameter.
    """
    if not 0.0 < float(decay_rate) <= 1.0:
        raise ValueError(f"layer decay rate must be in (0, 1], got {decay_rate}")
    backbone = getattr(model, backbone_attr, None)
    if backbone is None or not callable(getattr(backbone, "get_layer_id", None)):
        kind = type(backbone).__name__ if backbone is not None else "nothing"
        raise TypeError(
            f"layer-wise lr decay needs model.{backbone_attr} with get_layer_id() and num_layers "
            f"(a hiera_backbones Hiera or HVT); {type(model).__name__}.{backbone_attr} is {kind}"
        )
    if num_layers is None:
        num_layers = int(backbone.num_layers)
    no_decay = set(backbone.no_weight_decay()) if hasattr(backbone, "no_weight_decay") else set()
    rules = {}
    for name, _ in backbone.named_parameters():
        layer_id = min(int(backbone.get_layer_id(name)), num_layers)
        scale = float(decay_rate) ** (num_layers - layer_id)
        rules[f"{backbone_attr}.{name}"] = (scale, name in no_decay)
    return rules


_CONSTRUCTOR_CLASS: type | None = None


def layer_decay_constructor() -> type:
    """The optimizer-wrapper constructor class (built once, on first call, importing mmengine).

    It is mmengine's ``DefaultOptimWrapperConstructor`` plus :func:`layer_decay_rules`:
    every ``paramwise_cfg`` option of the default constructor (``custom_keys``,
    ``norm_decay_mult``, ``bias_decay_mult``, ...) still applies, then the backbone lr scale
    multiplies each parameter's lr, and position embeddings get weight decay 0. Extra
    ``paramwise_cfg`` keys: ``decay_rate`` (default 1.0: no layer decay, as the Hiera COCO
    recipe), ``num_layers`` (default: the backbone's block count), ``backbone`` (attribute
    name, default ``"backbone"``).
    """
    global _CONSTRUCTOR_CLASS
    if _CONSTRUCTOR_CLASS is not None:
        return _CONSTRUCTOR_CLASS
    from mmengine.logging import print_log
    from mmengine.optim import DefaultOptimWrapperConstructor

    class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
        """Layer-wise lr decay for Hiera / HVT backbones (see
        :func:`hiera_backbones.mm_common.layer_decay_constructor`)."""

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

    _CONSTRUCTOR_CLASS = LayerDecayOptimWrapperConstructor
    return _CONSTRUCTOR_CLASS


# ---------------------------------------------------------------------- safe checkpoint loading
def _history_buffer_method(obj: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling with ``weights_only=True``.

    ``HistoryBuffer`` pickles its ``statistics_methods`` dict as ``getattr(HistoryBuffer, name)``
    calls. Allowlisting ``getattr`` itself would let a file reach any attribute of any allowed
    object (a classic escape route), so only those lookups are served."""
    from mmengine.logging.history_buffer import HistoryBuffer

    # The built-in statistics plus any registered with HistoryBuffer.register_statistics.
    allowed = {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"refusing getattr({getattr(obj, '__name__', type(obj).__name__)}, {name!r}) in a "
        "checkpoint: only HistoryBuffer statistics methods are allowed"
    )


def mmengine_safe_globals() -> list[Any]:
    """What ``torch.load(weights_only=True)`` must additionally accept to read the checkpoints
    mmengine itself saves: ``HistoryBuffer`` (in ``message_hub``), the numpy arrays and scalars it
    holds, its ``getattr(HistoryBuffer, 'mean')``-style method references (served by a
    restricted stand-in, never the real ``getattr``), and ``collections.Counter`` (milestones
    of ``MultiStepLR``). Each is plain data: unpickling them runs no code of the file's choosing
    (numpy's ``_reconstruct`` only rebuilds an array whose elements are checked the same way)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    # Unpickling a dtype sets its state, so the concrete dtype classes (numpy.dtypes.*) are
    # needed too; numeric ones only (an object dtype would have to be allowlisted separately).
    numeric = (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
               np.uint8, np.bool_)
    return [
        HistoryBuffer, np.ndarray, np.dtype, _reconstruct, scalar, collections.Counter,
        *(type(np.dtype(t)) for t in numeric),
        (_history_buffer_method, "builtins.getattr"),
    ]


def allow_mmengine_checkpoints() -> None:
    """Lets mmengine 0.10.x resume (``resume=True``, ``load_from``) on torch >= 2.6.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so torch >= 2.6 loads with
    ``weights_only=True`` and refuses the checkpoints mmengine itself writes. Rather than turning
    the check off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), this adds only the classes of
    :func:`mmengine_safe_globals` to torch's allowlist; any other object in a file is still
    refused. Idempotent; a no-op on torch < 2.4 (no allowlist, and no ``weights_only`` default).
    """
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:
        return
    current = torch.serialization.get_safe_globals()
    missing = [g for g in mmengine_safe_globals() if g not in current]
    if missing:
        add(missing)


# ---------------------------------------------------------------------- init_cfg=Pretrained
def _log(msg: str, level: int = logging.INFO) -> None:
    from mmengine.logging import print_log

    print_log(msg, logger="current", level=level)


def fetch_checkpoint(spec: str) -> str:
    """A local path, ``"<model>:<tag>"`` (official files) or an http(s) URL -> a local file."""
    from .checkpoints.convert import resolve_source

    if not spec.startswith(("http://", "https://")):
        return resolve_source(spec)
    from .checkpoints import CheckpointError

    cache = os.environ.get(
        "HIERA_BACKBONES_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hiera_backbones")
    )
    os.makedirs(cache, exist_ok=True)
    dst = os.path.join(cache, os.path.basename(spec.split("?")[0]) or "checkpoint.pth")
    if not os.path.exists(dst):
        try:
            torch.hub.download_url_to_file(spec, dst + ".part", progress=True)
        except OSError as err:  # URLError is an OSError
            raise CheckpointError(
                f"could not download {spec} ({getattr(err, 'reason', err)}); download it "
                "elsewhere and pass the local path as init_cfg.checkpoint"
            ) from None
        os.replace(dst + ".part", dst)
    return dst


def mmengine_state_with_prefix(path: str, prefix: str) -> dict[str, torch.Tensor] | None:
    """The ``prefix`` keys (prefix stripped) of an mmengine-style ``{'state_dict': ...}`` file
    not written by our converter (e.g. a trained detector); None for any other file."""
    from .checkpoints.io import read_checkpoint

    content = read_checkpoint(path).content
    meta = content.get("meta")
    if isinstance(meta, Mapping) and meta.get("format") == "hiera_backbones":
        return None  # our converter's output: load_backbone_checkpoint reads its metadata
    state = content.get("state_dict")
    if not isinstance(state, Mapping):
        return None
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} or None


def _mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        shapes = f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        problems.append(f"wrong shapes (e.g. {k}: {shapes})")
    return "; ".join(problems)


def load_pretrained(module: nn.Module, init_cfg: Mapping[str, Any]) -> None:
    """Loads ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` into one of our
    backbones (the model classes of the MMDetection / MMAction2 adapters).

    ``checkpoint`` may be a local file, ``"<model>:<tag>"`` (an official Hiera / HVT file,
    downloaded once) or an http(s) URL. Accepted contents:

    * files written by ``hiera-convert`` (any target; the prefix is in their metadata);
    * any format the converter reads (official Hiera ``{"model_state"}`` incl. MAE, Hugging
      Face, timm, HVT releases, plain ViT/DeiT for HVT): converted on the fly, and logged;
    * a whole-model checkpoint saved by mmengine (e.g. a trained detector) whose keys under
      ``prefix`` (default ``"backbone."``) match this backbone exactly.

    Position embeddings are resized to the module's ``input_size`` (converter paths). Raises
    :class:`~hiera_backbones.checkpoints.CheckpointError` with the reason when the file does
    not fit.
    """
    from .checkpoints import CheckpointError, load_backbone_checkpoint

    checkpoint = init_cfg.get("checkpoint")
    if not checkpoint or not isinstance(checkpoint, str):
        raise ValueError(f"init_cfg {dict(init_cfg)} needs checkpoint='<file, model:tag or URL>'")
    prefix = init_cfg.get("prefix") or "backbone."
    path = fetch_checkpoint(checkpoint)
    name = type(module).__name__
    state = mmengine_state_with_prefix(path, prefix)
    if state is not None and not _mismatch(module, state):
        module.load_state_dict(state, strict=True)
        _log(f"{name}: loaded the '{prefix}' weights of {path}")
        return
    try:
        weights = load_backbone_checkpoint(module, path)
    except CheckpointError as err:
        if state is None:
            raise
        raise CheckpointError(
            f"{path}: its '{prefix}' weights do not fit {name} ({_mismatch(module, state)}) and "
            f"the file is no backbone checkpoint either ({err}). Build the backbone as in the "
            "model that was saved (same arch, input_size, out_indices, out_norm)."
        ) from None
    how = "converted on the fly" if weights.source_format != "hiera-backbones" else "as converted"
    _log(
        f"{name}: loaded {weights.arch} weights from {path} ({weights.source_format}, {how}; "
        f"position embedding at input_size {tuple(getattr(module, 'input_size', ()))})"
    )


# ---------------------------------------------------------------------- distributed on CPU
def setup_cpu_distributed(cfg: Any, launcher: str) -> bool:
    """Prepares a ``torchrun`` (``--launcher pytorch``) run on a machine without GPUs.

    mmengine's launcher calls ``torch.cuda.set_device`` and wraps the model in DDP with
    ``device_ids=[LOCAL_RANK]``, both GPU-only. Without CUDA this initializes the process group
    with gloo itself (mmengine then skips its own initialization) and sets
    ``cfg.model_wrapper_cfg`` for a CPU DDP model (and gloo in ``env_cfg``). With CUDA, or
    ``launcher="none"``, it does nothing. Returns True if it prepared a CPU distributed run.
    """
    if launcher == "none" or torch.cuda.is_available():
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        missing = [k for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR") if
                   k not in os.environ]
        if launcher == "pytorch" and missing:
            raise RuntimeError(
                f"--launcher pytorch needs the torchrun environment ({', '.join(missing)} "
                "missing): start with `torchrun --nproc-per-node N tools/mm_train.py ...`"
            )
        if launcher != "pytorch":
            raise RuntimeError(f"--launcher {launcher} needs GPUs; on CPU use torchrun "
                               "(--launcher pytorch)")
        dist.init_process_group(backend="gloo")
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "MMDistributedDataParallel")
    # device_ids must be None for a CPU module (explicitly set: mmengine's default is GPU ids).
    wrapper["device_ids"] = None
    wrapper.setdefault("broadcast_buffers", False)
    wrapper.setdefault("find_unused_parameters", bool(cfg.get("find_unused_parameters", False)))
    cfg.model_wrapper_cfg = wrapper
    env = cfg.get("env_cfg") or {}
    if isinstance(env, Mapping):
        dist_cfg = dict(env.get("dist_cfg") or {})
        dist_cfg["backend"] = "gloo"
        cfg.env_cfg = {**env, "dist_cfg": dist_cfg}
    return True


class PretrainedInitMixin:
    """``init_weights`` for our mmengine backbones: ``Pretrained`` entries of ``init_cfg`` are
    loaded by :meth:`load_pretrained_cfg` (mmengine's ``PretrainedInit`` reads only
    ``{'state_dict'}`` files, with no conversion and no position-embedding resizing); any other
    initializer is left to mmengine."""

    def load_pretrained_cfg(self, init_cfg: Mapping[str, Any]) -> None:
        load_pretrained(self, init_cfg)

    def init_weights(self) -> None:
        if self.is_init:
            return super().init_weights()  # mmengine warns about the second call
        cfgs = self.init_cfg or []
        cfgs = [cfgs] if isinstance(cfgs, Mapping) else list(cfgs)
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        others = [c for c in cfgs if c.get("type") != "Pretrained"]
        saved, self.init_cfg = self.init_cfg, others or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = saved
        if pretrained:
            self.load_pretrained_cfg(pretrained[-1])
