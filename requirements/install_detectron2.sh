#!/usr/bin/env bash
# Installs detectron2 (upstream main, mid-2024) into the environment of PYTHON from PyPI alone,
# with the pinned versions of requirements/constraints.txt.
# Usage: requirements/install_detectron2.sh [PYTHON]   (default: python, e.g. an activated venv)
#
# detectron2's authors do not publish it on PyPI. The sal-detectron2 wheel is a build of upstream
# main for CPython 3.10 only, so it is downloaded for 3.10 and its pure-Python detectron2/
# package is copied into site-packages without the compiled _C extension (built for another
# torch and Python; detectron2 main falls back without it: only deformable convolution and
# rotated boxes need it). A copy brings no dependencies, so detectron2's runtime dependencies
# are installed by name. Leaves an existing detectron2 package as it is.
# With access to GitHub, the upstream build is the alternative:
#   pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-python}"
C="$ROOT/requirements/constraints.txt"
PIP=("$PY" -m pip --no-input --disable-pip-version-check)

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ ! -d "$SITE/detectron2" ]]; then
  TMP="$(mktemp -d)"
  trap 'rm -rf "$TMP"' EXIT
  "${PIP[@]}" download --no-deps --only-binary=:all: --python-version 3.10 -c "$C" \
    -d "$TMP/wheel" sal-detectron2
  "$PY" -m zipfile -e "$TMP"/wheel/*.whl "$TMP/unpacked"
  find "$TMP/unpacked/detectron2" -name '_C*.so' -delete
  # Copy, then rename: an interrupted run never leaves a half-copied detectron2 behind.
  rm -rf "$SITE/detectron2.partial"
  cp -r "$TMP/unpacked/detectron2" "$SITE/detectron2.partial"
  mv "$SITE/detectron2.partial" "$SITE/detectron2"
fi

# detectron2 main's install_requires (tensorboard: tools/lazyconfig_train_net.py's writers;
# black: LazyConfig.save).
"${PIP[@]}" install -c "$C" fvcore iopath omegaconf hydra-core pycocotools yacs tabulate \
  cloudpickle tqdm matplotlib termcolor packaging Pillow tensorboard black
