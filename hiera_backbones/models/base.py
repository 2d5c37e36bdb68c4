"""What every multi-scale backbone here shares: stage metadata, layer ids for lr decay, input
checks and gradient-checkpointed block calls. Subclasses set ``arch``, ``spatial_dims``,
``size_multiple``, ``stage_channels``, ``stage_strides``, ``stage_blocks``, ``out_indices``,
``blocks``, ``patch_embed`` and ``grad_checkpointing``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["StageBackbone"]


class StageBackbone(nn.Module):
    """Base class for backbones returning a tuple of stage outputs."""

    arch: str
    spatial_dims: int
    size_multiple: tuple[int, ...]
    stage_channels: list[int]
    stage_strides: list[int]
    stage_blocks: list[int]  # index of the block whose output is each stage
    out_indices: tuple[int, ...]
    blocks: nn.ModuleList
    grad_checkpointing: bool

    @property
    def out_channels(self) -> list[int]:
        return [self.stage_channels[i] for i in self.out_indices]

    @property
    def out_strides(self) -> list[int]:
        return [self.stage_strides[i] for i in self.out_indices]

    @property
    def feature_info(self) -> list[dict]:
        """timm-style description of the returned stages."""
        return [
            dict(
                num_chs=self.stage_channels[i],
                reduction=self.stage_strides[i],
                module=f"blocks.{self.stage_blocks[i]}",
                stage=i,
            )
            for i in self.out_indices
        ]

    @property
    def num_layers(self) -> int:
        """Number of layer ids minus one: :meth:`get_layer_id` returns ids in [0, num_layers]."""
        return len(self.blocks)

    def get_layer_id(self, param_name: str) -> int:
        """Layer id for layer-wise lr decay, as in the official Hiera training code: embeddings
        (``patch_embed``, ``pos_embed*``) 0, ``blocks.i.*`` i+1 (HVT's stage embedding
        ``blocks.i.pos_embed`` included), everything else (output norms, classifier)
        ``num_layers``. Scale a parameter's lr by ``decay ** (num_layers - layer_id)``."""
        if param_name.startswith(("pos_embed", "patch_embed")):
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        return self.num_layers

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def _check_input(self, x: torch.Tensor) -> None:
        """Rank, channels and size of an input batch; one clear ValueError otherwise."""
        expected_dim = self.spatial_dims + 2
        if x.dim() != expected_dim:
            layout = "(N, C, T, H, W)" if self.spatial_dims == 3 else "(N, C, H, W)"
            raise ValueError(
                f"{self.arch}: expected a {expected_dim}-D input {layout}, got shape "
                f"{tuple(x.shape)}"
            )
        in_chans = self.patch_embed.proj.in_channels
        if x.shape[1] != in_chans:
            raise ValueError(
                f"{self.arch}: expected {in_chans} input channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        self._check_size(x.shape[2:], what="input")

    def _check_size(self, size: Sequence[int], what: str) -> None:
        names = ("T", "H", "W")[-self.spatial_dims :]
        bad = []
        for n, s, m in zip(names, size, self.size_multiple):
            if s <= 0 or s % m:
                low = (s // m) * m
                options = " or ".join(str(v) for v in (low, low + m) if v > 0)
                bad.append(f"{n}={s} (use {options})")
        if bad:
            rule = ", ".join(f"{n} a multiple of {m}" for n, m in zip(names, self.size_multiple))
            raise ValueError(
                f"{self.arch}: {what} {tuple(size)} is not supported: {'; '.join(bad)}. "
                f"{self.arch} needs {rule}; pad or resize the input."
            )
