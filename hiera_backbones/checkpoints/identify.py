"""What a checkpoint is: the one place that decides, from a :class:`~.io.RawCheckpoint` already
read (nothing here reads a file).

:func:`identify` answers, for every caller (the converter, the detectron2 checkpointer and
``hiera_backbones://`` paths, the OpenMMLab ``init_cfg`` loader, the tools):

* ``source_format``: the backbone format the converter reads it as (one of
  :data:`SOURCE_FORMATS`; :data:`~.metadata.OWN_FORMAT` for files this package wrote), or None;
* ``family``: ``"hiera"``, ``"hieradet"`` (SAM 2 trunk) or ``"hvt"``;
* ``framework``: ``"mmengine"`` / ``"detectron2"`` for a whole-model checkpoint a framework saved
  (``{"state_dict": ...}`` / ``{"model": ...}``, not one of ours), whose part under a prefix
  :meth:`Identity.state_under` returns (a trained detector's ``backbone.``);
* ``arch``: the architecture the backbone tensors hold (None for plain ViT weights, which need
  the target HVT variant).

A file can be both a framework checkpoint and a backbone format (a trained detector holds a
Hiera under ``backbone.``): the caller decides which reading it wants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from .hiera_formats import (
    HIERA_FORMATS,
    detect_hiera_format,
    infer_hiera_arch,
    split_hiera_state,
    to_official_hiera,
)
from .hieradet_formats import (
    HIERADET_FORMATS,
    detect_hieradet_format,
    hieradet_state_from_content,
    infer_hieradet_arch,
    is_hieradet_arch,
)
from .hvt_formats import (
    HVT_FORMATS,
    detect_hvt_format,
    hvt_state_from_content,
    infer_hvt_arch,
    split_hvt_state,
)
from .io import CheckpointError, RawCheckpoint
from .metadata import OWN_FORMAT, own_metadata

__all__ = ["FORMAT_ALIASES", "SOURCE_FORMATS", "Identity", "identify"]

SOURCE_FORMATS = (*HIERA_FORMATS, *HIERADET_FORMATS, *HVT_FORMATS, OWN_FORMAT)
#: Earlier spellings still accepted for ``--from``.
FORMAT_ALIASES = {"hiera-backbones": OWN_FORMAT}
#: Top-level key of a whole-model checkpoint, per framework.
FRAMEWORK_KEYS = {"mmengine": "state_dict", "detectron2": "model"}


@dataclass(frozen=True)
class Identity:
    """What :func:`identify` found; see the module docstring."""

    source_format: str | None
    family: str | None
    framework: str | None
    own: dict[str, Any] | None = None
    raw: RawCheckpoint | None = field(default=None, repr=False, compare=False)

    def state_under(self, prefix: str) -> dict[str, torch.Tensor] | None:
        """The tensors under ``prefix`` (prefix and DDP's ``module.`` stripped) of a framework
        checkpoint; None for anything else or when none are there."""
        if self.framework is None or self.raw is None:
            return None
        state = self.raw.content[FRAMEWORK_KEYS[self.framework]]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return {k: v for k, v in found.items() if isinstance(v, torch.Tensor)} or None

    @cached_property
    def arch(self) -> str | None:
        """The architecture of the backbone tensors (inferred from their shapes, or as saved in
        our metadata); None for plain ViT weights and for files of no backbone format."""
        if self.source_format is None or self.raw is None:
            return None
        if self.own is not None:
            return str(self.own["arch"]) if self.own.get("arch") else None
        content = self.raw.content
        try:
            if self.family == "hieradet":
                trunk = hieradet_state_from_content(content, self.source_format)[0]
                return infer_hieradet_arch(trunk)
            if self.family == "hiera":
                backbone, head, _, _ = split_hiera_state(
                    to_official_hiera(content, self.source_format)
                )
                return infer_hiera_arch(backbone, head, None).name
            if self.source_format == "hvt-official":
                return infer_hvt_arch(split_hvt_state(hvt_state_from_content(content))[0])[0]
        except (KeyError, AttributeError, TypeError) as err:
            raise CheckpointError(
                f"{self.raw.path} does not have the layout of {self.source_format!r}: {err}"
            ) from None
        return None  # plain ViT: the HVT variant comes from the caller


def _family(source_format: str, own: Mapping | None) -> str:
    if source_format == OWN_FORMAT:
        arch = str((own or {}).get("arch", ""))
        if is_hieradet_arch(arch):
            return "hieradet"
        return "hvt" if arch.startswith(("hvt", "scale_hvt")) else "hiera"
    if source_format in HIERADET_FORMATS:
        return "hieradet"
    return "hvt" if source_format in HVT_FORMATS else "hiera"


def _framework(content: Mapping, own: Mapping | None) -> str | None:
    if own is not None:
        return None  # our files say in their metadata how to read them
    for framework, key in FRAMEWORK_KEYS.items():
        if isinstance(content.get(key), Mapping):
            return framework
    return None


def identify(raw: RawCheckpoint, from_format: str | None = None) -> Identity:
    """What ``raw`` holds (see the module docstring). ``from_format`` forces the backbone format
    (``--from``); an unknown name raises :class:`~.io.CheckpointError`."""
    own = own_metadata(raw)
    if from_format is not None:
        from_format = FORMAT_ALIASES.get(from_format, from_format)
        if from_format not in SOURCE_FORMATS:
            raise CheckpointError(
                f"unknown --from {from_format!r}; choose from {', '.join(SOURCE_FORMATS)}"
            )
        if from_format == OWN_FORMAT and own is None:
            raise CheckpointError(
                f"--from {OWN_FORMAT}: {raw.path} has no hiera_backbones metadata (it was not "
                "written by hiera-convert); leave --from out to detect its format"
            )
    content = raw.content
    detected = (
        OWN_FORMAT
        if own
        else detect_hieradet_format(content)
        or detect_hiera_format(content)
        or detect_hvt_format(content)
    )
    fmt = from_format or detected
    return Identity(
        source_format=fmt,
        family=_family(fmt, own) if fmt else None,
        framework=_framework(content, own),
        own=own,
        raw=raw,
    )
