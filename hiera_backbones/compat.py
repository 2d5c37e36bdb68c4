"""Work-arounds for known packaging bugs in the frameworks we plug into."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy

__all__ = [
    "NUMPY2_READERS",
    "patch_mmaction_drn",
    "patch_mmaction_multimodal",
    "patch_numpy2_removed_names",
]

logger = logging.getLogger(__name__)

_DRN_PACKAGE = "mmaction.models.localizers.drn"
_MULTIMODAL_PACKAGE = "mmaction.models.multimodal"
# What mmaction/models/multimodal/vindlu/modeling_bert.py imports from transformers.modeling_utils
# (mmaction2 1.2.0); transformers 4.56 dropped them from there, and 5.x kept them out.
_VINDLU_MODELING_UTILS_NAMES = (
    "apply_chunking_to_forward",
    "find_pruneable_heads_and_indices",
    "prune_linear_layer",
)


def _missing_drn_error(*args, **kwargs):
    raise RuntimeError(
        "DRN is not available: the mmaction2 1.2.0 wheel ships without "
        "mmaction/models/localizers/drn (open-mmlab/mmaction2#2714). Install mmaction2 from a "
        "source checkout to use DRN."
    )


def patch_mmaction_drn() -> bool:
    """Makes ``import mmaction.models`` work on the mmaction2 1.2.0 wheel.

    The wheel lacks ``mmaction/models/localizers/drn/`` while ``mmaction.models`` imports
    ``DRN`` from it. If the folder is missing, a placeholder package is put in ``sys.modules``
    whose ``DRN`` model raises a clear error when built; everything else in MMAction2 works.
    Call before the first ``import mmaction.models``. Returns True if the placeholder was
    installed (a one-line warning is logged), False if nothing was needed.
    """
    if _DRN_PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mmaction2 is not installed: pip install 'hiera_backbones[mmaction]'")
    roots = list(spec.submodule_search_locations)
    if any(
        os.path.isfile(os.path.join(root, "models", "localizers", "drn", "drn.py"))
        for root in roots
    ):
        return False

    package = types.ModuleType(_DRN_PACKAGE)
    package.__path__ = []  # a package, so "drn.drn" resolves
    module = types.ModuleType(f"{_DRN_PACKAGE}.drn")

    class DRN:  # noqa: D401 - placeholder with the real name, for the registry
        """Placeholder for MMAction2's DRN localizer, missing from the 1.2.0 wheel."""

        def __init__(self, *args, **kwargs):
            _missing_drn_error()

    DRN.__module__ = module.__name__
    from mmaction.registry import MODELS  # registries only; does not import mmaction.models

    if "DRN" not in MODELS.module_dict:
        MODELS.register_module(module=DRN)
    module.DRN = DRN
    package.drn = module
    sys.modules[_DRN_PACKAGE] = package
    sys.modules[module.__name__] = module
    logger.warning(
        "mmaction2 wheel lacks models/localizers/drn (open-mmlab/mmaction2#2714); using a "
        "placeholder DRN so the rest of MMAction2 imports."
    )
    return True


def patch_mmaction_multimodal() -> bool:
    """Makes ``import mmaction.models`` work next to transformers >= 4.56 (e.g. 5.x).

    MMAction2 1.2.0 imports its VindLU multimodal models whenever ``transformers>=4.28.0`` is
    installed (``mmaction.utils.dependency.WITH_MULTIMODAL``, read from package metadata), and
    VindLU imports ``apply_chunking_to_forward`` (and two more helpers) from
    ``transformers.modeling_utils``, which transformers 4.56 removed: ``import mmaction.models``
    then fails with an ``ImportError``. If one of those names is missing, ``WITH_MULTIMODAL`` is
    turned off, so MMAction2 registers its own placeholders for the three VindLU models (they
    raise when built) and everything else imports. Any ImportError raised while importing
    transformers itself is left alone. Call before the first ``import mmaction.models``.
    Returns True if VindLU was turned off (a one-line warning is logged), False if nothing was
    needed.
    """
    if _MULTIMODAL_PACKAGE in sys.modules:
        return False  # too late to change anything, and nothing failed
    from mmaction.utils import dependency  # light: importlib_metadata + mmengine.utils

    if not dependency.WITH_MULTIMODAL:
        return False  # no transformers >= 4.28: MMAction2 registers placeholders itself
    # Only when the metadata says transformers is installed: mmaction would import it anyway.
    modeling_utils = importlib.import_module("transformers.modeling_utils")
    if all(hasattr(modeling_utils, name) for name in _VINDLU_MODELING_UTILS_NAMES):
        return False
    dependency.WITH_MULTIMODAL = False
    version = importlib.metadata.version("transformers")
    logger.warning(
        "transformers %s lacks transformers.modeling_utils.apply_chunking_to_forward (removed in "
        "4.56), which MMAction2 1.2's VindLU multimodal models import: VindLU is unavailable, the "
        "rest of MMAction2 works (for VindLU: pip install 'transformers>=4.28,<4.56').",
        version,
    )
    return True


