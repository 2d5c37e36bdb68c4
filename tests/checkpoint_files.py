"""Checkpoint files laid out as their publishers write them, with random weights, for converter
tests; and loading converted files the way each framework does.

Every ``save_*`` writes one file (or folder) at ``path`` and returns ``path``."""

from __future__ import annotations

import argparse
import builtins
import os
from pathlib import Path

import hiera  # the official implementation, hiera-transformer==0.1.4
import timm
import torch
from hiera import hiera_mae

from hiera_backbones import build_backbone
from hiera_backbones.models import HVT_CONFIGS


# ----------------------------------------------------------------------------- Hiera (official)
def save_official(path: Path, model: torch.nn.Module) -> Path:
    """An official (fine-tuned) checkpoint: ``{"model_state": state_dict}``, as on
    dl.fbaipublicfiles.com/hiera."""
    torch.save({"model_state": model.state_dict()}, path)
    return path


def save_official_mae(path: Path, name: str, backbone: dict | None = None) -> Path:
    """An official MAE checkpoint of ``mae_<name>`` (decoder, mask token, fusion heads
    included); its encoder holds ``backbone`` when given (official keys), random weights
    otherwise."""
    mae = getattr(hiera_mae, f"mae_{name}")(pretrained=False)
    if backbone is not None:
        missing, unexpected = mae.load_state_dict(backbone, strict=False)
        assert not unexpected and all(
            k.startswith(("mask_token", "decoder", "encoder_norm", "multi_scale", "norm.",
                          "head.")) for k in missing
        ), (missing, unexpected)
    torch.save({"model_state": mae.state_dict()}, path)
    return path


def save_hub_folder(path: Path, model: torch.nn.Module) -> Path:
    """The official Hugging Face hub layout: ``config.json`` + ``model.safetensors``."""
    model.save_pretrained(str(path), config=model.config)
    return path


def official_video(name: str = "hiera_base_16x224") -> torch.nn.Module:
    """The official video model with random weights (its constructor fixes 16x224)."""
    return getattr(hiera, name)(pretrained=False).eval()


# ----------------------------------------------------------------------------- HVT and ViT
def save_hvt_release(path: Path, model: torch.nn.Module, arch: str) -> Path:
    """An official HVT release (DeiT training code): the model under ``"model"``, with the
    optimizer, epoch and argparse ``args`` beside it."""
    cfg = HVT_CONFIGS[arch]
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
            "epoch": 299,
            "args": argparse.Namespace(num_heads=cfg["num_heads"],
                                       pool_block_width=cfg["pool_block_width"],
                                       pool_kernel_size=3),
        },
        path,
    )
    return path


def hvt_classifier(arch: str) -> torch.nn.Module:
    """An HVT with the ImageNet head, as the releases hold it."""
    return build_backbone(arch, num_classes=1000).eval()


def timm_vit(name: str = "vit_small_patch16_224", class_token: bool = True,
             **kwargs) -> torch.nn.Module:
    """A DeiT-style timm ViT (class token, token pooling, no fc_norm) with random weights."""
    return timm.create_model(
        name, pretrained=False, class_token=class_token,
        global_pool="token" if class_token else "avg", fc_norm=False, **kwargs,
    ).eval()


def save_deit(path: Path, state: dict) -> Path:
    """A DeiT release: the ViT's state dict under ``"model"``."""
    torch.save({"model": state}, path)
    return path


# ----------------------------------------------------------------------------- SAM 2 / HieraDet
def sam2_release_rest() -> dict[str, torch.Tensor]:
    """Stand-ins for the parts of a SAM 2 model other than the image-encoder trunk."""
    return {
        "image_encoder.neck.convs.0.conv.weight": torch.randn(256, 768, 1, 1),
        "image_encoder.neck.position_encoding.dummy": torch.zeros(1),
        "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight": torch.randn(256, 256),
        "sam_prompt_encoder.point_embeddings.0.weight": torch.randn(1, 256),
        "memory_attention.layers.0.cross_attn_image.k_proj.weight": torch.randn(256, 64),
        "memory_encoder.out_proj.weight": torch.randn(64, 256, 1, 1),
        "maskmem_tpos_enc": torch.randn(7, 1, 1, 64),
        "no_mem_embed": torch.randn(1, 1, 256),
        "obj_ptr_proj.layers.0.weight": torch.randn(256, 256),
        "no_obj_embed_spatial": torch.randn(1, 64),
    }


