"""What every multi-scale backbone here shares: architecture resolution (``arch`` as a name or a
dict), stage metadata, the timm-style feature API (``forward_intermediates``,
``feature_info``), layer ids for layer-wise lr decay, input checks and gradient-checkpointed
block calls.

A subclass sets the class attributes ``family``, ``arch_zoo`` (name -> architecture),
``arch_defaults`` (constructor defaults of every architecture key), ``arch_keys`` (the keys that
make a variant, compared to name it) and ``default_arch``, implements :meth:`stage_info`
(stage geometry from a resolved config, without building anything) and
:meth:`_forward_stages`, and sets in ``__init__``: ``arch``, ``arch_config``, ``spatial_dims``,
``size_multiple``, ``stage_channels``, ``stage_strides``, ``stage_blocks``, ``out_indices``,
``blocks``, ``patch_embed``, ``out_norms`` and ``grad_checkpointing``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["StageBackbone", "backbone_layer_id", "take_indices"]


def backbone_layer_id(param_name: str, num_blocks: int) -> int:
    """Layer id of a backbone parameter for layer-wise lr decay, the rule of the official Hiera
    training code (``Hiera.get_layer_id`` / ``make_param_groups``, hiera v0.2.0), with which the
    paper's fine-tuning recipes (their layer-decay rates) were tuned: embeddings
    (``patch_embed``, ``pos_embed*``) 0, ``blocks.i.*`` ``i + 1`` (HVT's stage embedding
    ``blocks.i.pos_embed`` included), anything else ``num_blocks``: output norms, a classifier
    and, outside the backbone, neck and heads share the last block's id, so they train at the
    base lr. The lr scale of id ``i`` is ``decay ** (num_blocks - i)``. (MAE's
    ``param_groups_lrd`` and ViTDet put the rest one id higher, which decays every backbone
    layer once more; the Hiera rates assume the official rule.)"""
    if param_name.startswith(("pos_embed", "patch_embed")):
        return 0
    if param_name.startswith("blocks."):
        index = int(param_name.split(".")[1])
        if not 0 <= index < num_blocks:
            raise ValueError(f"{param_name}: block index beyond num_layers={num_blocks}")
        return index + 1
    return num_blocks


def take_indices(num_stages: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's rule for ``forward_intermediates(indices=...)``: None = every stage, an int ``n``
    = the last ``n`` stages, a sequence = those stages (negative ones count from the end).
    Returned absolute and increasing; one ValueError otherwise."""
    if indices is None:
        return list(range(num_stages))
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(f"indices={indices}: last-n must be in [1, {num_stages}]")
        return list(range(num_stages - indices, num_stages))
    taken = [int(i) + num_stages if int(i) < 0 else int(i) for i in indices]
    if not taken or any(not 0 <= i < num_stages for i in taken) or taken != sorted(set(taken)):
        raise ValueError(
            f"indices={list(indices)} must be increasing stage indices in [-{num_stages}, "
            f"{num_stages})"
        )
    return taken


