"""Work-arounds for known packaging bugs in the frameworks we plug into."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import types

__all__ = ["patch_mmaction_drn"]

logger = logging.getLogger(__name__)

_DRN_PACKAGE = "mmaction.models.localizers.drn"


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
