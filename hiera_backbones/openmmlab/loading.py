"""OpenMMLab ``init_cfg=dict(type='Pretrained', ...)`` for our backbones, and safe loading of the
checkpoints mmengine itself writes. mmengine is imported when the functions need it."""

from __future__ import annotations

import collections
import logging
import os
import pickle
from collections.abc import Mapping
from typing import Any

__all__ = [
    "PretrainedInitMixin",
    "allow_mmengine_checkpoints",
    "load_mmengine_local",
    "mmengine_safe_globals",
]


def _log(msg: str, level: int = logging.INFO) -> None:
    from mmengine.logging import print_log

    print_log(msg, logger="current", level=level)


def _history_buffer_method(obj: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling with ``weights_only=True``.

    ``HistoryBuffer`` pickles its ``statistics_methods`` dict as ``getattr(HistoryBuffer, name)``
    calls. Allowlisting ``getattr`` itself would let a file reach any attribute of any allowed
    object (a classic escape route), so only those lookups are served."""
    from mmengine.logging.history_buffer import HistoryBuffer

    # The built-in statistics plus any registered with HistoryBuffer.register_statistics.
    allowed = {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"refusing getattr({getattr(obj, '__name__', type(obj).__name__)}, {name!r}) in a "
        "checkpoint: only HistoryBuffer statistics methods are allowed"
    )


def mmengine_safe_globals() -> list[Any]:
    """What ``torch.load(weights_only=True)`` must additionally accept to read the checkpoints
    mmengine itself saves: ``HistoryBuffer`` (in ``message_hub``), the numpy arrays and scalars it
    holds, its ``getattr(HistoryBuffer, 'mean')``-style method references (served by a
    restricted stand-in, never the real ``getattr``), and ``collections.Counter`` (milestones
    of ``MultiStepLR``). Each is plain data: unpickling them runs no code of the file's choosing
    (numpy's ``_reconstruct`` only rebuilds an array whose elements are checked the same way)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    # Unpickling a dtype sets its state, so the concrete dtype classes (numpy.dtypes.*) are
    # needed too; numeric ones only (an object dtype would have to be allowlisted separately).
    numeric = (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
               np.uint8, np.bool_)
    return [
        HistoryBuffer, np.ndarray, np.dtype, _reconstruct, scalar, collections.Counter,
        *(type(np.dtype(t)) for t in numeric),
        (_history_buffer_method, "builtins.getattr"),
    ]


#: How torch spells "yes" in its environment variables (``torch.serialization``).
_TRUE_VALUES = ("1", "y", "yes", "true")


def load_mmengine_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader of local checkpoint files (``CheckpointLoader``'s ``''`` scheme:
    ``load_from``, ``resume``, ``Pretrained`` init), reading with ``weights_only=True`` and
    allowing :func:`mmengine_safe_globals` (registered with our readers by
    :func:`allow_mmengine_checkpoints`) for this read only. Not memory-mapped: a resumed
    optimizer state lives on while training overwrites the file it came from. With
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch's opt-out, which mmengine's loader obeyed) the
    file is unpickled in full, with a warning."""
    from ..checkpoints import load_torch_file

    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")  # mmengine's own message
    # torch's explicit opt-out stays the user's to make, as it was with mmengine's own loader
    # (which left weights_only to torch's default); loading then warns that a file can run code.
    opted_out = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0") in _TRUE_VALUES
    return load_torch_file(filename, allow_pickle=opted_out, mmap=False,
                           map_location=map_location)


def allow_mmengine_checkpoints() -> None:
    """Lets mmengine 0.10.x load (``resume=True``, ``load_from``) the checkpoints it writes, on
    torch >= 2.6, without widening torch's process-wide allowlist.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so torch >= 2.6 loads with
    ``weights_only=True`` and refuses mmengine's own checkpoints (``HistoryBuffer``, numpy).
    Rather than turning the check off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) or adding those
    classes to ``torch.serialization``'s global allowlist (which every other ``torch.load`` in
    the process would then accept), this makes :func:`load_mmengine_local` mmengine's loader of
    local files: the classes are allowed inside that one read, and any other object in a file is
    refused. Our own readers (``init_cfg`` with a trained model's checkpoint, MMAction2's
    classifier head) accept them too (:func:`~hiera_backbones.checkpoints.io.
    register_checkpoint_globals`). Idempotent."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from ..checkpoints.io import register_checkpoint_globals

    register_checkpoint_globals("mmengine", mmengine_safe_globals)
    CheckpointLoader.register_scheme(prefixes="", loader=load_mmengine_local, force=True)


class PretrainedInitMixin:
    """``init_weights`` for our mmengine backbones: ``Pretrained`` entries of ``init_cfg`` are
    loaded by :meth:`load_pretrained_cfg` (mmengine's ``PretrainedInit`` reads only
    ``{'state_dict'}`` files, with no conversion and no position-embedding resizing); any other
    initializer is left to mmengine."""

    def load_pretrained_cfg(self, init_cfg: Mapping[str, Any]) -> None:
        """``checkpoint`` (a file, ``"<model>:<tag>"`` or URL) and ``prefix`` (default
        ``"backbone."``) through :func:`hiera_backbones.checkpoints.load_pretrained`: a
        framework checkpoint's backbone part, or any backbone file, converted on the fly."""
        from ..checkpoints import load_pretrained

        checkpoint = init_cfg.get("checkpoint")
        if not checkpoint or not isinstance(checkpoint, str):
            raise ValueError(
                f"init_cfg {dict(init_cfg)} needs checkpoint='<file, model:tag or URL>'"
            )
        prefix = init_cfg.get("prefix") or "backbone."
        # A trained model's checkpoint (mmengine saved it) holds mmengine's classes: allowed
        # since the adapter's import (allow_mmengine_checkpoints).
        _log(load_pretrained(self, checkpoint, prefix))

    def init_weights(self) -> None:
        if self.is_init:
            return super().init_weights()  # mmengine warns about the second call
        cfgs = self.init_cfg or []
        cfgs = [cfgs] if isinstance(cfgs, Mapping) else list(cfgs)
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        others = [c for c in cfgs if c.get("type") != "Pretrained"]
        saved, self.init_cfg = self.init_cfg, others or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = saved
        if pretrained:
            self.load_pretrained_cfg(pretrained[-1])
