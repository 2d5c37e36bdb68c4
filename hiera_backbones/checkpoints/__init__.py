"""Checkpoint files: every format, URL, download, safe load, fit check and conversion (no
training-framework imports). Adapters load weights only through this package.

* :mod:`.io`: safe reading (``weights_only=True``, :data:`~.io.SAFE_GLOBALS`) and atomic writing.
* :mod:`.hub`: official URLs, ``"<model>:<tag>"`` names and the one downloader.
* :mod:`.hiera_formats`, :mod:`.hvt_formats`: recognising foreign formats, key maps.
* :mod:`.hvt_layouts`: HVT 1D -> 2D / video weights, patch-kernel resampling.
* :mod:`.metadata`: recognising and reading the files this package writes.
* :mod:`.identify`: what a file read once is (format, family, architecture, framework
  checkpoint): the one place that decides.
* :mod:`.fit`: does a state dict fit a model (one message style).
* :mod:`.convert`: any source -> backbone tensors under our names -> a framework's file.
* :mod:`.verify`: a written file against the source model, stage by stage.
* :mod:`.load`: loading into a built backbone; framework checkpoints' backbone part.

Each load reads its file once (:func:`~.io.read_checkpoint` -> :class:`~.io.RawCheckpoint`,
passed along; the hash only when a file is written from it).
"""

from .convert import (
    TARGET_PREFIXES,
    TARGETS,
    BackboneWeights,
    convert_checkpoint,
    export_weights,
    read_backbone_weights,
)
from .fit import Mismatch, check_fit, state_mismatch
from .hub import (
    HVT_CHECKPOINT_URLS,
    OFFICIAL_CHECKPOINTS,
    cache_dir,
    is_official_tag,
    resolve_source,
)
from .identify import SOURCE_FORMATS, Identity, identify
from .io import SAFE_GLOBALS, CheckpointError, RawCheckpoint, load_torch_file, read_checkpoint
from .load import backbone_weights_for, framework_state, load_backbone_checkpoint, load_pretrained
from .metadata import OWN_FORMAT, content_metadata, own_metadata, read_own_state
from .verify import verify_against_official

__all__ = [
    "HVT_CHECKPOINT_URLS",
    "OFFICIAL_CHECKPOINTS",
    "OWN_FORMAT",
    "SAFE_GLOBALS",
    "SOURCE_FORMATS",
    "TARGETS",
    "TARGET_PREFIXES",
    "BackboneWeights",
    "CheckpointError",
    "Identity",
    "Mismatch",
    "backbone_weights_for",
    "cache_dir",
    "check_fit",
    "content_metadata",
    "convert_checkpoint",
    "export_weights",
    "framework_state",
    "identify",
    "is_official_tag",
    "load_backbone_checkpoint",
    "load_pretrained",
    "load_torch_file",
    "own_metadata",
    "read_backbone_weights",
    "RawCheckpoint",
    "read_checkpoint",
    "read_own_state",
    "resolve_source",
    "state_mismatch",
    "verify_against_official",
]
