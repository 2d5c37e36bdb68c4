"""HVT weight formats: official releases and plain ViT / DeiT / MAE weights turned into HVT.

Formats (``source_format`` values):

* ``hvt-official``: ``zhuang-group/HVT`` releases, ``{"model": {...}, ...}`` in DeiT style
  (possibly with ``optimizer``, ``lr_scheduler``, ``args``), no class token, stage position
  embeddings ``blocks.{p}.pos_embed``.
* ``vit``: timm / DeiT / MAE ViT weights (``cls_token``; MAE files also hold a decoder). They
  become an HVT by this rule: the class token and its position-embedding entry are dropped, the
  patch-token embedding is resized to the target grid, and every stage embedding
  ``blocks.{p}.pos_embed`` starts at **zero**, so the converted HVT computes exactly the ViT's
  blocks with HVT's pooling inserted; fine-tuning learns the stage embeddings. The head count
  cannot be read from shapes (MAE-Lite's ViT-Tiny has 12 heads where DeiT-Ti has 3), so it must be
  given (``num_heads``), along with the target variant (``arch``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from ..models.hvt import HVT_CONFIGS, hvt_pool_blocks, hvt_pooled_length
from ..models.pos_embed import resize_pos_embed
from .io import CheckpointError

__all__ = [
    "HVT_FORMATS",
    "detect_hvt_format",
    "hvt_state_from_content",
    "infer_hvt_arch",
    "split_hvt_state",
    "vit_to_hvt",
]

HVT_FORMATS = ("hvt-official", "vit")

_STAGE_POS = re.compile(r"^blocks\.(\d+)\.pos_embed$")
_BACKBONE = re.compile(r"^(patch_embed\.proj\.|pos_embed(_temporal)?$|blocks\.\d+\.)")
_HEAD = re.compile(r"^(norm\.|head\.)")
# Pretraining / distillation leftovers that an HVT backbone never uses.
_DROP = re.compile(
    r"^(cls_token$|dist_token$|head_dist\.|mask_token$|decoder_|decoder\.|fc_norm\.|pre_logits\.)"
)
_WRAPPERS = ("module.model.", "module.", "model.", "backbone.bottom_up.", "backbone.net.",
             "backbone.", "encoder.")


def _unwrap(content: Mapping) -> Mapping | None:
    state = content.get("model", content.get("state_dict", content))
    if not isinstance(state, Mapping):
        return None
    for prefix in _WRAPPERS:
        if any(k.startswith(prefix + "blocks.0.") for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _looks_like_plain_vit(state: Mapping) -> bool:
    """A non-hierarchical ViT: a square patch conv (kernel = stride) and constant width."""
    weight = state.get("patch_embed.proj.weight")
    return (
        isinstance(weight, torch.Tensor)
        and weight.dim() in (4, 5)
        and weight.shape[-1] == weight.shape[-2] >= 4
        and "blocks.0.attn.qkv.weight" in state
        and not any(re.match(r"blocks\.\d+\.proj\.weight$", k) for k in state)
    )


def detect_hvt_format(content: Mapping) -> str | None:
    state = _unwrap(content)
    if state is None or not _looks_like_plain_vit(state):
        return None
    return "vit" if "cls_token" in state else "hvt-official"


def hvt_state_from_content(content: Mapping) -> dict[str, torch.Tensor]:
    state = _unwrap(content)
    if state is None:
        raise CheckpointError("no state dict found under 'model' or 'state_dict'")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def split_hvt_state(state: Mapping[str, torch.Tensor]):
    """(backbone, classifier head, dropped, unknown) tensors under official HVT names."""
    backbone, head, dropped, unknown = {}, {}, {}, {}
    for k, v in state.items():
        if _BACKBONE.match(k):
            backbone[k] = v
        elif _HEAD.match(k):
            head[k] = v
        elif _DROP.match(k):
            dropped[k] = v
        else:
            unknown[k] = v
    return backbone, head, dropped, unknown


def infer_hvt_arch(backbone: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    """The official variant (and build kwargs) from shapes: width, depth, which blocks pool."""
    patch = backbone["patch_embed.proj.weight"]
    embed_dim, patch_size = patch.shape[0], patch.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in backbone if k.startswith("blocks."))
    pools = sorted(int(m[1]) for k in backbone if (m := _STAGE_POS.match(k)))
    if not pools:
        width = 0
    elif len(pools) == 1:
        width = depth  # pools after block 0 only (HVT-S-1 / Ti-1: width 12)
    else:
        width = pools[1] - pools[0]
    if hvt_pool_blocks(depth, width) != pools:
        raise CheckpointError(
            f"pooling blocks {pools} do not follow HVT's rule (every {width} blocks from 0)"
        )
    name = next(
        (
            n
            for n, c in HVT_CONFIGS.items()
            if c["embed_dim"] == embed_dim
            and c["pool_block_width"] in ((width,) if width != depth else (depth, 12))
            and depth == 12
        ),
        None,
    )
    if name is None:
        raise CheckpointError(
            f"unrecognised HVT geometry (embed_dim={embed_dim}, depth={depth}, pooling every "
            f"{width} blocks); known: {', '.join(HVT_CONFIGS)}"
        )
    pos = backbone["pos_embed"]
    side = math.isqrt(pos.shape[1])
    if side * side != pos.shape[1]:
        raise CheckpointError(f"pos_embed has {pos.shape[1]} tokens, not a square grid")
    kwargs = {"input_size": (side * patch_size, side * patch_size)}
    if patch_size != 16:
        kwargs["patch_size"] = int(patch_size)
    # Stage embedding lengths must match HVT's 1D pooling of this grid.
    length = side * side
    for p in pools:
        length = hvt_pooled_length(length)
        got = backbone[f"blocks.{p}.pos_embed"]
        if got.dim() == 3 and got.shape[1] != length:
            raise CheckpointError(
                f"blocks.{p}.pos_embed has {got.shape[1]} tokens; HVT pooling of a {side}x{side} "
                f"grid gives {length}"
            )
    return name, kwargs


def vit_to_hvt(
    state: Mapping[str, torch.Tensor], arch: str, num_heads: int
) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """Plain ViT weights -> official-layout (1D) HVT weights for ``arch``, by the module rule.

    Returns (state dict, build kwargs, dropped keys)."""
    if arch not in HVT_CONFIGS:
        raise CheckpointError(
            f"converting a ViT needs the target HVT variant (--arch): one of "
            f"{', '.join(HVT_CONFIGS)}"
        )
    if not num_heads:
        raise CheckpointError(
            "converting a ViT needs its head count (--num-heads): it cannot be read from the "
            "weights (DeiT-Ti has 3 heads, MAE-Lite ViT-Tiny 12 with the same shapes)"
        )
    cfg = HVT_CONFIGS[arch]
    patch = state["patch_embed.proj.weight"]
    if patch.shape[0] != cfg["embed_dim"]:
        raise CheckpointError(
            f"the ViT is {patch.shape[0]} wide, {arch} is {cfg['embed_dim']}; pick a variant of "
            "the same width"
        )
    if cfg["embed_dim"] % num_heads:
        raise CheckpointError(f"--num-heads {num_heads} does not divide width {cfg['embed_dim']}")
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for k, v in state.items():
        if k == "fc_norm.weight" or k == "fc_norm.bias":
            # MAE fine-tuned GAP models replace `norm` by `fc_norm` (applied after the mean);
            # HVT normalizes before the mean, the closest available match.
            if f"norm.{k.split('.')[1]}" not in state:
                out["norm." + k.split(".")[1]] = v
                continue
        if _DROP.match(k):
            dropped.append(k)
        elif k == "pos_embed":
            continue
        else:
            out[k] = v
    pos = state["pos_embed"]
    tokens = pos.shape[1]
    prefix_tokens = tokens - math.isqrt(tokens) ** 2
    if prefix_tokens not in (0, 1, 2):
        raise CheckpointError(f"pos_embed has {tokens} entries: not a square grid plus cls tokens")
    if prefix_tokens:
        dropped.append("pos_embed[cls]")
    patch_pos = pos[:, prefix_tokens:]
    side = math.isqrt(patch_pos.shape[1])
    patch_size = patch.shape[-1]
    target = 224 // patch_size
    out["pos_embed"] = resize_pos_embed(patch_pos, (side, side), (target, target))
    length = target * target
    depth = 1 + max(int(k.split(".")[1]) for k in out if k.startswith("blocks."))
    for p in hvt_pool_blocks(depth, cfg["pool_block_width"]):
        length = hvt_pooled_length(length)
        out[f"blocks.{p}.pos_embed"] = pos.new_zeros(1, length, pos.shape[-1])
    kwargs: dict = {"input_size": (target * patch_size, target * patch_size)}
    if patch_size != 16:
        kwargs["patch_size"] = int(patch_size)
    if num_heads != cfg["num_heads"]:
        kwargs["num_heads"] = int(num_heads)
    if depth != 12:
        kwargs["depth"] = depth
    return out, kwargs, sorted(dropped)
