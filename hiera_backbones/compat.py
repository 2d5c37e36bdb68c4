"""Work-arounds for known packaging bugs in the frameworks we plug into."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import types

__all__ = ["patch_mmaction_drn", "patch_mmaction_multimodal"]

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
