"""HieraDet (SAM 2 / SAM 2.1 trunk) weight formats: recognise them from their keys and map them
to our names (:class:`~hiera_backbones.models.hieradet.HieraDet`).

Formats (``source_format`` values):

* ``sam2-release``: the SAM 2 / SAM 2.1 release files (``sam2_hiera_*.pt``,
  ``sam2.1_hiera_*.pt``): ``{"model": {"image_encoder.trunk.<key>": ..., "image_encoder.neck.*",
  "sam_mask_decoder.*", "memory_attention.*", ...}}``. The trunk is kept (``mlp.layers.0/1`` ->
  ``mlp.fc1/fc2``); the rest of SAM 2 is dropped and listed; a key that is neither trunk nor a
  known part of SAM 2 makes the file unknown.
* ``sam2-timm``: timm's ``sam2_hiera_*`` state dicts (our names; ``head.*`` dropped).
* ``sam2-hf``: Hugging Face transformers (5.x) ``Sam2HieraDetModel`` (the trunk alone),
  ``Sam2VisionModel`` (``backbone.*`` + ``neck.*``) and ``Sam2Model`` / ``Sam2VideoModel``
  (``vision_encoder.backbone.*`` + the rest of SAM 2), from ``save_pretrained`` folders,
  ``.safetensors`` or ``.bin`` files. Names: ``patch_embed.projection`` -> ``patch_embed.proj``,
  ``layer_norm1/2`` -> ``norm1/2``, ``mlp.proj_in/proj_out`` -> ``mlp.fc1/fc2``; the trunk is
  kept, the rest of SAM 2 dropped and listed, anything else makes the file unknown.

Files this package wrote for a HieraDet (``hiera_backbones``) are read by ``convert.py`` with
their metadata. The architecture is recognised from shapes (width, blocks per stage, background
position-embedding grid) and matched against :data:`HIERADET_CONFIGS`: heads, windows and
global-attention blocks have no shapes of their own, so they come from the zoo.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..models.hieradet import HIERADET_CONFIGS
from .hiera_formats import strip_wrapper_prefix
from .io import CheckpointError

__all__ = [
    "HIERADET_FORMATS",
    "SAM2_HF_PARTS",
    "SAM2_PARTS",
    "detect_hieradet_format",
    "hieradet_state_from_content",
    "infer_hieradet_arch",
    "is_hieradet_arch",
]

HIERADET_FORMATS = ("sam2-release", "sam2-timm", "sam2-hf")
_TRUNK = "image_encoder.trunk."
#: Top-level parts of a SAM 2 / SAM 2.1 model other than the trunk (``SAM2Base``): dropped.
SAM2_PARTS = (
    "image_encoder.neck.", "sam_prompt_encoder.", "sam_mask_decoder.", "memory_attention.",
    "memory_encoder.", "maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr",
    "no_obj_embed_spatial", "obj_ptr_proj.", "obj_ptr_tpos_proj.", "mask_downsample.",
)
#: transformers' prefixes of the trunk (``Sam2Model``/``Sam2VideoModel``, ``Sam2VisionModel``,
#: ``Sam2HieraDetModel``), most specific first.
_HF_TRUNK_PREFIXES = ("vision_encoder.backbone.", "backbone.", "")
#: transformers' ``Sam2Model`` / ``Sam2VideoModel`` / ``Sam2VisionModel`` parts other than the
#: trunk: dropped.
SAM2_HF_PARTS = (
    "vision_encoder.neck.", "neck.", "prompt_encoder.", "mask_decoder.", "shared_image_embedding.",
    "no_memory_embedding", "no_memory_positional_encoding", "no_object_pointer",
    "memory_attention.", "memory_encoder.", "memory_temporal_positional_encoding",
    "mask_downsample.", "object_pointer_proj.", "occlusion_spatial_embedding_parameter",
    "temporal_positional_encoding_projection_layer.",
)
_HF_RENAMES = (
    ("patch_embed.projection.", "patch_embed.proj."),
    (".layer_norm1.", ".norm1."),
    (".layer_norm2.", ".norm2."),
    (".mlp.proj_in.", ".mlp.fc1."),
    (".mlp.proj_out.", ".mlp.fc2."),
)
_BACKBONE = re.compile(r"^(patch_embed\.|pos_embed(_window)?$|blocks\.\d+\.)")
_TIMM_HEAD = re.compile(r"^head\.")


def is_hieradet_arch(name: str) -> bool:
    """Whether ``name`` (a zoo name or ``"<zoo name>_custom"``) is a HieraDet architecture."""
    return any(name == n or name.startswith(n + "_") for n in HIERADET_CONFIGS)


def _rename_mlp(key: str) -> str:
    return key.replace(".mlp.layers.0.", ".mlp.fc1.").replace(".mlp.layers.1.", ".mlp.fc2.")


def _hf_trunk_prefix(state: Mapping) -> str | None:
    """The prefix of transformers' SAM 2 trunk keys in ``state`` (``""`` for a bare
    ``Sam2HieraDetModel``), or None if ``state`` holds none."""
    for prefix in _HF_TRUNK_PREFIXES:
        if (
            isinstance(state.get(prefix + "patch_embed.projection.weight"), torch.Tensor)
            and prefix + "pos_embed_window" in state
        ):
            return prefix
    return None


def _rename_hf(key: str) -> str:
    for old, new in _HF_RENAMES:
        key = key.replace(old, new)
    return key


def detect_hieradet_format(content: Mapping) -> str | None:
    """The HieraDet format of a checkpoint's top-level content, or None."""
    state = content.get("model", content)
    if not isinstance(state, Mapping):
        return None
    if _hf_trunk_prefix(state) is not None:
        return "sam2-hf"
    if any(isinstance(k, str) and k.startswith(_TRUNK) for k in state):
        return "sam2-release"
    state = content.get("state_dict", state)
    if not isinstance(state, Mapping):
        return None
    state = strip_wrapper_prefix(state)
    weight = state.get("patch_embed.proj.weight")
    window = state.get("pos_embed_window")
    if isinstance(weight, torch.Tensor) and weight.dim() == 4 and isinstance(window, torch.Tensor):
        return "sam2-timm"
    return None


