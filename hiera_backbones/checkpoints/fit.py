"""Does a state dict fit a model? One check and one message style for every loader (converter,
detectron2 checkpointer, OpenMMLab ``init_cfg``, recognition heads)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .io import CheckpointError

__all__ = ["Mismatch", "check_fit", "state_mismatch"]


@dataclass
class Mismatch:
    """Keys a model expects but a state dict lacks, keys it has that the model does not, and
    keys whose shapes differ (``(key, got, expected)``)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shapes)

    def describe(self) -> str:
        """``"2 missing (a, b); 1 unexpected (c); 1 with wrong shapes (e.g. d: (1, 2) vs
        (1, 3))"``, listing at most four names of each."""
        problems = []
        if self.missing:
            problems.append(f"{len(self.missing)} missing ({', '.join(self.missing[:4])})")
        if self.unexpected:
            problems.append(
                f"{len(self.unexpected)} unexpected ({', '.join(self.unexpected[:4])})"
            )
        if self.wrong_shapes:
            key, got, expected = self.wrong_shapes[0]
            problems.append(
                f"{len(self.wrong_shapes)} with wrong shapes (e.g. {key}: {got} vs {expected})"
            )
        return "; ".join(problems)


def _shapes(obj: nn.Module | Mapping) -> dict[str, tuple[int, ...]]:
    items = obj.state_dict().items() if isinstance(obj, nn.Module) else obj.items()
    return {
        k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in items
    }


def state_mismatch(
    expected: nn.Module | Mapping,
    state: Mapping[str, torch.Tensor],
    ignore_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
) -> Mismatch:
    """How ``state`` differs from ``expected`` (a module, or a mapping of tensors or shapes).
    Keys starting with a prefix in ``ignore_missing`` may be absent (e.g. ``"out_norms."``,
    new layers), keys starting with one in ``ignore_unexpected`` may be extra."""
    want, got = _shapes(expected), _shapes(state)
    return Mismatch(
        missing=sorted(k for k in set(want) - set(got) if not k.startswith(ignore_missing)),
        unexpected=sorted(
            k for k in set(got) - set(want) if not k.startswith(ignore_unexpected)
        ),
        wrong_shapes=[(k, got[k], want[k]) for k in sorted(set(want) & set(got))
                      if got[k] != want[k]],
    )


def check_fit(
    expected: nn.Module | Mapping,
    state: Mapping[str, torch.Tensor],
    source: str,
    target: str,
    hint: str = "",
    ignore_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
) -> None:
    """Raises ``CheckpointError("<source> does not fit <target>: <mismatch>. <hint>")`` unless
    ``state`` fits ``expected`` (see :func:`state_mismatch`)."""
    mismatch = state_mismatch(expected, state, ignore_missing, ignore_unexpected)
    if mismatch:
        raise CheckpointError(
            f"{source} does not fit {target}: {mismatch.describe()}" + (f". {hint}" if hint else "")
        )
