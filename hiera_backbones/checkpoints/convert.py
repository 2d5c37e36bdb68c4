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
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..models.hiera import resize_pos_embed, resize_temporal_pos_embed
from .hiera_formats import (
    HIERA_FORMATS,
    detect_hiera_format,
    infer_hiera_arch,
    split_hiera_state,
    to_official_hiera,
)
from .io import CheckpointError, RawCheckpoint, read_checkpoint, save_atomic

__all__ = [
    "TARGETS",
    "TARGET_PREFIXES",
    "BackboneWeights",
    "OFFICIAL_CHECKPOINTS",
    "convert_checkpoint",
    "export_weights",
    "load_backbone_checkpoint",
    "read_backbone_weights",
    "resolve_source",
    "verify_against_official",
]

TARGETS = ("backbone", "detectron2", "mmdet", "mmaction")
TARGET_PREFIXES = {
    "backbone": "",
    "detectron2": "backbone.bottom_up.",
    "mmdet": "backbone.",
    "mmaction": "backbone.",
}
SOURCE_FORMATS = (*HIERA_FORMATS, "hiera-backbones")

_HIERA_URL = "https://dl.fbaipublicfiles.com/hiera/"
#: ``"<model>:<tag>"`` -> official download URL.
OFFICIAL_CHECKPOINTS: dict[str, str] = {}
for _size in ("tiny", "small", "base", "base_plus", "large", "huge"):
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_224:mae_in1k"] = f"{_HIERA_URL}mae_hiera_{_size}_224.pth"
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_224:mae_in1k_ft_in1k"] = (
        f"{_HIERA_URL}hiera_{_size}_224.pth"
    )
for _size in ("base", "base_plus", "large", "huge"):
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_16x224:mae_k400"] = (
        f"{_HIERA_URL}mae_hiera_{_size}_16x224.pth"
    )
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_16x224:mae_k400_ft_k400"] = (
        f"{_HIERA_URL}hiera_{_size}_16x224.pth"
    )


@dataclass
class BackboneWeights:
    """Backbone tensors under our names, plus what is needed to build the model for them."""

    arch: str
    build_kwargs: dict[str, Any]
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    dropped: list[str]
    source_format: str
    source_sha256: str
    source_file: str
    source_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def metadata(self, target: str, prefix: str, with_head: bool) -> dict[str, Any]:
        return {
            "format": "hiera_backbones",
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


def resolve_source(spec: str, cache_dir: str | None = None) -> str:
    """A local path as is; ``"<model>:<tag>"`` (e.g. ``hiera_base_224:mae_in1k``) becomes the
    official file, downloaded once into ``cache_dir`` (default ``~/.cache/hiera_backbones``)."""
    if os.path.exists(spec) or ":" not in spec or os.sep in spec:
        return spec
    if spec not in OFFICIAL_CHECKPOINTS:
        raise CheckpointError(
            f"{spec!r} is neither a file nor a known official checkpoint; known: "
            + ", ".join(sorted(OFFICIAL_CHECKPOINTS))
        )
    url = OFFICIAL_CHECKPOINTS[spec]
    cache_dir = cache_dir or os.environ.get(
        "HIERA_BACKBONES_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hiera_backbones")
    )
    os.makedirs(cache_dir, exist_ok=True)
    dst = os.path.join(cache_dir, os.path.basename(url))
    if os.path.exists(dst):
        return dst
    tmp = dst + ".part"
    try:
        torch.hub.download_url_to_file(url, tmp, progress=True)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        reason = getattr(err, "reason", err)
        raise CheckpointError(
            f"could not download {url} ({reason}); this machine may be offline. Download the "
            f"file elsewhere and pass its local path instead of {spec!r}."
        ) from None
    os.replace(tmp, dst)
    return dst


def _own_metadata(content: Mapping) -> dict | None:
    meta = content.get("meta")
    if isinstance(meta, Mapping) and meta.get("format") == "hiera_backbones":
        return dict(meta)
    return None


def _own_safetensors_metadata(metadata: Mapping[str, str]) -> dict | None:
    try:
        decoded = {k: json.loads(v) for k, v in metadata.items()}
    except (TypeError, ValueError):
        return None
    return decoded if decoded.get("format") == "hiera_backbones" else None


