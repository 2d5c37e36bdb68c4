"""The one constructor of the OpenMMLab backbones (MMDetection's and MMAction2's ``Hiera``,
``HieraDet``, ``HVT``): each registered class keeps its own signature and defaults (what a
config sees) and hands its arguments to :meth:`OpenMMLabBackbone._init_backbone`."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ..models import Hiera
from .args import check_hiera_task, checked_input_size
from .loading import PretrainedInitMixin

__all__ = ["OpenMMLabBackbone"]

#: ``input_size`` dimensions per task.
_TASK_DIMS = {"detection": 2, "video": 3}


class OpenMMLabBackbone(PretrainedInitMixin):
    """Mixed in before one of our models and mmengine's ``BaseModule``."""

    #: ``"detection"`` (image models, ``(H, W)``) or ``"video"`` (``(T, H, W)``): set by each
    #: framework's backbone base class.
    task: str

    @classmethod
    def _check_arch(cls, arch: Any, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Refuses an ``arch`` (with ``model_kwargs``) this backbone cannot be (a Hiera must be
        an image model for detection, a video model for video); returns model arguments the
        backbone fixes (popped from ``model_kwargs``)."""
        if issubclass(cls, Hiera):
            check_hiera_task(arch, model_kwargs, _TASK_DIMS[cls.task], cls.task)
        return {}

    def _init_backbone(
        self,
        arch: str | Mapping[str, Any],
        model_kwargs: Mapping[str, Any],
        *,
        input_size: Sequence[int],
        out_indices: Sequence[int] | None,
        init_cfg: dict | list[dict] | None,
        **common: Any,
    ) -> None:
        """Builds the model (next in the MRO) with ``model_kwargs`` (the config's extra model
        arguments) and ``common`` (the wrapper's own: ``out_norm``, ``drop_path_rate``,
        ``grad_checkpointing``, ``frozen_stages``, ...); ``input_size`` checked for the task
        (``"detection"``: ``(H, W)``, ``"video"``: ``(T, H, W)``); ``init_cfg`` kept for
        :meth:`init_weights` (a copy: mmengine edits it). ``arch`` None is the model's
        default; :meth:`_check_arch` runs first."""
        arch = self.default_arch if arch is None else arch
        model_kwargs = dict(model_kwargs)
        fixed = self._check_arch(arch, model_kwargs)
        super().__init__(
            arch,
            **model_kwargs,
            **common,
            **fixed,
            input_size=checked_input_size(input_size, _TASK_DIMS[self.task], arch, self.task),
            out_indices=None if out_indices is None else tuple(out_indices),
        )
        self.init_cfg = copy.deepcopy(init_cfg)
