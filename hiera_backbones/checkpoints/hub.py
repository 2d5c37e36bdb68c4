"""Official checkpoint URLs and the one downloader.

A checkpoint source is a local path, ``"<model>:<tag>"`` naming an official release (e.g.
``hiera_base_224:mae_in1k``, ``hvt_s_4:in1k``, ``sam2.1_hiera_large:sa1b``,
``hiera_small_abswin_256:sbb2_e200_in12k``; see
:data:`OFFICIAL_CHECKPOINTS`) or an http(s) URL. :func:`resolve_source` turns any of them into
a local file, downloading once into the cache folder (``$HIERA_BACKBONES_CACHE``, default
``~/.cache/hiera_backbones``) through a temporary ``.part`` file renamed into place. Offline, it
fails with one error naming the file to fetch and where to put it.
"""

from __future__ import annotations

import os
import urllib.error

import torch

from .io import CheckpointError

__all__ = [
    "HVT_CHECKPOINT_URLS",
    "OFFICIAL_CHECKPOINTS",
    "cache_dir",
    "cache_file_name",
    "is_official_tag",
    "resolve_source",
]

_HIERA_URL = "https://dl.fbaipublicfiles.com/hiera/"
_HVT_URL = "https://github.com/zhuang-group/HVT/releases/download"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/"
_HF_URL = "https://huggingface.co/"
#: Released HVT ImageNet-1k checkpoints (``torch.load(...)['model']``), by variant.
HVT_CHECKPOINT_URLS: dict[str, str] = {
    "hvt_ti_1": f"{_HVT_URL}/v1.0/hvt_ti_1.pth",
    "hvt_s_0": f"{_HVT_URL}/v1.0/hvt_s_0.pth",
    "hvt_s_1": f"{_HVT_URL}/v1.1/hvt_s_1.pth",
    "hvt_s_2": f"{_HVT_URL}/v1.0/hvt_s_2.pth",
    "hvt_s_3": f"{_HVT_URL}/v1.0/hvt_s_3.pth",
    # The README links the Scale HVT-Ti-4 file for the HVT-S-4 row too (same architecture).
    "hvt_s_4": f"{_HVT_URL}/v1.0/scale_hvt_ti_4.pth",
    "scale_hvt_ti_4": f"{_HVT_URL}/v1.0/scale_hvt_ti_4.pth",
}

#: ``"<model>:<tag>"`` -> official download URL.
OFFICIAL_CHECKPOINTS: dict[str, str] = {}
for _size in ("tiny", "small", "base", "base_plus", "large", "huge"):
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_224:mae_in1k"] = f"{_HIERA_URL}mae_hiera_{_size}_224.pth"
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_224:mae_in1k_ft_in1k"] = (
        f"{_HIERA_URL}hiera_{_size}_224.pth"
    )
OFFICIAL_CHECKPOINTS.update({f"{name}:in1k": url for name, url in HVT_CHECKPOINT_URLS.items()})
for _size in ("base", "base_plus", "large", "huge"):
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_16x224:mae_k400"] = (
        f"{_HIERA_URL}mae_hiera_{_size}_16x224.pth"
    )
    OFFICIAL_CHECKPOINTS[f"hiera_{_size}_16x224:mae_k400_ft_k400"] = (
        f"{_HIERA_URL}hiera_{_size}_16x224.pth"
    )
# SAM 2 (July 2024) and SAM 2.1 (September 2024) releases: whole SAM 2 models trained on SA-1B
# and SA-V; the converter keeps their image-encoder trunk (architecture sam2_hiera_<size>).
for _size in ("tiny", "small", "base_plus", "large"):
    OFFICIAL_CHECKPOINTS[f"sam2_hiera_{_size}:sa1b"] = f"{_SAM2_URL}072824/sam2_hiera_{_size}.pt"
    OFFICIAL_CHECKPOINTS[f"sam2.1_hiera_{_size}:sa1b"] = (
        f"{_SAM2_URL}092824/sam2.1_hiera_{_size}.pt"
    )

# timm's abs-win Hiera-S (Bolya et al., ICLR 2024; timm "searching for better baselines" recipe,
# supervised ImageNet-12k, 200 epochs): the only abs-win Hiera with released weights
# (hiera_base_abswin_256 has none). The Hugging Face file of timm's model card.
for _tag in ("sbb2_e200_in12k", "sbb2_e200_in12k_ft_in1k"):
    OFFICIAL_CHECKPOINTS[f"hiera_small_abswin_256:{_tag}"] = (
        f"{_HF_URL}timm/hiera_small_abswin_256.{_tag}/resolve/main/model.safetensors"
    )


def cache_dir() -> str:
    """Where downloads go: ``$HIERA_BACKBONES_CACHE`` or ``~/.cache/hiera_backbones``."""
    return os.environ.get(
        "HIERA_BACKBONES_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hiera_backbones")
    )


def is_official_tag(spec: str) -> bool:
    return spec in OFFICIAL_CHECKPOINTS


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def cache_file_name(url: str) -> str:
    """The name a download of ``url`` gets in the cache: the URL's file name, except for Hugging
    Face ``<org>/<repo>/resolve/<rev>/<file>`` URLs, whose files are all called alike
    (``model.safetensors``): ``<repo>.<extension>`` there."""
    path = url.split("?")[0]
    name = os.path.basename(path) or "checkpoint.pth"
    if path.startswith(_HF_URL) and "/resolve/" in path:
        repo = path[len(_HF_URL):].split("/resolve/")[0].split("/")[-1]
        name = repo + os.path.splitext(name)[1]
    return name


def resolve_source(spec: str, cache: str | None = None) -> str:
    """A local file for ``spec``: a path as it is; ``"<model>:<tag>"`` or an http(s) URL
    downloaded once into ``cache`` (default :func:`cache_dir`). Unknown tags and failed
    downloads raise :class:`CheckpointError`."""
    if _is_url(spec):
        url, tag = spec, None
    elif os.path.exists(spec) or ":" not in spec or os.sep in spec:
        return spec
    elif spec in OFFICIAL_CHECKPOINTS:
        url, tag = OFFICIAL_CHECKPOINTS[spec], spec
    else:
        raise CheckpointError(
            f"{spec!r} is neither a file nor a known official checkpoint; known: "
            + ", ".join(sorted(OFFICIAL_CHECKPOINTS))
        )
    folder = cache or cache_dir()
    dst = os.path.join(folder, cache_file_name(url))
    if os.path.exists(dst):
        return dst
    os.makedirs(folder, exist_ok=True)
    # One temporary name per process: concurrent downloads of the same file (one per GPU
    # process) never write into each other's file; the last rename wins, with identical bytes.
    tmp = f"{dst}.{os.getpid()}.part"
    try:
        torch.hub.download_url_to_file(url, tmp, progress=True)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        reason = getattr(err, "reason", err)
        instead = f" instead of {tag!r}" if tag else ""
        raise CheckpointError(
            f"could not download {url} ({reason}); this machine may be offline. Download the "
            f"file elsewhere and pass its local path{instead}, or put it at {dst}."
        ) from None
    os.replace(tmp, dst)
    return dst