def _in1d(ar1: Any, ar2: Any, assume_unique: bool = False, invert: bool = False,
          **kwargs: Any) -> numpy.ndarray:
    """``numpy.in1d`` (removed in numpy 2.4): ``isin`` over the flattened first array."""
    return numpy.isin(numpy.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert, **kwargs)


#: Names numpy 2 removed (NEP 52; ``trapz`` and ``in1d`` in 2.4) that the frameworks' code still
#: reads, with what they meant. ``float``/``int``/``object`` were the Python builtins.
_NUMPY2_REMOVED: dict[str, Any] = {
    "NAN": numpy.nan,
    "NaN": numpy.nan,
    "Inf": numpy.inf,
    "Infinity": numpy.inf,
    "PINF": numpy.inf,
    "NINF": -numpy.inf,
    "float": float,
    "int": int,
    "object": object,
    "trapz": getattr(numpy, "trapezoid", None) or getattr(numpy, "trapz", None),
    "in1d": _in1d,
}

#: Every MMAction2 module (mmaction2 1.2.0) that reads a name numpy 2 removed, with the names and
#: the code path. Found by an AST scan of the frameworks' sources against the installed numpy
#: (``tests/unit/test_numpy2_names.py`` repeats it, so an upgrade that reads a new removed name
#: fails a test). The first is on a path our configs reach; the others are patched too because
#: the adapter has imported them anyway (``mmaction.models`` does) and it costs nothing.
NUMPY2_READERS: dict[str, tuple[str, ...]] = {
    # AVAMetric (every AVA config): the AP of a label-map class with no ground truth in the
    # split is np.NAN, which nanmean then leaves out of the mAP.
    "mmaction.evaluation.functional.ava_evaluation.metrics": ("NAN",),
    # ActivityNet proposal AR@AN (ANetMetric).
    "mmaction.evaluation.functional.accuracy": ("trapz",),
    # Retrieval recall (RetrievalMetric, VindLU).
    "mmaction.evaluation.metrics.multimodal_metric": ("in1d",),
    # Skeleton transforms (PoseCompact, ...).
    "mmaction.datasets.transforms.pose_transforms": ("Inf",),
    # frame_extract(short_side=...), MMAction2's demo helper.
    "mmaction.utils.misc": ("Inf",),
}

#: The rest of the scan (mmdet 3.3.0, mmcv 2.1.0; detectron2, mmengine, pycocotools and fvcore
#: read none), left alone: no config or tool of ours reaches them, and patching would mean
#: importing them with the adapter.
NUMPY2_UNREACHED: dict[str, tuple[tuple[str, ...], str]] = {
    "mmdet.evaluation.functional.ytviseval": (("float",), "YouTube-VIS evaluation"),
    "mmcv.ops.pixel_group": (("float",), "PSENet/PAN text-detection post-processing"),
}


class _NumpyWithRemovedNames(types.ModuleType):
    """numpy as seen by one framework module: every attribute is numpy's own, plus the removed
    names that module reads. Scoped: numpy itself and every other module are unchanged."""

    def __init__(self, names: dict[str, Any]) -> None:
        super().__init__(numpy.__name__, numpy.__doc__)
        self.__dict__.update(names)

    def __getattr__(self, name: str) -> Any:
        return getattr(numpy, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(numpy)) | set(self.__dict__))


def patch_numpy2_removed_names(
    packages: tuple[str, ...] = ("mmaction",),
    import_module: Callable[[str], types.ModuleType] = importlib.import_module,
) -> list[str]:
    """Lets the modules in :data:`NUMPY2_READERS` of ``packages`` run under numpy 2.

    In each such module (imported if need be, skipped if it does not import), every global bound
    to the numpy module is replaced by a view of numpy that also has the removed names the
    module reads (``np.NAN`` -> ``numpy.nan``, ``np.trapz`` -> ``numpy.trapezoid``, ...). numpy
    itself is not changed. Nothing is done where numpy still has the names (numpy 1.x).
    Idempotent. Returns the modules patched by this call.
    """
    patched = []
    for module_name, names in NUMPY2_READERS.items():
        if module_name.partition(".")[0] not in packages:
            continue
        missing = {name: _NUMPY2_REMOVED[name] for name in names if not hasattr(numpy, name)}
        if not missing:
            continue
        try:
            module = import_module(module_name)  # the imported module, if it is
        except ImportError:  # an optional part that does not import here
            continue
        aliases = [key for key, value in vars(module).items() if value is numpy]
        if not aliases:
            continue
        view = _NumpyWithRemovedNames(missing)
        for alias in aliases:
            setattr(module, alias, view)
        patched.append(module_name)
    if patched:
        logger.debug("numpy %s: removed names restored for %s", numpy.__version__, patched)
    return patched
