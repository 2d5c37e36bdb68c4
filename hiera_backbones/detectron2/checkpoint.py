"""detectron2 checkpoints: ``hiera_backbones://<source>`` paths for detectron2's own
checkpointer and tools (an iopath handler registered on import), and :class:`HieraCheckpointer`.
Both read a file once (:func:`~hiera_backbones.checkpoints.read_checkpoint`) and decide what it
is with :func:`~hiera_backbones.checkpoints.identify`."""

from __future__ import annotations

import gc
import os
from typing import Any

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from ..checkpoints import (
    OWN_FORMAT,
    CheckpointError,
    RawCheckpoint,
    backbone_weights_for,
    cache_dir,
    export_weights,
    identify,
    is_official_tag,
    read_backbone_weights,
    read_checkpoint,
    resolve_source,
)
from ..models import HVT, Hiera, HieraDet
from .backbones import _BUILT_BACKBONES, D2HVT, D2Hiera, D2HieraDet

__all__ = ["HieraBackbonesPathHandler", "HieraCheckpointer"]


class HieraBackbonesPathHandler(PathHandler):
    """``hiera_backbones://<source>`` for detectron2's own checkpointer and tools.

    ``<source>`` is anything ``hiera-convert`` reads: ``"<model>:<tag>"`` (official file,
    downloaded once into the cache; offline, one error naming the file to fetch), or a local path
    (``hiera_backbones:///abs/path.pth``, ``hiera_backbones://relative/path.pth``) to an official,
    MAE, timm, Hugging Face, transformers, HVT or SAM 2 / SAM 2.1 file (e.g.
    ``hiera_backbones://sam2.1_hiera_base_plus:sa1b`` for a :class:`D2HieraDet`).
    ``get_local_path`` converts it for the detector being loaded: of the :class:`D2Hiera` /
    :class:`D2HieraDet` / :class:`D2HVT` alive in this process with
    the architecture the file holds, the one built last (position embeddings resized to its
    ``input_size``; HVT made 2D with its patch size), and writes
    ``{"model": {"backbone.bottom_up.<key>": ...}}`` into ``<cache>/detectron2/`` (atomically),
    which ``DetectionCheckpointer`` then reads like any detectron2 checkpoint. The model must
    exist before loading, as in detectron2's tools."""

    PREFIX = "hiera_backbones://"

    def _get_supported_prefixes(self) -> list[str]:
        return [self.PREFIX]

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        source = path[len(self.PREFIX):]
        if not os.path.exists(source) and comm.get_world_size() > 1:
            # Every process loads at once: the main process downloads, the others then find
            # the file in the cache.
            if comm.is_main_process():
                resolve_source(source)
            comm.synchronize()
        raw = read_checkpoint(resolve_source(source))  # read once, hashed once (the cache name)
        backbone = _backbone_for(raw, path)
        size = "x".join(str(s) for s in backbone.input_size)
        patch = f"-p{backbone.patch_size}" if isinstance(backbone, HVT) else ""
        name = os.path.splitext(os.path.basename(raw.path))[0]
        dst = os.path.join(
            cache_dir(), "detectron2",
            f"{name}-{raw.sha256[:12]}-{backbone.arch}-{size}{patch}.pth",
        )
        if not os.path.isfile(dst):
            weights = backbone_weights_for(backbone, raw, target="detectron2")
            export_weights(weights, dst, to="detectron2", force=True)
        return dst

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any):
        self._check_kwargs(kwargs)
        if "w" in mode or "a" in mode:
            raise OSError(f"{path}: hiera_backbones:// paths are read-only")
        return open(self._get_local_path(path), mode, buffering=buffering)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        source = path[len(self.PREFIX):]
        return os.path.exists(source) or ":" in source

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return self._exists(path, **kwargs)


