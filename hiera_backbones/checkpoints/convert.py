"""Convert any supported checkpoint into the layout a framework loads.

Targets (what ``--to`` writes; every file holds only tensors and plain containers, so
``torch.load(weights_only=True)`` reads it, and carries a ``meta`` dict):

* ``backbone``: ``{"state_dict": {<our keys>}, "meta": {...}}`` (``.pth``), or a flat
  safetensors file with the metadata in its header (``.safetensors``).
* ``detectron2``: ``{"model": {"backbone.bottom_up.<key>": ...}, "meta": ...}`` for
  ``DetectionCheckpointer`` (prefix matching our detectron2 configs' FPN ``bottom_up``).
* ``mmdet`` / ``mmaction``: ``{"state_dict": {"backbone.<key>": ...}, "meta": ...}`` for
  mmengine's ``load_checkpoint``/``load_from`` and ``init_cfg=dict(type='Pretrained',
  checkpoint=..., prefix='backbone.')``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..models.pos_embed import resize_pos_embed, resize_temporal_pos_embed
from .fit import check_fit
from .hiera_formats import infer_hiera_arch, split_hiera_state, to_abs_win, to_official_hiera
from .hieradet_formats import hieradet_state_from_content, infer_hieradet_arch
from .hub import resolve_source
from .hvt_formats import hvt_state_from_content, infer_hvt_arch, split_hvt_state, vit_to_hvt
from .hvt_layouts import hvt_1d_to_2d_state_dict, inflate_hvt_state_dict
from .identify import SOURCE_FORMATS, identify
from .io import CheckpointError, RawCheckpoint, read_checkpoint, save_atomic
from .metadata import OWN_FORMAT

__all__ = [
    "TARGETS",
    "TARGET_PREFIXES",
    "BackboneWeights",
    "convert_checkpoint",
    "export_weights",
    "read_backbone_weights",
]

TARGETS = ("backbone", "detectron2", "mmdet", "mmaction")
TARGET_PREFIXES = {
    "backbone": "",
    "detectron2": "backbone.bottom_up.",
    "mmdet": "backbone.",
    "mmaction": "backbone.",
}
HVT_MODES = ("1d", "2d", "video")
#: HVT layout each target needs by default: detectors want 2D maps, MMAction2 video.
DEFAULT_HVT_MODE = {"backbone": None, "detectron2": "2d", "mmdet": "2d", "mmaction": "video"}

@dataclass
class BackboneWeights:
    """Backbone tensors under our names, plus what is needed to build the model for them."""

    arch: str
    build_kwargs: dict[str, Any]
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    dropped: list[str]
    source_format: str
    source: RawCheckpoint = field(repr=False)
    source_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def source_file(self) -> str:
        return self.source.path

    @property
    def source_sha256(self) -> str:
        """Hashed when first asked for (a written file records it; loading never needs it)."""
        return self.source.sha256

    def metadata(self, target: str, prefix: str, with_head: bool) -> dict[str, Any]:
        return {
            "format": OWN_FORMAT,
            "version": __version__,
            "arch": self.arch,
            "build_kwargs": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.build_kwargs.items()
            },
            "target": target,
            "prefix": prefix,
            "with_head": with_head,
            "source_format": self.source_format,
            "source_sha256": self.source_sha256,
            "source_file": os.path.basename(self.source_file),
            "dropped": sorted(self.dropped),
        }


def _saved_kwargs(own: dict | None) -> dict:
    saved = (own or {}).get("build_kwargs", {})
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    kwargs.pop("num_classes", None)
    return kwargs


def _unknown_error(path: str, unknown: Mapping, family: str, fmt: str) -> CheckpointError:
    names = ", ".join(sorted(unknown)[:5])
    return CheckpointError(
        f"{path}: {len(unknown)} tensors are not part of {family} ({names}, ...); is this really "
        f"a {fmt} checkpoint? Pass the right --from or another file."
    )


def read_backbone_weights(
    src: str | RawCheckpoint,
    from_format: str | None = None,
    allow_pickle: bool = False,
    input_size: Sequence[int] | None = None,
    *,
    hvt_mode: str | None = None,
    patch_size: int | None = None,
    arch: str | None = None,
    num_heads: int | None = None,
    target: str | None = None,
    abs_win: bool = False,
) -> BackboneWeights:
    """Reads any supported checkpoint and returns backbone tensors under our (= official) names.

    Args:
        src: a file, a hub folder, ``"<model>:<tag>"``, or a :class:`RawCheckpoint` already
            read (one file read for several conversions; nothing in it is modified).
        from_format: force a source format instead of detecting it from the keys.
        allow_pickle: allow legacy pickles (``weights_only=False``; trusted files only).
        input_size: the size the target model is built with: Hiera's position embedding is
            resized once (same rule as the model's on-the-fly resizing); for HVT it is the 2D /
            video model's ``input_size``.
        hvt_mode: HVT target layout: ``"1d"`` (official), ``"2d"`` (dense) or ``"video"``;
            default: keep the source layout.
        patch_size: HVT 2D/video patch size (the kernel is resampled).
        arch, num_heads: target HVT variant and head count, required for plain ViT sources.
        target: the framework the weights are for; picks the default ``hvt_mode``.
        abs_win: return abs-win Hiera weights: a plain image Hiera (official, MAE, hub, timm,
            HF) becomes the plain geometry with the abs-win position embedding
            (:func:`~.hiera_formats.to_abs_win`; arch ``"<name>_custom"`` = ``dict(base=name,
            abs_win=True, global_pos_size=<its token grid>)``); abs-win weights stay as they are.
    """
    if isinstance(src, RawCheckpoint):
        raw = src
    else:
        raw = read_checkpoint(resolve_source(src), allow_pickle=allow_pickle)
    found = identify(raw, from_format)
    own, fmt, family = found.own, found.source_format, found.family
    if fmt is None:
        sample = ", ".join(list(raw.content)[:6])
        raise CheckpointError(
            f"{raw.path}: unrecognised checkpoint format (top-level keys: {sample}). Supported: "
            f"{', '.join(SOURCE_FORMATS)}; pass --from to force one."
        )
    if family == "hvt":
        mode = hvt_mode or DEFAULT_HVT_MODE.get(target or "backbone")
        return _read_hvt(raw, fmt, own, input_size, mode, patch_size, arch, num_heads)
    if hvt_mode not in (None, "1d") or patch_size or num_heads:
        raise CheckpointError("--hvt-mode, --patch-size and --num-heads apply to HVT only")
    if family == "hieradet":
        return _read_hieradet(raw, fmt, own, input_size, arch)
    if abs_win and family != "hiera":
        raise CheckpointError("--abs-win applies to Hiera image weights only")
    try:
        state = to_official_hiera(raw.content, fmt)
    except (KeyError, AttributeError, TypeError) as err:
        raise CheckpointError(f"{raw.path} does not have the layout of {fmt!r}: {err}") from None
    backbone, head, mae, unknown = split_hiera_state(state)
    if unknown:
        raise _unknown_error(raw.path, unknown, "Hiera", fmt)
    if not backbone:
        raise CheckpointError(f"{raw.path} holds no Hiera backbone tensors")
    own_kwargs = _saved_kwargs(own)
    if own and own_kwargs:  # our file: architecture and build arguments as saved
        name, build_kwargs = own["arch"], own_kwargs
    else:
        inferred = infer_hiera_arch(backbone, head, own_kwargs.get("input_size"))
        build_kwargs = own_kwargs or inferred.build_kwargs()
        name = own["arch"] if own else inferred.name
    if arch and arch != name:
        raise CheckpointError(f"{raw.path} holds {name} weights, not {arch}")
    _check_shapes(name, build_kwargs, backbone, raw.path)
    if abs_win and "pos_embed_win" not in backbone:
        name, build_kwargs, backbone = _plain_to_abs_win(name, build_kwargs, backbone, raw.path)
    if input_size is not None:
        backbone = _resize_pos(backbone, build_kwargs["input_size"], tuple(input_size), name)
        build_kwargs["input_size"] = tuple(int(s) for s in input_size)
    return BackboneWeights(
        arch=name,
        build_kwargs=build_kwargs,
        backbone=backbone,
        head=head,
        dropped=sorted(mae),
        source_format=fmt,
        source=raw,
        source_state=state,
    )


def _read_hieradet(raw, fmt, own, input_size, arch) -> BackboneWeights:
    """SAM 2 / 2.1 release files, timm ``sam2_hiera_*`` state dicts and our own HieraDet files.
    No tensor depends on the input size (the background position embedding is interpolated on
    every forward), so ``input_size`` only becomes the built model's nominal size."""
    try:
        backbone, dropped, unknown = hieradet_state_from_content(raw.content, fmt)
    except (KeyError, AttributeError, TypeError) as err:
        raise CheckpointError(f"{raw.path} does not have the layout of {fmt!r}: {err}") from None
    if unknown:
        raise _unknown_error(raw.path, unknown, "HieraDet (the SAM 2 trunk)", fmt)
    if not backbone:
        raise CheckpointError(f"{raw.path} holds no HieraDet backbone tensors")
    own_kwargs = _saved_kwargs(own)
    name = own["arch"] if own else infer_hieradet_arch(backbone)
    build_kwargs = own_kwargs or {"input_size": (1024, 1024)}
    if arch and arch != name:
        raise CheckpointError(f"{raw.path} holds {name} weights, not {arch}")
    if input_size is not None:
        build_kwargs["input_size"] = tuple(int(s) for s in input_size)
    _check_shapes(name, build_kwargs, backbone, raw.path)
    return BackboneWeights(
        arch=name,
        build_kwargs=build_kwargs,
        backbone=backbone,
        head={},
        dropped=dropped,
        source_format=fmt,
        source=raw,
        source_state=dict(backbone),
    )


def _read_hvt(raw, fmt, own, input_size, mode, patch_size, arch, num_heads) -> BackboneWeights:
    state = hvt_state_from_content(raw.content)
    dropped: list[str] = []
    name, build_kwargs = arch, {}
    if fmt == "vit":
        state, build_kwargs, dropped = vit_to_hvt(state, arch, num_heads)
    backbone, head, extra_dropped, unknown = split_hvt_state(state)
    if unknown:
        raise _unknown_error(raw.path, unknown, "HVT", fmt)
    if not backbone:
        raise CheckpointError(f"{raw.path} holds no HVT backbone tensors")
    dropped = sorted({*dropped, *extra_dropped})
    if fmt == "hvt-official":
        name, build_kwargs = infer_hvt_arch(backbone)
    elif fmt == OWN_FORMAT:
        name, build_kwargs = own["arch"], _saved_kwargs(own)
    if arch and arch != name:
        raise CheckpointError(f"{raw.path} holds {name} weights, not {arch}")
    if num_heads and fmt != "vit":
        build_kwargs["num_heads"] = int(num_heads)
    _check_shapes(name, build_kwargs, backbone, raw.path)
    source = dict(backbone)

    current = "video" if build_kwargs.get("video") else build_kwargs.get("pooling", "1d")
    mode = mode or current
    if mode not in HVT_MODES:
        raise CheckpointError(f"unknown HVT mode {mode!r}; choose from {', '.join(HVT_MODES)}")
    if current == "video" and mode != "video":
        raise CheckpointError(f"{raw.path} holds video HVT weights; they cannot become {mode}")
    if current == "2d" and mode == "1d":
        raise CheckpointError(f"{raw.path} holds 2D-pooling HVT weights; 1D needs a 1D source")
    old_grid = _token_grid(build_kwargs)
    try:
        if mode == "video" and current != "video":
            size = tuple(input_size or (16, *build_kwargs.get("input_size", (224, 224))[-2:]))
            backbone = inflate_hvt_state_dict(
                backbone, size, patch_size=patch_size, source_grid=old_grid
            )
            build_kwargs.update(pooling="2d", video=True, input_size=size)
        elif mode == "video":
            if input_size is not None and tuple(input_size) != tuple(build_kwargs["input_size"]):
                raise CheckpointError("video HVT weights are made once, from image weights")
        elif mode == "2d":
            size = tuple(input_size or build_kwargs.get("input_size", (224, 224)))
            backbone = hvt_1d_to_2d_state_dict(
                backbone, size, patch_size=patch_size, source_grid=old_grid
            )
            build_kwargs.update(pooling="2d", input_size=size)
        elif input_size is not None and tuple(input_size) != tuple(build_kwargs["input_size"]):
            raise CheckpointError(
                "official (1D) HVT runs only at the size it was trained at, "
                f"{tuple(build_kwargs['input_size'])}; use --hvt-mode 2d for other sizes"
            )
    except ValueError as err:
        raise CheckpointError(f"{raw.path}: {err}") from None
    if patch_size and mode != "1d":
        build_kwargs["patch_size"] = int(patch_size)
    _check_shapes(name, build_kwargs, backbone, raw.path)
    return BackboneWeights(
        arch=name,
        build_kwargs=build_kwargs,
        backbone=backbone,
        head=head,
        dropped=dropped,
        source_format=fmt,
        source=raw,
        source_state=source,
    )


def _token_grid(build_kwargs: Mapping) -> tuple[int, int]:
    size = tuple(build_kwargs.get("input_size", (224, 224)))[-2:]
    patch = build_kwargs.get("patch_size", 16)
    return size[0] // patch, size[1] // patch


def _plain_to_abs_win(name: str, build_kwargs: dict, backbone: dict, path: str):
    """A plain image Hiera -> the same geometry with the abs-win position embedding, the
    background on the token grid the embedding was learned on (no LayerScale, no other change:
    timm's ``hiera_*_abswin_256`` differ in more than the embedding)."""
    from ..models.hiera import Hiera

    model = _build_model(name, build_kwargs)
    if model.spatial_dims != 2 or model.sep_pos_embed or model.abs_win:
        raise CheckpointError(f"{path}: --abs-win needs plain image Hiera weights, not {name}")
    grid = tuple(model.tokens_spatial_shape)
    backbone = to_abs_win(backbone, grid, model.mask_unit_size)
    overrides = dict(abs_win=True, global_pos_size=grid)
    new_name, _ = Hiera.resolve_arch(dict(base=_base_arch(name), **_arch_overrides(build_kwargs),
                                          **overrides))
    kwargs = {**build_kwargs, **overrides}
    _check_shapes(new_name, kwargs, backbone, path)
    return new_name, kwargs, backbone


def _arch_overrides(build_kwargs: Mapping) -> dict:
    """The architecture overrides among saved build arguments."""
    from ..models.hiera import Hiera

    return {k: v for k, v in build_kwargs.items() if k in Hiera.arch_keys and k != "input_size"}


def _base_arch(arch: str) -> str:
    """A buildable name: ``"<zoo name>_custom"`` (a zoo entry with architecture overrides,
    which the saved build arguments carry) is built from its zoo entry."""
    from ..models.registry import list_models

    if arch not in list_models() and arch.endswith("_custom"):
        return arch[: -len("_custom")]
    return arch


def _build_model(arch: str, build_kwargs: Mapping, **extra) -> nn.Module:
    from ..models import build_backbone

    with torch.device("meta"):
        return build_backbone(_base_arch(arch), **{**build_kwargs, **extra})


def _check_shapes(arch: str, build_kwargs: Mapping, backbone: Mapping, path: str) -> None:
    """Every expected key present with the expected shape; nothing extra."""
    try:
        model = _build_model(arch, build_kwargs)
    except ValueError as err:
        raise CheckpointError(f"{path}: cannot build {arch} for these weights: {err}") from None
    check_fit(model, backbone, path, arch)


def _resize_pos(backbone: dict, old_size, new_size, arch: str) -> dict:
    model = _build_model(arch, {"input_size": tuple(new_size)})  # validates new_size
    out = dict(backbone)
    if "pos_embed_win" in out:
        return out  # abs-win: the background grid is resized on every forward, not stored
    stride = model.patch_stride
    old_grid = [s // p for s, p in zip(old_size, stride)]
    new_grid = [s // p for s, p in zip(new_size, stride)]
    if "pos_embed" in out:
        out["pos_embed"] = resize_pos_embed(out["pos_embed"], old_grid, new_grid)
    else:
        out["pos_embed_spatial"] = resize_pos_embed(
            out["pos_embed_spatial"], old_grid[1:], new_grid[1:]
        )
        out["pos_embed_temporal"] = resize_temporal_pos_embed(
            out["pos_embed_temporal"], new_grid[0]
        )
    return out


def export_weights(
    weights: BackboneWeights,
    dst: str,
    to: str = "backbone",
    keep_head: bool = False,
    force: bool = False,
    prefix: str | None = None,
) -> dict[str, Any]:
    """Writes ``weights`` for a framework (see the module docstring); returns the metadata."""
    if to not in TARGETS:
        raise CheckpointError(f"unknown target {to!r}; choose from {', '.join(TARGETS)}")
    if keep_head and not weights.head:
        raise CheckpointError(f"{weights.source_file} has no classifier head to keep")
    prefix = TARGET_PREFIXES[to] if prefix is None else prefix
    tensors = dict(weights.backbone)
    if keep_head:
        tensors.update(weights.head)
    meta = weights.metadata(to, prefix, keep_head)
    if keep_head:
        classifier = next(v for k, v in weights.head.items() if k.endswith("head.weight")
                          or k == "head.projection.weight")
        meta["build_kwargs"]["num_classes"] = int(classifier.shape[0])
    state = {prefix + k: v for k, v in tensors.items()}
    if dst.endswith(".safetensors"):
        save_atomic(state, dst, force, {k: json.dumps(v) for k, v in meta.items()})
    elif to == "detectron2":
        save_atomic({"model": state, "meta": meta}, dst, force)
    else:
        save_atomic({"state_dict": state, "meta": meta}, dst, force)
    return meta


def convert_checkpoint(
    src: str,
    dst: str,
    to: str = "backbone",
    from_format: str | None = None,
    keep_head: bool = False,
    force: bool = False,
    allow_pickle: bool = False,
    input_size: Sequence[int] | None = None,
    prefix: str | None = None,
    verify: bool = False,
    hvt_mode: str | None = None,
    patch_size: int | None = None,
    arch: str | None = None,
    num_heads: int | None = None,
    abs_win: bool = False,
) -> dict[str, Any]:
    """Reads ``src`` (a file, hub folder or ``"<model>:<tag>"``), writes ``dst`` for target
    ``to``; with ``verify``, also compares stage features with the source model. Returns the
    written metadata (plus ``"verify_max_rel_error"`` and ``"verify_max_abs_diff"`` when
    verified).

    HVT sources become the layout the target needs unless ``hvt_mode`` says otherwise:
    ``"2d"`` for detectron2 / MMDetection, ``"video"`` for MMAction2, unchanged for
    ``backbone``. See :func:`read_backbone_weights` for the other arguments."""
    if to not in TARGETS:
        raise CheckpointError(f"unknown target {to!r}; choose from {', '.join(TARGETS)}")
    if os.path.exists(dst) and not force:
        raise CheckpointError(f"{dst} exists; pass --force (force=True) to overwrite it")
    weights = read_backbone_weights(
        src, from_format, allow_pickle, input_size, hvt_mode=hvt_mode, patch_size=patch_size,
        arch=arch, num_heads=num_heads, target=to, abs_win=abs_win,
    )
    meta = export_weights(weights, dst, to, keep_head, force, prefix)
    if verify:
        from .verify import verify_against_official

        errors = verify_against_official(weights, dst)
        meta["verify_max_rel_error"] = max(e.rel for e in errors)
        meta["verify_max_abs_diff"] = max(e.max_abs for e in errors)
    return meta