def _frozen(value: Any) -> Any:
    """Lists and tuples compare equal when their items do (configs come from YAML, JSON...)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class StageBackbone(nn.Module):
    """Base class for backbones returning a tuple of stage outputs."""

    family: ClassVar[str]
    arch_zoo: ClassVar[Mapping[str, Mapping[str, Any]]]
    arch_defaults: ClassVar[Mapping[str, Any]]
    arch_keys: ClassVar[tuple[str, ...]]
    default_arch: ClassVar[str]

    arch: str
    arch_config: dict[str, Any]
    spatial_dims: int
    size_multiple: tuple[int, ...]
    stage_channels: list[int]
    stage_strides: list[int]
    stage_blocks: list[int]  # index of the block whose output is each stage
    out_indices: tuple[int, ...]
    blocks: nn.ModuleList
    out_norms: nn.ModuleDict | None
    grad_checkpointing: bool

    # ------------------------------------------------------------------ architecture
    @classmethod
    def resolve_arch(
        cls, arch: str | Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """``(name, config)`` for ``arch`` (OpenMMLab's ``arch_zoo`` pattern).

        ``arch`` is a name of :attr:`arch_zoo` or a dict of architecture overrides, optionally
        with ``base`` (the zoo entry they modify; default :attr:`default_arch`). ``overrides``
        (constructor arguments, ``None`` = not given) apply last. ``name`` is the truthful
        name of the result: the zoo entry whose architecture keys (:attr:`arch_keys`) it has
        (the base first), else ``"<base>_custom"``. ``config`` holds every architecture key."""
        given = {k: v for k, v in dict(overrides or {}).items() if v is not None}
        if arch is None:
            arch = cls.default_arch
        if isinstance(arch, str):
            base, changes = arch, {}
        elif isinstance(arch, Mapping):
            changes = dict(arch)
            base = str(changes.pop("base", cls.default_arch))
        else:
            raise TypeError(f"arch must be a model name or a dict, got {type(arch).__name__}")
        if base not in cls.arch_zoo:
            import difflib

            close = difflib.get_close_matches(base, cls.arch_zoo, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(
                f"unknown {cls.family} arch {base!r}{hint}; choose from {', '.join(cls.arch_zoo)} "
                "or pass a dict of overrides"
            )
        unknown = sorted(set(changes) - set(cls.arch_defaults) - set(cls.arch_zoo[base]))
        if unknown:
            raise ValueError(
                f"arch dict keys {unknown} are not {cls.family} architecture arguments "
                f"({', '.join(sorted({*cls.arch_defaults, *cls.arch_zoo[base]}))}, base)"
            )
        config = {**cls.arch_defaults, **cls.arch_zoo[base], **changes, **given}

        def identity(cfg: Mapping[str, Any]) -> tuple:
            full = {**cls.arch_defaults, **cfg}
            return tuple(_frozen(full.get(k)) for k in cls.arch_keys)

        mine = identity(config)
        candidates = [base, *(n for n in cls.arch_zoo if n != base)]
        name = next((n for n in candidates if identity(cls.arch_zoo[n]) == mine), None)
        return name or f"{base}_custom", config

    def is_arch(self, name: str) -> bool:
        """Whether this model has the architecture of zoo entry ``name`` (aliases such as
        ``hvt_s_4`` / ``scale_hvt_ti_4`` are the same architecture)."""
        if name == self.arch:
            return True
        if name not in self.arch_zoo:
            return False
        other = {**self.arch_defaults, **self.arch_zoo[name]}
        return all(
            _frozen(other.get(k)) == _frozen(self.arch_config.get(k)) for k in self.arch_keys
        )

    @classmethod
    def stage_info(
        cls, arch: str | Mapping[str, Any] | None = None, **overrides: Any
    ) -> list[dict[str, int]]:
        """``[{"num_chs": C, "reduction": stride}, ...]`` of every stage of ``arch`` with
        ``overrides``, computed from the configuration alone (nothing is built), e.g. to map
        feature names to stages before construction."""
        _, config = cls.resolve_arch(arch, overrides)
        return cls._stage_geometry(config)

    @classmethod
    def _stage_geometry(cls, config: Mapping[str, Any]) -> list[dict[str, int]]:
        raise NotImplementedError

    @staticmethod
    def _checked_out_indices(
        out_indices: Sequence[int], num_stages: int, arch: str
    ) -> tuple[int, ...]:
        out = tuple(int(i) for i in out_indices)
        if not out or sorted(set(out)) != list(out) or not all(0 <= i < num_stages for i in out):
            raise ValueError(
                f"{arch}: out_indices={out} must be increasing stage indices in [0, {num_stages})"
            )
        return out

    # ------------------------------------------------------------------ stage metadata
    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    @property
    def out_channels(self) -> list[int]:
        return [self.stage_channels[i] for i in self.out_indices]

    @property
    def out_strides(self) -> list[int]:
        return [self.stage_strides[i] for i in self.out_indices]

    @property
    def feature_info(self) -> list[dict]:
        """timm-style description of every stage (``forward_intermediates`` indices);
        ``out_indices`` picks the ones ``forward`` returns."""
        return [
            dict(num_chs=c, reduction=s, module=f"blocks.{b}", stage=i)
            for i, (c, s, b) in enumerate(
                zip(self.stage_channels, self.stage_strides, self.stage_blocks)
            )
        ]

    # ------------------------------------------------------------------ layer-wise lr decay
    @property
    def num_layers(self) -> int:
        """Number of blocks; layer ids (:meth:`get_layer_id`) run from 0 to ``num_layers``, as
        in the official Hiera training code."""
        return len(self.blocks)

    def get_layer_id(self, param_name: str) -> int:
        """Layer id of backbone parameter ``param_name`` (:func:`backbone_layer_id`)."""
        return backbone_layer_id(param_name, len(self.blocks))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def set_lean_training(self, enable: bool = True) -> None:
        """Lean training (on by default): every block keeps for backward only what cannot be
        rebuilt without a GEMM (:mod:`~hiera_backbones.models.lean`: LayerNorm fused into the
        next Linear, GELU's output rebuilt, compact max-pool indices), ~0.6x of plain autograd's
        activations; gradients are plain autograd's up to GEMM rounding. ``False``: plain
        autograd (e.g. for second derivatives, which the lean functions do not provide).
        Independent of ``grad_checkpointing`` (which reruns whole blocks) and combinable."""
        for module in self.modules():
            if hasattr(module, "lean_training"):
                module.lean_training = bool(enable)

    # ------------------------------------------------------------------ frozen stages
    def _set_frozen_stages(self, frozen_stages: int) -> None:
        frozen_stages = int(frozen_stages)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f"{self.arch}: frozen_stages={frozen_stages} must be in [-1, {self.num_stages}] "
                "(-1: nothing, 0: the embeddings, k: the embeddings and stages 0..k-1)"
            )
        self.frozen_stages = frozen_stages
        for p in self._frozen_parameters():
            p.requires_grad_(False)
        self._frozen_modules_eval()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules: list[nn.Module] = [self.patch_embed]
        if self.frozen_stages > 0:
            last_block = self.stage_blocks[self.frozen_stages - 1]
            modules += list(self.blocks[: last_block + 1])
            if self.out_norms is not None:
                modules += [m for k, m in self.out_norms.items()
                            if int(k) < self.frozen_stages]
        return modules

    def _frozen_parameters(self) -> list[nn.Parameter]:
        if self.frozen_stages < 0:
            return []
        # The embeddings are parameters of the model itself (pos_embed, pos_embed_spatial, ...).
        own = [p for n, p in self.named_parameters(recurse=False) if n.startswith("pos_embed")]
        return own + [p for m in self._frozen_modules() for p in m.parameters()]

    def _frozen_modules_eval(self) -> None:
        for m in self._frozen_modules():
            m.eval()

    def train(self, mode: bool = True) -> StageBackbone:
        """As ``nn.Module.train``, but frozen stages stay in eval mode (no dropout, no drop
        path), as OpenMMLab's backbones keep them."""
        super().train(mode)
        if mode and getattr(self, "frozen_stages", -1) >= 0:
            self._frozen_modules_eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = True,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature API.

        Args:
            x: an input batch.
            indices: stages to return: None (all), the last ``n``, or a sequence (negative
                indices count from the end).
            norm: apply each stage's output LayerNorm (``out_norms``; built for ``out_indices``
                with ``out_norm=True``).
            stop_early: run no block after the last requested stage (the returned final
                tokens are then those of that block).
            output_fmt: ``"NCHW"`` (channels first, also for video and HVT's 1D sequences) or
                ``"NHWC"`` (channels last).
            intermediates_only: return only the stage maps.

        Returns:
            The stage maps, or ``(final tokens (N, L, C), stage maps)``.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt={output_fmt!r}: use 'NCHW' or 'NHWC'")
        taken = take_indices(self.num_stages, indices)
        if norm:
            unnormed = [i for i in taken if self.out_norms is None or str(i) not in self.out_norms]
            if unnormed:
                raise ValueError(
                    f"{self.arch}: norm=True but stages {unnormed} have no output norm; build "
                    "with out_norm=True and out_indices covering them"
                )
        final, maps = self._forward_stages(x, taken, norm, stop_early)
        if output_fmt == "NHWC":
            maps = [m.movedim(1, -1) for m in maps]
        return maps if intermediates_only else (final, maps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stage maps of ``out_indices`` (channels first), normalized when built with
        ``out_norm=True``; blocks after the last one are not run."""
        _, maps = self._forward_stages(
            x, list(self.out_indices), norm=self.out_norms is not None, stop_early=True
        )
        return tuple(maps)

    def _forward_stages(
        self, x: torch.Tensor, stages: list[int], norm: bool, stop_early: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def _stage_norm(self, x: torch.Tensor, stage: int, norm: bool) -> torch.Tensor:
        return self.out_norms[str(stage)](x) if norm else x

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    # ------------------------------------------------------------------ input checks
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
