"""Safe reading and atomic writing of checkpoint files (and of any result file:
:func:`write_atomic`).

Checkpoints from strangers are untrusted: ``.pth`` files are read with
``torch.load(weights_only=True)`` (tensors and plain containers only; a pickle that would run
code is refused before anything runs), safetensors are read natively. Reading is memory-mapped
where the format allows, so converting a multi-GB file holds about one copy of the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import pickletools
import re
import secrets
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "SAFE_GLOBALS",
    "CheckpointError",
    "RawCheckpoint",
    "load_torch_file",
    "read_checkpoint",
    "register_checkpoint_globals",
    "save_atomic",
    "sha256_file",
    "write_atomic",
]

#: Classes unpickled besides tensors and plain containers, by every reader of this package
#: (the converter, detectron2's checkpointer, the OpenMMLab loaders). The official HVT releases
#: (DeiT training code) carry an ``argparse.Namespace`` of training arguments, a plain attribute
#: bag. Add a class only after checking that rebuilding it cannot run code.
SAFE_GLOBALS: list[Any] = [argparse.Namespace]

#: Classes a framework's own checkpoints hold, by framework, allowed besides
#: :data:`SAFE_GLOBALS` whenever this package reads a file (never in torch's process-wide
#: allowlist); registered by the framework adapters on import.
_FRAMEWORK_GLOBALS: dict[str, Callable[[], Sequence[Any]]] = {}


def register_checkpoint_globals(framework: str, provider: Callable[[], Sequence[Any]]) -> None:
    """Lets this package's readers accept ``provider()``'s classes in every file they read
    (e.g. mmengine's ``HistoryBuffer`` in a trained model's checkpoint, registered when an
    OpenMMLab adapter is imported): plain data classes only, as each one widens what an
    untrusted file may contain. Registering a framework again replaces its provider."""
    _FRAMEWORK_GLOBALS[framework] = provider


class CheckpointError(Exception):
    """A checkpoint cannot be read, recognised or converted; the message says why and what to
    do. Command-line tools print it without a traceback."""


@dataclass
class RawCheckpoint:
    """What was read from disk, before any interpretation of the keys: read once, then passed
    along (identification, conversion, loading) instead of the path."""

    content: dict[str, Any]  # the top-level object (a dict)
    path: str
    file_format: str  # "torch" | "safetensors" | "hf-hub-dir"
    config: dict[str, Any] = field(default_factory=dict)  # config.json of a hub folder
    safetensors_metadata: dict[str, str] = field(default_factory=dict)
    _sha256: str | None = field(default=None, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        """The file's SHA-256, computed on first use (only files written from it record it)."""
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256


#: Files larger than this show a progress bar (on stderr) while they are hashed.
PROGRESS_BYTES = 256 << 20


def _progress(total: int, desc: str):
    if total < PROGRESS_BYTES:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with timm's dependencies
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    bar = _progress(os.path.getsize(path), f"sha256 {os.path.basename(path)}")
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            if bar is not None:
                bar.update(len(block))
    if bar is not None:
        bar.close()
    return digest.hexdigest()


def _read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        from safetensors import safe_open
    except ImportError as err:  # pragma: no cover - safetensors ships with timm
        raise CheckpointError("reading .safetensors needs `pip install safetensors`") from err
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
        ) from None
    return tensors, metadata


def _torch_load(
    path: str, allow_pickle: bool, mmap: bool, map_location: Any,
    stacklevel: int = 4,
) -> Any:
    if allow_pickle:
        warnings.warn(
            f"loading {path} with weights_only=False: a malicious file can run arbitrary code. "
            "Only do this for files you trust.",
            stacklevel=stacklevel,
        )
        return torch.load(path, map_location=map_location, weights_only=False)
    # The allowlist holds only while this file is read: torch's process-wide one is untouched.
    registered = [g for provider in _FRAMEWORK_GLOBALS.values() for g in provider()]
    with torch.serialization.safe_globals([*SAFE_GLOBALS, *registered]):
        if mmap:
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
        # Legacy (non-zip) serialization cannot be memory-mapped.
        return torch.load(path, map_location=map_location, weights_only=True)


def _is_pickle_stream(path: str) -> bool:
    """Whether ``path`` is a torch zip archive or a well-formed pickle stream. Parses opcodes
    only (``pickletools``), never executes them."""
    if zipfile.is_zipfile(path):
        return True
    try:
        with open(path, "rb") as f:
            for _ in pickletools.genops(f):
                pass
    except Exception:  # any parse failure means "not a pickle"
        return False
    return True