def hieradet_state_from_content(
    content: Mapping, source_format: str
) -> tuple[dict[str, torch.Tensor], list[str], dict[str, torch.Tensor]]:
    """``(backbone under our names, dropped keys, unknown keys)`` of a checkpoint's content.
    ``source_format`` is one of :data:`HIERADET_FORMATS` or ``"hiera_backbones"`` (ours)."""
    state = content.get("model", content)
    if source_format == "sam2-hf":
        return _hf_state(state)
    if source_format != "sam2-release":
        state = strip_wrapper_prefix(content.get("state_dict", state))
    backbone, dropped, unknown = {}, [], {}
    for key, value in state.items():
        if source_format == "sam2-release":
            if key.startswith(_TRUNK):
                name = _rename_mlp(key[len(_TRUNK):])
                (backbone if _BACKBONE.match(name) else unknown)[name] = value
            elif key.startswith(SAM2_PARTS):
                dropped.append(key)
            else:
                unknown[key] = value
            continue
        name = _rename_mlp(key)
        if _BACKBONE.match(name):
            backbone[name] = value
        elif _TIMM_HEAD.match(name) and source_format == "sam2-timm":
            dropped.append(key)  # timm's classifier head (norm, fc): no SAM 2 weights
        else:
            unknown[name] = value
    return backbone, sorted(dropped), unknown


def _hf_state(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], dict[str, torch.Tensor]]:
    """transformers' SAM 2 models: the trunk renamed, the rest of SAM 2 dropped."""
    prefix = _hf_trunk_prefix(state)
    if prefix is None:
        raise KeyError("no patch_embed.projection.weight / pos_embed_window of a SAM 2 trunk")
    backbone, dropped, unknown = {}, [], {}
    for key, value in state.items():
        if prefix and key.startswith(SAM2_HF_PARTS):
            dropped.append(key)
        elif key.startswith(prefix):
            name = _rename_hf(key[len(prefix):])
            (backbone if _BACKBONE.match(name) else unknown)[name] = value
        else:
            unknown[key] = value
    return backbone, sorted(dropped), unknown


def infer_hieradet_arch(backbone: Mapping[str, torch.Tensor]) -> str:
    """The zoo architecture of HieraDet backbone tensors: width, blocks per stage (stage
    transitions are the blocks with ``proj``) and the background grid must match one entry."""
    patch = backbone.get("patch_embed.proj.weight")
    pos = backbone.get("pos_embed")
    blocks = [int(k.split(".")[1]) for k in backbone if k.startswith("blocks.")]
    if patch is None or pos is None or pos.dim() != 4 or not blocks:
        raise CheckpointError(
            "no patch_embed.proj.weight, 4-D pos_embed or blocks: not a HieraDet backbone"
        )
    depth = 1 + max(blocks)
    transitions = sorted(
        int(k.split(".")[1]) for k in backbone if re.match(r"blocks\.\d+\.proj\.weight$", k)
    )
    bounds = [0, *transitions, depth]
    stages = tuple(b - a for a, b in zip(bounds, bounds[1:]))
    embed_dim, grid = int(patch.shape[0]), tuple(pos.shape[-2:])
    for name, cfg in HIERADET_CONFIGS.items():
        if (cfg["embed_dim"], tuple(cfg["stages"]), tuple(cfg["global_pos_size"])) == (
            embed_dim, stages, grid
        ):
            return name
    raise CheckpointError(
        f"unrecognised HieraDet geometry (embed_dim={embed_dim}, blocks per stage={stages}, "
        f"pos_embed grid={grid}); known: {', '.join(HIERADET_CONFIGS)}"
    )