def _backbone_for(raw: RawCheckpoint, path: str) -> Hiera | HieraDet | HVT:
    """The D2Hiera / D2HieraDet / D2HVT that ``source``'s weights are for: of those alive in
    this process with the file's architecture, the one built last (detectron2's tools build the
    model, then load the checkpoint)."""
    gc.collect()  # models dropped but still in reference cycles must not count
    built = sorted(_BUILT_BACKBONES, key=lambda b: b._build_order)
    if not built:
        raise CheckpointError(
            f"{path}: no D2Hiera / D2HieraDet / D2HVT has been built in this process; build the "
            "model first (as detectron2's tools do), then load the checkpoint"
        )
    arch = identify(raw).arch
    if arch is None:  # no backbone format, or plain ViT weights: the converter says what to do
        arch = read_backbone_weights(raw).arch
    matches = [b for b in built if b.is_arch(arch)]
    if not matches:
        have = ", ".join(sorted({b.arch for b in built}))
        raise CheckpointError(f"{path} holds {arch} weights; the built backbones are {have}")
    return matches[-1]


PathManager.register_handler(HieraBackbonesPathHandler(), allow_override=True)


class HieraCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` for detectors with a :class:`D2Hiera` / :class:`D2HieraDet` /
    :class:`D2HVT`.

    On top of detectron2's behaviour:

    * ``.pth`` files are read with ``torch.load(weights_only=True)`` (plus
      :data:`hiera_backbones.checkpoints.io.SAFE_GLOBALS`), so a file that would run code is
      refused with a clear error, whatever fvcore's default is. This covers ``--resume``
      checkpoints.
    * Backbone files that are not detector checkpoints (official ``{"model_state": ...}`` and MAE
      files, timm / Hugging Face Hiera, HVT releases, this package's converted files for any
      target and size) go through the converter: names get the backbone's prefix in the
      detector, MAE-only tensors are dropped, position embeddings (and HVT's layout and patch
      kernel) are adapted to the backbone. Foreign formats are logged as converted on the fly.
      A file holding another architecture, or missing backbone tensors, raises
      :class:`~hiera_backbones.checkpoints.CheckpointError`.
    * ``"<model>:<tag>"`` (e.g. ``"hiera_base_224:mae_in1k"``) names an official file, downloaded
      once into ``~/.cache/hiera_backbones`` (by the main process first).
    """

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if path and is_official_tag(path):
            # One download: the main process fetches, the others then find it cached.
            if comm.is_main_process():
                path = resolve_source(path)
            comm.synchronize()
            if not comm.is_main_process():
                path = resolve_source(path)
        return super().load(path, *args, **kwargs)

    def _torch_load(self, f: str) -> dict[str, Any]:
        # The one read of the file, kept for _load_file (which may convert it). Not
        # memory-mapped: a resumed optimizer state lives on while training overwrites the
        # checkpoint it came from.
        self._raw = read_checkpoint(f, mmap=False)
        return self._raw.content

    def _backbone(self) -> tuple[str, Hiera | HieraDet | HVT] | None:
        for name, module in self.model.named_modules():
            if isinstance(module, (D2Hiera, D2HieraDet, D2HVT)):
                return name + "." if name else "", module
        return None

    def _load_file(self, filename: str) -> dict[str, Any]:
        self._raw = None
        loaded = super()._load_file(filename)
        raw, self._raw = self._raw, None  # .pkl / .pyth files do not come through _torch_load
        found = self._backbone()
        if found is None or raw is None or loaded.get("matching_heuristics"):
            return loaded
        prefix, backbone = found
        what = identify(raw)
        state = loaded.get("model")
        if what.own is None and isinstance(state, dict) and (
            set(state) & set(self.model.state_dict())
        ):
            return loaded  # a detector checkpoint (e.g. --resume): detectron2's usual path
        if what.source_format is None:
            return loaded  # unknown: let detectron2 report what does not match
        return {"model": self._convert(raw, backbone, prefix, what.source_format)}

    def _convert(
        self, raw: RawCheckpoint, backbone: Hiera | HieraDet | HVT, prefix: str, fmt: str
    ) -> dict[str, Any]:
        weights = backbone_weights_for(backbone, raw, target="detectron2")
        if fmt != OWN_FORMAT:
            size = "x".join(str(s) for s in backbone.input_size)
            filename = raw.path
            self.logger.info(
                f"{filename} is a {fmt} checkpoint of {weights.arch}: converting it on the fly "
                f"for the detector (input size {size}; dropped {len(weights.dropped)} tensors "
                f"not used by the backbone). To do this once: hiera-convert {filename} OUT.pth "
                f"--to detectron2 --input-size {size.replace('x', ' ')}"
            )
        return {prefix + k: v for k, v in weights.backbone.items()}