def load_torch_file(
    path: str,
    allow_pickle: bool = False,
    mmap: bool = True,
    *,
    map_location: Any = "cpu",
) -> Any:
    """``torch.load`` of a ``.pth`` file, safely: ``weights_only=True`` plus
    :data:`SAFE_GLOBALS` unless ``allow_pickle``. A file that holds other pickled objects, or a
    truncated / corrupt one, raises :class:`CheckpointError` saying which and what to do.

    ``mmap`` memory-maps the file where its format allows (one copy of the weights in memory
    while converting). Pass ``mmap=False`` when the loaded tensors may outlive the file, e.g.
    a resumed optimizer state when training then overwrites that checkpoint: rewriting a
    mapped file invalidates the mapped tensors (SIGBUS).

    Besides :data:`SAFE_GLOBALS`, the classes of the frameworks whose adapters were imported
    (:func:`register_checkpoint_globals`) are allowed for this read; ``map_location`` is
    :func:`torch.load`'s."""
    try:
        return _torch_load(path, allow_pickle, mmap, map_location)
    except pickle.UnpicklingError as err:
        if not _is_pickle_stream(path):
            raise CheckpointError(
                f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?)"
            ) from None
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        refused = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
        what = (f" (it references {found[1]})" if found
                else f" ({refused[1].strip()})" if refused else "")
        raise CheckpointError(
            f"{path} holds pickled Python objects, not only tensors{what}, so it was not loaded: "
            "a pickle can run arbitrary code. If you trust the file, pass --allow-pickle "
            "(allow_pickle=True), or add the class to "
            "hiera_backbones.checkpoints.io.SAFE_GLOBALS after checking it is plain data."
        ) from None
    except Exception as err:  # noqa: BLE001 - a corrupt stream can fail in any unpickler step
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        with open(path, "rb") as f:
            if f.read(2) == b"PK" and not zipfile.is_zipfile(path):
                first = "the zip archive torch.save writes is cut short (incomplete download?)"
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {first}"
        ) from None


def read_checkpoint(path: str, allow_pickle: bool = False, mmap: bool = True) -> RawCheckpoint:
    """Reads a ``.pth``/``.pt``/``.bin``/``.safetensors`` file or a Hugging Face hub folder
    (``config.json`` + ``model.safetensors``), once: pass the result on (every reader of this
    package takes a :class:`RawCheckpoint` where it takes a path). ``mmap``: see
    :func:`load_torch_file`."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path} does not exist")
    config: dict[str, Any] = {}
    if os.path.isdir(path):
        weights = os.path.join(path, "model.safetensors")
        if not os.path.isfile(weights):
            raise CheckpointError(
                f"{path} is a folder without model.safetensors; pass a checkpoint file or a "
                "Hugging Face hub folder (config.json + model.safetensors)"
            )
        cfg_path = os.path.join(path, "config.json")
        if os.path.isfile(cfg_path):
            try:
                with open(cfg_path) as f:
                    config = json.load(f)
            except (OSError, json.JSONDecodeError) as err:
                raise CheckpointError(f"{cfg_path} is not valid JSON: {err}") from None
        tensors, meta = _read_safetensors(weights)
        return RawCheckpoint(tensors, weights, "hf-hub-dir", config, meta)
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path} is empty")
    if path.endswith(".safetensors"):
        tensors, meta = _read_safetensors(path)
        return RawCheckpoint(tensors, path, "safetensors", {}, meta)

    obj = load_torch_file(path, allow_pickle, mmap)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict; save model.state_dict()"
        )
    return RawCheckpoint(dict(obj), path, "torch")


def save_atomic(
    obj: Any,
    dst: str,
    force: bool = False,
    safetensors_metadata: Mapping[str, str] | None = None,
) -> None:
    """Writes ``obj`` to ``dst`` through a temporary file in the same folder and a rename, so
    ``dst`` is either the old file or the complete new one; a missing output folder is created
    (``weights/x.pth`` works in a fresh checkout). ``.safetensors`` destinations take a flat
    ``{name: tensor}`` dict."""
    if os.path.exists(dst) and not force:
        raise CheckpointError(f"{dst} exists; pass --force (force=True) to overwrite it")
    folder = os.path.dirname(os.path.abspath(dst))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create the output folder {folder}: {err}") from None

    def save(tmp: str) -> None:
        if dst.endswith(".safetensors"):
            from safetensors.torch import save_file

            tensors = {k: v.contiguous() for k, v in obj.items()}
            save_file(tensors, tmp, metadata=dict(safetensors_metadata or {}))
        else:
            torch.save(obj, tmp)

    write_atomic(dst, save)


def write_atomic(dst: str, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp)`` on a temporary path in ``dst``'s folder (same suffix, so writers that
    go by the extension pick the right format), then renames it to ``dst``: ``dst`` is either
    the old file or the complete new one, and a failed write leaves no temporary behind."""
    folder = os.path.dirname(os.path.abspath(dst))
    # Created like open() would (umask permissions, unlike mkstemp's 0600), with a fresh name.
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{os.path.basename(dst)}")
    open(tmp, "xb").close()
    try:
        write(tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