def save_sam2_release(path: Path, trunk: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A SAM 2 / SAM 2.1 release file (``{"model": ...}``) whose ``image_encoder.trunk`` holds
    ``trunk`` (timm's / our HieraDet names, renamed to SAM 2's: ``mlp.fc1/fc2`` ->
    ``mlp.layers.0/1``; a timm ``head.*`` is left out), plus stand-ins for the rest of SAM 2.
    Returns the stand-ins (what a converter must drop)."""
    model = {}
    for k, v in trunk.items():
        if k.startswith("head."):
            continue
        k = k.replace(".mlp.fc1.", ".mlp.layers.0.").replace(".mlp.fc2.", ".mlp.layers.1.")
        model["image_encoder.trunk." + k] = v
    rest = sam2_release_rest()
    torch.save({"model": {**model, **rest}}, path)
    return rest


def save_random_sam2_release(path: Path, arch: str = "sam2_hiera_tiny",
                             seed: int = 0) -> dict[str, torch.Tensor]:
    """A SAM 2.1 release-layout file of ``arch`` with random trunk weights (our HieraDet's
    initialization, no timm); returns the trunk state under our names."""
    torch.manual_seed(seed)
    trunk = build_backbone(arch).state_dict()
    save_sam2_release(path, trunk)
    return trunk


# ----------------------------------------------------------------------------- framework loaders
def load_with_detectron2(path: str, backbone: torch.nn.Module):
    """Loads ``path`` with detectron2's ``DetectionCheckpointer`` into a detector holding
    ``backbone`` where our configs put it (``backbone.bottom_up``); returns the incompatible
    keys detectron2 found (missing, unexpected)."""
    from detectron2.checkpoint import DetectionCheckpointer

    detector = torch.nn.Module()
    detector.backbone = torch.nn.Module()
    detector.backbone.bottom_up = backbone

    class RecordingCheckpointer(DetectionCheckpointer):
        def _load_model(self, checkpoint):
            self.incompatible = super()._load_model(checkpoint)
            return self.incompatible

    checkpointer = RecordingCheckpointer(detector)
    checkpointer.load(str(path))
    return checkpointer.incompatible


def load_with_mmengine(path: str, backbone: torch.nn.Module) -> None:
    """Loads ``path`` the two ways an OpenMMLab config does, strictly: ``load_from`` (the whole
    model, backbone under ``backbone.``) and ``init_cfg=dict(type='Pretrained',
    prefix='backbone.')`` (the backbone alone). Raises on any missing or unexpected key, and
    if the backbone does not end up holding the file's tensors."""
    from mmengine.model.weight_init import PretrainedInit
    from mmengine.runner.checkpoint import load_checkpoint

    model = torch.nn.Module()
    model.backbone = backbone
    load_checkpoint(model, str(path), strict=True)
    with torch.no_grad():
        for p in backbone.parameters():
            p.zero_()
    PretrainedInit(checkpoint=str(path), prefix="backbone.")(backbone)  # not strict: compare
    ref = torch.load(path, weights_only=True)["state_dict"]
    for name, tensor in backbone.state_dict().items():
        if not torch.equal(tensor, ref["backbone." + name]):
            raise AssertionError(f"init_cfg left backbone.{name} unloaded")


def in_download_cache(cache, tag: str) -> str:
    """Where the download of ``tag`` (``"<model>:<tag>"``) lands in the cache folder."""
    from hiera_backbones.checkpoints import OFFICIAL_CHECKPOINTS
    from hiera_backbones.checkpoints.hub import cache_file_name

    return str(cache / cache_file_name(OFFICIAL_CHECKPOINTS[tag]))


# ----------------------------------------------------------------------------- hostile pickles
class RunsCode:
    """Pickled, a call of ``os.system``: what a weights-only load must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class ReachesPastHistoryBuffer:
    """Pickled, ``getattr(HistoryBuffer, '__init__')``: the getattr form mmengine's checkpoints
    use, asking for something other than a statistics method."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer

        return (builtins.getattr, (HistoryBuffer, "__init__"))