def _read(raw: RawCheckpoint, from_format: str | None) -> tuple[str, dict, dict | None]:
    """(source format, official-named state dict, our metadata if the file is ours)."""
    content = raw.content
    own = _own_metadata(content)
    if raw.file_format in ("safetensors", "hf-hub-dir"):
        own = _own_safetensors_metadata(raw.safetensors_metadata)
    detected = "hiera-backbones" if own else detect_hiera_format(content)
    fmt = from_format or detected
    if fmt is None:
        sample = ", ".join(list(content)[:6])
        raise CheckpointError(
            f"{raw.path}: unrecognised checkpoint format (top-level keys: {sample}). Supported: "
            f"{', '.join(SOURCE_FORMATS)}; pass --from to force one."
        )
    if fmt not in SOURCE_FORMATS:
        raise CheckpointError(f"unknown --from {fmt!r}; choose from {', '.join(SOURCE_FORMATS)}")
    try:
        state = to_official_hiera(content, fmt)
    except (KeyError, AttributeError, TypeError) as err:
        raise CheckpointError(f"{raw.path} does not have the layout of {fmt!r}: {err}") from None
    return fmt, state, own


def read_backbone_weights(
    src: str,
    from_format: str | None = None,
    allow_pickle: bool = False,
    input_size: Sequence[int] | None = None,
) -> BackboneWeights:
    """Reads any supported checkpoint and returns backbone tensors under our (= official) names.

    ``input_size`` resizes the position embedding once (same rule as the model's on-the-fly
    resizing) so that a model built with ``input_size`` loads the weights strictly.
    """
    raw = read_checkpoint(resolve_source(src), allow_pickle=allow_pickle)
    fmt, state, own = _read(raw, from_format)
    backbone, head, mae, unknown = split_hiera_state(state)
    if unknown:
        names = ", ".join(sorted(unknown)[:5])
        raise CheckpointError(
            f"{raw.path}: {len(unknown)} tensors are not part of Hiera ({names}, ...); is this "
            f"really a {fmt} checkpoint? Pass the right --from or a Hiera file."
        )
    if not backbone:
        raise CheckpointError(f"{raw.path} holds no Hiera backbone tensors")
    saved_kwargs = (own or {}).get("build_kwargs", {})
    own_kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in saved_kwargs.items()}
    arch = infer_hiera_arch(backbone, head, own_kwargs.get("input_size"))
    build_kwargs = own_kwargs or arch.build_kwargs()
    build_kwargs.pop("num_classes", None)
    name = own["arch"] if own else arch.name
    _check_shapes(name, build_kwargs, backbone, raw.path)
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
        source_sha256=raw.sha256,
        source_file=raw.path,
        source_state=state,
    )


def _build_model(arch: str, build_kwargs: Mapping, **extra) -> nn.Module:
    from ..models import build_backbone

    with torch.device("meta"):
        return build_backbone(arch, **{**build_kwargs, **extra})


def _check_shapes(arch: str, build_kwargs: Mapping, backbone: Mapping, path: str) -> None:
    """Every expected key present with the expected shape; nothing extra."""
    try:
        model = _build_model(arch, build_kwargs)
    except ValueError as err:
        raise CheckpointError(f"{path}: cannot build {arch} for these weights: {err}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in backbone.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:4])})")
    if extra:
        problems.append(f"{len(extra)} unexpected ({', '.join(extra[:4])})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} with wrong shapes (e.g. {k}: {got[k]} vs {expected[k]})")
    if problems:
        raise CheckpointError(f"{path} does not fit {arch}: " + "; ".join(problems))


def _resize_pos(backbone: dict, old_size, new_size, arch: str) -> dict:
    model = _build_model(arch, {"input_size": tuple(new_size)})  # validates new_size
    out = dict(backbone)
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
        meta["build_kwargs"]["num_classes"] = int(weights.head["head.projection.weight"].shape[0])
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
) -> dict[str, Any]:
    """Reads ``src`` (a file, hub folder or ``"<model>:<tag>"``), writes ``dst`` for target
    ``to``; with ``verify``, also compares stage features with the official model. Returns the
    written metadata (plus ``"verify_max_abs_diff"`` when verified)."""
    if to not in TARGETS:
        raise CheckpointError(f"unknown target {to!r}; choose from {', '.join(TARGETS)}")
    if os.path.exists(dst) and not force:
        raise CheckpointError(f"{dst} exists; pass --force (force=True) to overwrite it")
    weights = read_backbone_weights(src, from_format, allow_pickle, input_size)
    meta = export_weights(weights, dst, to, keep_head, force, prefix)
    if verify:
        meta["verify_max_abs_diff"] = verify_against_official(weights, dst)
    return meta


