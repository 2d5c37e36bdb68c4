"""Hiera weight formats: recognise them from their keys and map them to the official names.

Formats (``source_format`` values):

* ``hiera-official``: ``{"model_state": {...}}`` from the official model zoo, classifier
  (``mae_*_ft_*``) or MAE (``mae_in1k``/``mae_k400``: decoder, fusion heads, ``encoder_norm``).
* ``hiera-hub``: the official Hugging Face hub layout (``config.json`` + ``model.safetensors``)
  or any plain state dict with official names.
* ``hiera-timm``: timm's ``hiera_*`` (``head.fc``, ``head.norm``), including the abs-win
  variants ``hiera_{small,base}_abswin_256`` (``pos_embed`` background grid + ``pos_embed_win``,
  LayerScale ``blocks.N.ls1/ls2.gamma``), which are :class:`Hiera` arch options here.
* ``hiera-hf``: Hugging Face transformers ``HieraModel`` / ``HieraForImageClassification`` /
  ``HieraForPreTraining`` (``embeddings.*``, ``encoder.stages.S.layers.L.*``).
* ``hiera_backbones`` (:data:`~.metadata.OWN_FORMAT`): files written by this package (any
  target), re-read.

:func:`to_abs_win` turns a plain (official / MAE) image Hiera's learned position embedding into
the abs-win pair (background grid + one mask unit's window embedding), so MAE weights start an
abs-win Hiera (facebookresearch/hiera#45; ``hiera-convert --abs-win``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from ..models.hiera import HIERA_CONFIGS, Hiera
from .io import CheckpointError
from .metadata import OWN_FORMAT

__all__ = [
    "HIERA_FORMATS",
    "HieraArch",
    "detect_hiera_format",
    "infer_hiera_arch",
    "to_official_hiera",
    "split_hiera_state",
    "strip_wrapper_prefix",
    "to_abs_win",
]

HIERA_FORMATS = ("hiera-official", "hiera-hub", "hiera-timm", "hiera-hf")

_BACKBONE = re.compile(r"^(patch_embed\.|pos_embed(_spatial|_temporal|_win)?$|blocks\.\d+\.)")
_HEAD = re.compile(r"^(norm\.|head\.projection\.)")
_MAE_ONLY = re.compile(
    r"^(encoder_norm\.|multi_scale_fusion_heads\.|decoder_|mask_token$|decoder\.|multiscale_fusion\.)"
)
# Prefixes that frameworks or wrappers put in front of backbone keys.
_WRAPPER_PREFIXES = ("module.", "backbone.bottom_up.", "backbone.net.", "backbone.", "encoder.")


def strip_wrapper_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if any(k.startswith(prefix + "blocks.") for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def detect_hiera_format(content: Mapping) -> str | None:
    """The Hiera format of a checkpoint's top-level content, or None if it is not Hiera."""
    if "model_state" in content and isinstance(content["model_state"], Mapping):
        inner = content["model_state"]
        return "hiera-official" if _looks_like_hiera(inner) else None
    keys = set(content)
    if any(k.startswith(("hiera.embeddings.", "embeddings.patch_embeddings.")) for k in keys):
        return "hiera-hf"
    state = content.get("state_dict", content.get("model", content))
    if not isinstance(state, Mapping):
        return None
    state = strip_wrapper_prefix(state)
    if not _looks_like_hiera(state):
        return None
    if any(k.startswith(("head.fc.", "head.norm.")) for k in state):
        return "hiera-timm"
    return "hiera-hub"


def _looks_like_hiera(state: Mapping) -> bool:
    """Hiera: a 7x7 (or 3x7x7) stride-4 patch conv and blocks that change width (``proj``), or
    timm's abs-win window embedding (its small model widens without ``proj``). SAM 2's
    HieraDet (``pos_embed_window``) is another family."""
    weight = state.get("patch_embed.proj.weight")
    return (
        isinstance(weight, torch.Tensor)
        and weight.dim() in (4, 5)
        and "pos_embed_window" not in state
        and (
            "pos_embed_win" in state
            or any(re.match(r"blocks\.\d+\.proj\.weight$", k) for k in state)
        )
    )


