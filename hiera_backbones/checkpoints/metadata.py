"""Files this package writes: every one carries a metadata record (``meta``, or the safetensors
header) with ``format == "hiera_backbones"``, the architecture and build arguments, the target
and the prefix of its keys. This module is the one place that recognises such a file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from .io import CheckpointError, RawCheckpoint, read_checkpoint

__all__ = ["OWN_FORMAT", "content_metadata", "own_metadata", "read_own_state"]

#: The ``format`` value of our metadata records.
OWN_FORMAT = "hiera_backbones"


def content_metadata(content: Mapping[str, Any]) -> dict[str, Any] | None:
    """Our metadata record of a ``.pth`` file's top-level dict, or None (any other file)."""
    meta = content.get("meta")
    if isinstance(meta, Mapping) and meta.get("format") == OWN_FORMAT:
        return dict(meta)
    return None


def _safetensors_metadata(header: Mapping[str, str]) -> dict[str, Any] | None:
    try:
        decoded = {k: json.loads(v) for k, v in header.items()}
    except (TypeError, ValueError):
        return None
    return decoded if decoded.get("format") == OWN_FORMAT else None


def own_metadata(raw: RawCheckpoint) -> dict[str, Any] | None:
    """Our metadata record of a file read by :func:`~.io.read_checkpoint`, or None."""
    if raw.file_format in ("safetensors", "hf-hub-dir"):
        return _safetensors_metadata(raw.safetensors_metadata)
    return content_metadata(raw.content)


def read_own_state(path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state dict without the target's prefix, metadata)`` of a file we wrote; raises
    :class:`CheckpointError` for any other file."""
    raw = read_checkpoint(path)
    meta = own_metadata(raw)
    if raw.file_format == "safetensors":
        state = raw.content
    else:
        state = raw.content.get("state_dict", raw.content.get("model"))
    if not meta or not isinstance(state, Mapping):
        raise CheckpointError(f"{path} was not written by hiera_backbones")
    prefix = meta.get("prefix", "")
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, meta
