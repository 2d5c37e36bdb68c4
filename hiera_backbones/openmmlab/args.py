"""Checks of an OpenMMLab backbone's arguments that depend on the task (detection takes image
models, MMAction2 video ones), with the same messages in MMDetection and MMAction2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..models import Hiera

__all__ = ["check_hiera_task", "checked_input_size"]


def checked_input_size(
    input_size: Sequence[int], spatial_dims: int, arch: Any, task: str
) -> tuple[int, ...]:
    """``input_size`` as ints, which must be ``(H, W)`` (2 dims) or ``(T, H, W)`` (3 dims)."""
    size = tuple(int(s) for s in input_size)
    if len(size) != spatial_dims:
        wanted = "(H, W)" if spatial_dims == 2 else "(T, H, W)"
        raise ValueError(f"{arch}: input_size must be {wanted} for {task}, got {input_size}")
    return size


def check_hiera_task(
    arch: str | Mapping[str, Any], overrides: Mapping[str, Any], spatial_dims: int, task: str
) -> None:
    """``arch`` (with ``overrides``) must resolve to an image (2) or video (3) Hiera."""
    _, config = Hiera.resolve_arch(arch, overrides)
    if len(config["patch_stride"]) != spatial_dims:
        names = [n for n, c in Hiera.arch_zoo.items() if len(c["patch_stride"]) == spatial_dims]
        raise ValueError(f"unknown Hiera arch {arch!r} for {task}; choose from {names}")