def _from_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' Hiera names -> official names (inverse of ``convert_hiera_to_hf.py``)."""
    plain = {k.removeprefix("hiera."): v for k, v in state.items()}
    layer_re = re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)$")
    depths: dict[int, int] = {}
    for k in plain:
        if m := layer_re.match(k):
            stage, layer = int(m[1]), int(m[2])
            depths[stage] = max(depths.get(stage, 0), layer + 1)
    offsets = {s: sum(depths[t] for t in range(s)) for s in sorted(depths)}
    renames = {"layernorm_before.": "norm1.", "layernorm_after.": "norm2."}
    out: dict[str, torch.Tensor] = {}
    for k, v in plain.items():
        if m := layer_re.match(k):
            rest = m[3]
            for old, new in renames.items():
                rest = rest.replace(old, new) if rest.startswith(old) else rest
            out[f"blocks.{offsets[int(m[1])] + int(m[2])}.{rest}"] = v
        elif k.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + k.rsplit(".", 1)[1]] = v
        elif k == "embeddings.position_embeddings":
            out["pos_embed"] = v
        elif k.startswith("pooler.layernorm."):
            out["norm." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("classifier."):
            out["head.projection." + k.rsplit(".", 1)[1]] = v
        else:
            out[k] = v  # MAE parts (encoder_norm, decoder.*, multiscale_fusion.*) are dropped later
    return out


def _from_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("head.fc."):
            k = "head.projection." + k[len("head.fc."):]
        elif k.startswith("head.norm."):
            k = "norm." + k[len("head.norm."):]
        out[k] = v  # abs-win: pos_embed (background grid), pos_embed_win, ls1/ls2 kept as they are
    return out


def to_official_hiera(content: Mapping, source_format: str) -> dict[str, torch.Tensor]:
    """Maps a checkpoint's content to a flat state dict with official Hiera names (backbone,
    classifier and MAE-only keys all still present)."""
    if source_format == "hiera-official":
        return dict(content["model_state"])
    if source_format == "hiera-hf":
        return _from_hf(content)
    state = content.get("state_dict", content.get("model", content))
    state = strip_wrapper_prefix(state)
    if source_format == "hiera-timm":
        return _from_timm(state)
    if source_format in ("hiera-hub", OWN_FORMAT):
        return dict(state)
    raise CheckpointError(f"unknown Hiera format {source_format!r}; choose from {HIERA_FORMATS}")


def to_abs_win(
    backbone: Mapping[str, torch.Tensor], grid: tuple[int, int], window: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """A plain image Hiera's ``pos_embed`` ``(1, H*W, C)`` on the token ``grid`` ``(H, W)`` ->
    abs-win ``pos_embed`` ``(1, C, H, W)`` (background) + ``pos_embed_win`` ``(1, C, wh, ww)``
    (``window`` = the mask unit in tokens, 8x8 for every official Hiera).

    The window part is the mean of the learned embedding over all mask-unit windows; the
    background is the rest, ``pos_embed - tile(window part)``, on the original grid. So at the
    grid it was learned on, background + tiled window is the original embedding (computed in
    float64, each part rounded once to the source dtype: equal up to one rounding), and the
    abs-win model is the plain model. At another size only the background is interpolated and
    the window part is tiled (the abs-win rule), which is *not* the plain model's bicubic
    resize of the whole embedding, by design. Other tensors are returned unchanged."""
    pos = backbone.get("pos_embed")
    (gh, gw), (wh, ww) = tuple(grid), tuple(window)
    if pos is None or pos.dim() != 3 or "pos_embed_win" in backbone:
        raise CheckpointError(
            "--abs-win needs a plain image Hiera position embedding (1, N, C); this one is "
            f"{None if pos is None else tuple(pos.shape)}"
            + (" and already abs-win" if "pos_embed_win" in backbone else "")
        )
    channels = pos.shape[-1]
    if pos.shape[1] != gh * gw or gh % wh or gw % ww:
        raise CheckpointError(
            f"pos_embed has {pos.shape[1]} tokens; expected a {gh}x{gw} grid of whole "
            f"{wh}x{ww} mask units"
        )
    full = pos.double().reshape(1, gh, gw, channels).permute(0, 3, 1, 2)
    units = full.reshape(1, channels, gh // wh, wh, gw // ww, ww)
    win = units.mean(dim=(2, 4))
    background = full - win.tile(1, 1, gh // wh, gw // ww)
    out = dict(backbone)
    out["pos_embed"] = background.to(pos.dtype).contiguous()
    out["pos_embed_win"] = win.to(pos.dtype).contiguous()
    return out


def split_hiera_state(state: Mapping[str, torch.Tensor]):
    """Splits official-named tensors into (backbone, classifier head, MAE-only, unknown)."""
    backbone, head, mae, unknown = {}, {}, {}, {}
    for k, v in state.items():
        if _BACKBONE.match(k):
            backbone[k] = v
        elif _HEAD.match(k):
            head[k] = v
        elif _MAE_ONLY.match(k):
            mae[k] = v
        else:
            unknown[k] = v
    return backbone, head, mae, unknown


class HieraArch:
    """An official architecture recognised from tensor shapes."""

    def __init__(self, name: str, input_size: tuple[int, ...], num_classes: int) -> None:
        self.name = name
        self.input_size = input_size
        self.num_classes = num_classes

    def build_kwargs(self) -> dict:
        kwargs: dict = {"input_size": self.input_size}
        return kwargs

    def __repr__(self) -> str:
        return f"HieraArch({self.name!r}, input_size={self.input_size})"


def _input_size_from_pos_embed(backbone: Mapping, stride: tuple[int, ...]) -> tuple[int, ...]:
    """Official checkpoints have square token grids; (T,) H, W follow from the token counts."""
    key = "pos_embed_spatial" if len(stride) == 3 else "pos_embed"
    if key not in backbone:
        raise CheckpointError(f"no {key}: this is not a complete Hiera backbone")
    tokens = backbone[key].shape[1]
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise CheckpointError(
            f"{key} has {tokens} tokens, not a square grid, so the input size it was trained at "
            "is unknown; only square grids (all official checkpoints) are recognised"
        )
    size = (side * stride[-2], side * stride[-1])
    if len(stride) == 3:
        size = (backbone["pos_embed_temporal"].shape[1] * stride[0], *size)
    return size


def _same(a, b) -> bool:
    return (tuple(a) if isinstance(a, (list, tuple)) else a) == (
        tuple(b) if isinstance(b, (list, tuple)) else b
    )


def infer_hiera_arch(
    backbone: Mapping[str, torch.Tensor],
    head: Mapping,
    input_size: tuple[int, ...] | None = None,
) -> HieraArch:
    """Recognises the official model from backbone shapes (width, blocks per stage, video).
    The input size comes from the position embedding (a square grid) unless given."""
    patch = backbone.get("patch_embed.proj.weight")
    if patch is None:
        raise CheckpointError("no patch_embed.proj.weight: this is not a Hiera backbone")
    video = patch.dim() == 5
    embed_dim = patch.shape[0]
    depth = 1 + max(int(k.split(".")[1]) for k in backbone if k.startswith("blocks."))
    # Stage transitions: the blocks whose qkv widens (with or without a ``proj``).
    transitions = sorted(
        int(k.split(".")[1]) for k, v in backbone.items()
        if re.match(r"blocks\.\d+\.attn\.qkv\.weight$", k) and v.shape[0] != 3 * v.shape[1]
    )
    bounds = [0, *transitions, depth]
    stages = tuple(b - a for a, b in zip(bounds, bounds[1:]))
    abs_win = "pos_embed_win" in backbone
    variant = dict(
        abs_win=abs_win,
        global_pos_size=tuple(backbone["pos_embed"].shape[-2:]) if abs_win else None,
        layer_scale=any(re.match(r"blocks\.\d+\.ls1\.gamma$", k) for k in backbone),
        expand_proj=not transitions or f"blocks.{transitions[0]}.proj.weight" in backbone,
    )
    zoo = {**Hiera.arch_defaults}
    name = next(
        (
            n
            for n, c in Hiera.arch_zoo.items()
            if c["embed_dim"] == embed_dim
            and tuple(c["stages"]) == stages
            and (len(c["patch_stride"]) == 3) == video
            and all(_same(c.get(k, zoo[k]), v) for k, v in variant.items())
        ),
        None,
    )
    if name is None:
        extra = ", abs-win" if abs_win else ""
        raise CheckpointError(
            f"unrecognised Hiera geometry (embed_dim={embed_dim}, blocks per stage={stages}, "
            f"{'video' if video else 'image'}{extra}); known: {', '.join(Hiera.arch_zoo)}"
        )
    if input_size is None and abs_win:
        input_size = Hiera.arch_zoo[name]["input_size"]  # no parameter depends on it
    elif input_size is None:
        input_size = _input_size_from_pos_embed(backbone, HIERA_CONFIGS[name]["patch_stride"])
    num_classes = head["head.projection.weight"].shape[0] if "head.projection.weight" in head else 0
    return HieraArch(name, tuple(input_size), num_classes)
