"""Loading a checkpoint into a built backbone: the one path every adapter takes.

* :func:`backbone_weights_for`: any file :func:`~.convert.read_backbone_weights` reads,
  converted for a given model (HVT layout and patch size, position embeddings at the model's
  ``input_size``), checked to be that architecture and to fit it.
* :func:`load_backbone_checkpoint`: the same, loaded into the model.
* :func:`framework_state`: the backbone part (under a prefix) of a whole-model checkpoint that a
  framework saved (mmengine ``{"state_dict"}``, detectron2 ``{"model"}``), e.g. a trained
  detector or recognizer.
* :func:`load_pretrained`: what a framework's "pretrained backbone" setting needs: a framework
  checkpoint's backbone if it fits, else any backbone file through the converter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .convert import BackboneWeights, read_backbone_weights
from .fit import check_fit, state_mismatch
from .hub import resolve_source
from .identify import identify
from .io import CheckpointError, RawCheckpoint, read_checkpoint
from .metadata import OWN_FORMAT

__all__ = [
    "CLASSIFIER_PREFIXES",
    "NEW_LAYER_PREFIXES",
    "backbone_weights_for",
    "framework_state",
    "load_backbone_checkpoint",
    "load_pretrained",
]

#: Parameters our backbones add to the official ones (output norms): no checkpoint of another
#: project has them, so they may be missing and keep their initialization.
NEW_LAYER_PREFIXES = ("out_norms.",)
#: The official classifier's parameters; a backbone built without it ignores them.
CLASSIFIER_PREFIXES = ("norm.", "head.")


def backbone_weights_for(
    model: nn.Module,
    src: str | RawCheckpoint,
    from_format: str | None = None,
    allow_pickle: bool = False,
    target: str | None = None,
) -> BackboneWeights:
    """Reads ``src`` (file, hub folder, ``"<model>:<tag>"``, URL or a :class:`RawCheckpoint`
    already read) converted for ``model``, one of our backbones, and checks that it holds
    ``model``'s architecture and fits it (output norms may be missing; a classifier is
    included when the model has one)."""
    hvt = {}
    if hasattr(model, "pooling"):  # HVT: convert to the model's layout and patch size
        hvt = dict(
            hvt_mode="video" if model.video else model.pooling,
            patch_size=model.patch_size if model.pooling == "2d" else None,
        )
    # An abs-win Hiera takes plain (e.g. MAE) weights converted by the abs-win rule.
    abs_win = bool(getattr(model, "abs_win", False))
    weights = read_backbone_weights(
        src, from_format, allow_pickle, getattr(model, "input_size", None), target=target,
        abs_win=abs_win, **hvt,
    )
    arch = getattr(model, "arch", None)
    is_arch = getattr(model, "is_arch", None)
    label = src.path if isinstance(src, RawCheckpoint) else src
    if arch is not None and not (is_arch(weights.arch) if is_arch else arch == weights.arch):
        raise CheckpointError(f"{label} holds {weights.arch} weights, not {arch}")
    check_fit(
        model, _with_head(model, weights), label, str(arch), ignore_missing=NEW_LAYER_PREFIXES,
        hint="Was the model built with other architecture overrides?",
    )
    return weights


def _with_head(model: nn.Module, weights: BackboneWeights) -> dict[str, torch.Tensor]:
    state = dict(weights.backbone)
    if getattr(model, "num_classes", 0) > 0 and weights.head:
        state.update(weights.head)
    return state


def load_backbone_checkpoint(
    model: nn.Module,
    src: str | RawCheckpoint,
    from_format: str | None = None,
    allow_pickle: bool = False,
) -> BackboneWeights:
    """Loads any supported checkpoint into a backbone built by
    :func:`~hiera_backbones.build_backbone` (see :func:`backbone_weights_for`); raises
    :class:`CheckpointError` naming missing, unexpected or mis-shaped keys."""
    weights = backbone_weights_for(model, src, from_format, allow_pickle)
    model.load_state_dict(_with_head(model, weights), strict=False)
    return weights


def framework_state(src: str | RawCheckpoint, prefix: str) -> dict[str, torch.Tensor] | None:
    """The ``prefix`` keys (prefix and DDP's ``module.`` stripped) of a whole-model checkpoint a
    framework saved: mmengine ``{"state_dict": ...}`` or detectron2 ``{"model": ...}``. None for
    files this package wrote (their metadata says how to read them) and for anything else
    (:meth:`~.identify.Identity.state_under`)."""
    raw = src if isinstance(src, RawCheckpoint) else read_checkpoint(src)
    return identify(raw).state_under(prefix)


def load_pretrained(module: nn.Module, checkpoint: Any, prefix: str = "backbone.") -> str:
    """Loads a pretrained backbone into ``module`` (one of our backbones); returns what was done,
    for the framework's log.

    ``checkpoint`` is a local file, ``"<model>:<tag>"`` (official file, downloaded once) or an
    http(s) URL. Tried in order:

    1. a framework checkpoint (a trained detector / recognizer) whose ``prefix`` weights fit the
       module, except for output norms it adds (kept at their initialization) and a classifier
       it does not have (ignored);
    2. any format the converter reads (official Hiera incl. MAE, Hugging Face, timm, HVT
       releases, plain ViT for HVT, files ``hiera-convert`` wrote): converted for the module.

    A framework's own classes in its checkpoints (mmengine's) are accepted once its adapter is
    imported (:func:`~.io.register_checkpoint_globals`).

    Raises :class:`CheckpointError` with the reason when neither fits."""
    if not checkpoint or not isinstance(checkpoint, str):
        raise ValueError(f"checkpoint={checkpoint!r}: pass a file, '<model>:<tag>' or a URL")
    path = resolve_source(checkpoint)
    name = type(module).__name__
    raw = read_checkpoint(path)  # the one read, shared below
    state = framework_state(raw, prefix)
    if state is not None:
        mismatch = state_mismatch(
            module, state, ignore_missing=NEW_LAYER_PREFIXES, ignore_unexpected=CLASSIFIER_PREFIXES
        )
        if not mismatch:
            own = module.state_dict()
            module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
            kept = sorted(k for k in own if k not in state)
            ignored = sorted({k.split(".")[0] for k in state if k not in own})
            return (
                f"{name}: loaded the '{prefix}' weights of {path}"
                + (f"; kept initialized: {', '.join(kept)}" if kept else "")
                + (f"; ignored: {', '.join(i + '.*' for i in ignored)}" if ignored else "")
            )
    try:
        weights = load_backbone_checkpoint(module, raw)
    except CheckpointError as err:
        if state is None:
            raise
        raise CheckpointError(
            f"{path}: its '{prefix}' weights do not fit {name} ({mismatch.describe()}) and the "
            f"file is no backbone checkpoint either ({err}). Build the backbone as in the model "
            "that was saved (same arch, input_size, out_indices, out_norm)."
        ) from None
    how = "converted on the fly" if weights.source_format != OWN_FORMAT else "as converted"
    return (
        f"{name}: loaded {weights.arch} weights from {path} ({weights.source_format}, {how}; "
        f"position embedding at input_size {tuple(getattr(module, 'input_size', ()))})"
    )
