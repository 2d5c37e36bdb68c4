"""Name -> constructor registry behind :func:`hiera_backbones.build_backbone`.

The model modules (``hiera``, ``hieradet``, ``hvt``) register their constructors when
``hiera_backbones.models`` imports them, before anything can reach this module."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, TypeVar

from torch import nn

__all__ = ["build_backbone", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Registers a model constructor under its function name."""
    if fn.__name__ in _MODELS:
        raise KeyError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"hiera_*16x224"``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def build_backbone(
    name: str,
    input_size: tuple[int, ...] | None = None,
    out_indices: tuple[int, ...] | None = None,
    **overrides,
) -> nn.Module:
    """Builds a registered backbone.

    Args:
        name: a registered model name, e.g. ``"hiera_base_224"`` or ``"hiera_base_16x224"``;
            see :func:`list_models`.
        input_size: ``(H, W)`` for image models or ``(T, H, W)`` for video models: the grid the
            learned position embedding is defined on (default: the official size in the name).
            Other input sizes still run; the embedding is resized on the fly.
        out_indices: which stages to return, 0-based (default: the model's own default, e.g.
            all four Hiera stages, all ``num_pools + 1`` HVT stages).
        **overrides: constructor arguments, e.g. ``drop_path_rate=0.2``, ``out_norm=True``,
            ``grad_checkpointing=True``, ``num_classes=1000``.

    Returns:
        A module whose ``forward(x)`` returns a tuple of channels-first stage maps.
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown backbone {name!r}.{hint} Available: {', '.join(list_models())}"
        )
    if input_size is not None:
        overrides["input_size"] = tuple(int(s) for s in input_size)
    if out_indices is not None:
        overrides["out_indices"] = tuple(out_indices)
    return _MODELS[name](**overrides)
