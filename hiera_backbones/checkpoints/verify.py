"""Checking a conversion: the source model holding the *source* tensors against our backbone
holding the *written* ones, stage by stage, by the project's one fp32 rule
(:data:`~hiera_backbones.parity.FP32_RTOL` of each map's scale; real weights have maps far
larger than random ones, so an absolute bound would reject correct conversions).

The source model is, per family: the official Hiera (``hiera-transformer``); timm's model for
SAM 2 trunks and abs-win Hiera (same state-dict names as ours); the official-layout (1D) HVT
built from the source tensors. ``tools/check_parity.py`` uses the same pieces
(:func:`random_input`, :func:`load_into_reference`, :func:`stage_errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..parity import (
    FP32_RTOL,
    MapError,
    map_errors,
    official_hiera,
    official_stage_maps,
    timm_reference,
    timm_stage_maps,
)
from .hieradet_formats import is_hieradet_arch
from .io import CheckpointError
from .metadata import read_own_state

__all__ = ["load_into_reference", "random_input", "stage_errors", "verify_against_official"]

#: Parameters of the official classifier; our backbones are built without it.
_CLASSIFIER = ("norm.", "head.")


def random_input(batch: int, size: Sequence[int], seed: int = 0) -> torch.Tensor:
    """The fixed input every comparison runs on: ``(batch, 3, *size)``, standard normal."""
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def stage_errors(
    ours: nn.Module, reference: Callable[[torch.Tensor], Sequence[torch.Tensor]], x: torch.Tensor
) -> list[MapError]:
    """Per-stage errors of ``ours(x)`` against ``reference(x)`` (no gradients)."""
    with torch.no_grad():
        return map_errors(ours(x), reference(x))


def _backbone_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER)}


def load_into_reference(
    reference: nn.Module, state: Mapping[str, torch.Tensor], what: str
) -> None:
    """Loads backbone tensors into a reference model that may also have a classifier (left
    missing); anything else missing or unexpected raises :class:`~.io.CheckpointError`."""
    missing, unexpected = reference.load_state_dict(dict(state), strict=False)
    if unexpected or any(not k.startswith(_CLASSIFIER) for k in missing):
        raise CheckpointError(f"verify: {what} misses {missing[:5]} / has extra {unexpected[:5]}")


def _ours_from_file(dst: str, build_kwargs: Mapping, **override) -> nn.Module:
    """Our backbone built as the written file says, holding its tensors (classifier aside)."""
    from ..models import build_backbone
    from .convert import _base_arch

    state, meta = read_own_state(dst)
    ours = build_backbone(_base_arch(meta["arch"]), **{**build_kwargs, **override}).eval()
    missing, unexpected = ours.load_state_dict(_backbone_only(state), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"verify: {dst} misses {missing[:5]} / has extra {unexpected[:5]}")
    return ours


def _official(arch: str, size: Sequence[int]) -> nn.Module:
    try:
        return official_hiera(arch, input_size=tuple(size), num_classes=1)
    except ImportError:
        raise CheckpointError(
            "--verify needs the official package: pip install hiera-transformer==0.1.4"
        ) from None


def _checked(errors: list[MapError]) -> list[MapError]:
    for stage, err in enumerate(errors):
        if not err.rel <= FP32_RTOL:
            raise CheckpointError(
                f"verify failed: stage {stage} differs from the source model ({err}; "
                f"allowed {FP32_RTOL:.0e} relative)"
            )
    return errors


def verify_against_official(weights, dst: str, batch: int = 1) -> list[MapError]:
    """Per-stage errors between the source model holding ``weights``' *source* tensors (a
    :class:`~.convert.BackboneWeights`) and our backbone holding the tensors written to ``dst``;
    raises :class:`~.io.CheckpointError` if a stage's ``max|diff| / max|map|`` exceeds
    :data:`~hiera_backbones.parity.FP32_RTOL`. 2D / video / ViT-initialised HVT weights have no
    source model with the same architecture, so they cannot be verified this way."""
    kwargs = weights.build_kwargs
    if weights.arch.startswith(("hvt", "scale_hvt")):
        return _checked(_verify_hvt(weights, dst, batch))
    if kwargs.get("abs_win") and "pos_embed_win" not in weights.source_state:
        # MAE / official weights made abs-win: compared at the size the source embedding was
        # learned on (no abs-win tensor depends on the input size).
        from .convert import _base_arch, _build_model

        grid = tuple(kwargs["global_pos_size"])
        stride = _build_model(_base_arch(weights.arch), kwargs).patch_stride
        size = tuple(g * p for g, p in zip(grid, stride))
        ours = _ours_from_file(dst, kwargs, input_size=size)
        official = _official(_base_arch(weights.arch), size)
        known = official.state_dict()
        source = {k: v for k, v in _backbone_only(weights.source_state).items() if k in known}
        load_into_reference(official, source, "the source")
        x = random_input(batch, size)
        return _checked(stage_errors(ours, lambda t: official_stage_maps(official, t), x))
    if is_hieradet_arch(weights.arch) or "pos_embed_win" in weights.backbone:
        # SAM 2 trunks and abs-win Hiera: timm's model holding the converted tensors.
        ours = _ours_from_file(dst, kwargs)
        if weights.arch not in ours.arch_zoo:
            raise CheckpointError(f"--verify: {weights.arch} has no timm counterpart")
        size = tuple(ours.input_size)
        reference = timm_reference(weights.arch, size)
        missing, unexpected = reference.load_state_dict(weights.backbone, strict=False)
        if unexpected or any(not k.startswith("head.") for k in missing):
            raise CheckpointError(
                f"verify: timm's {weights.arch} misses {missing[:5]} / has extra {unexpected[:5]}"
            )
        x = random_input(batch, size)
        return _checked(stage_errors(ours, lambda t: timm_stage_maps(reference, t), x))
    size = tuple(kwargs["input_size"])
    official = _official(weights.arch, size)
    source = dict(weights.source_state)
    ref_shapes = official.state_dict()
    for key in ("pos_embed", "pos_embed_spatial", "pos_embed_temporal"):
        if key in source and source[key].shape != ref_shapes[key].shape:
            source[key] = weights.backbone[key]  # resized on conversion, by the shared rule
    source = {k: v for k, v in _backbone_only(source).items() if k in ref_shapes}
    load_into_reference(official, source, "the source")
    ours = _ours_from_file(dst, kwargs)
    x = random_input(batch, size)
    return _checked(stage_errors(ours, lambda t: official_stage_maps(official, t), x))


def _verify_hvt(weights, dst: str, batch: int) -> list[MapError]:
    from ..models import build_backbone

    kwargs = weights.build_kwargs
    if kwargs.get("pooling", "1d") != "1d" or weights.source_format == "vit":
        raise CheckpointError(
            "--verify compares with the source model, which exists only for official-layout "
            "(1D) HVT weights; 2D, video and ViT-initialised HVT weights are new architectures"
        )
    source = build_backbone(weights.arch, **kwargs).eval()
    source.load_state_dict(weights.source_state, strict=True)
    ours = _ours_from_file(dst, kwargs)
    return stage_errors(ours, source, random_input(batch, kwargs["input_size"]))