def _state_from_file(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    raw = read_checkpoint(path)
    own = _own_metadata(raw.content)
    if raw.file_format == "safetensors":
        own = _own_safetensors_metadata(raw.safetensors_metadata)
        state = raw.content
    else:
        state = raw.content.get("state_dict", raw.content.get("model"))
    if not own or state is None:
        raise CheckpointError(f"{path} was not written by hiera_backbones")
    prefix = own.get("prefix", "")
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, own


def load_backbone_checkpoint(
    model: nn.Module,
    src: str,
    from_format: str | None = None,
    allow_pickle: bool = False,
    strict: bool = True,
) -> BackboneWeights:
    """Loads any supported checkpoint into a backbone built by :func:`build_backbone`.

    The position embedding is resized to the model's ``input_size`` when they differ; the
    classifier is loaded too when the model has one. Raises :class:`CheckpointError` naming
    missing or mismatched keys."""
    input_size = getattr(model, "input_size", None)
    weights = read_backbone_weights(src, from_format, allow_pickle, input_size)
    arch = getattr(model, "arch", None)
    if arch is not None and arch != weights.arch:
        raise CheckpointError(f"{src} holds {weights.arch} weights, not {arch}")
    state = dict(weights.backbone)
    if getattr(model, "num_classes", 0) > 0 and weights.head:
        state.update(weights.head)
    missing, unexpected = model.load_state_dict(state, strict=False)
    own_keys = [k for k in missing if not k.startswith("out_norms.")]
    if strict and (own_keys or unexpected):
        raise CheckpointError(
            f"{src} does not fit {arch}: missing {own_keys[:5]}, unexpected {unexpected[:5]}"
        )
    return weights


def verify_against_official(weights: BackboneWeights, dst: str, batch: int = 1) -> float:
    """Max |difference| of all stage maps between the official model holding the *source*
    weights and our backbone holding the *written* ones; raises if above 1e-4."""
    try:
        import hiera
    except ImportError:
        raise CheckpointError(
            "--verify needs the official package: pip install hiera-transformer==0.1.4"
        ) from None
    from ..models import build_backbone
    from ..models.hiera import HIERA_CONFIGS

    size = tuple(weights.build_kwargs["input_size"])
    cfg = {**HIERA_CONFIGS[weights.arch], "input_size": size}
    official = hiera.Hiera(num_classes=1, **cfg).eval()
    source = dict(weights.source_state)
    ref_sizes = official.state_dict()
    for key in ("pos_embed", "pos_embed_spatial", "pos_embed_temporal"):
        if key in source and source[key].shape != ref_sizes[key].shape:
            source[key] = weights.backbone[key]  # resized on conversion, by the shared rule
    backbone_source = {
        k: v for k, v in source.items() if k in ref_sizes and not k.startswith(("norm.", "head."))
    }
    missing, _ = official.load_state_dict(backbone_source, strict=False)
    if any(not k.startswith(("norm.", "head.")) for k in missing):
        raise CheckpointError(f"verify: the source lacks official backbone keys {missing[:5]}")
    state, meta = _state_from_file(dst)
    ours = build_backbone(meta["arch"], **weights.build_kwargs).eval()
    missing, unexpected = ours.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith(("norm.", "head."))}, strict=False
    )
    if missing or unexpected:
        raise CheckpointError(f"verify: {dst} misses {missing[:5]} / has extra {unexpected[:5]}")
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, ref = official(x, return_intermediates=True)
        got = ours(x)
    diff = max((a - b.movedim(-1, 1)).abs().max().item() for a, b in zip(got, ref))
    if diff > 1e-4:
        raise CheckpointError(f"verify failed: stage maps differ by {diff:.3e} (> 1e-4)")
    return diff
