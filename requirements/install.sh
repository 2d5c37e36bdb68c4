#!/usr/bin/env bash
# Builds the pinned development stack into a virtual environment (default .venv).
# Usage: requirements/install.sh [VENV_DIR]
# Idempotent: a stamp holding the hash of this script, the constraints and setup.cfg
# makes a second run return at once. Recipe and reasons: ../shared/reference/environment.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3.11}"
C="$ROOT/requirements/constraints.txt"
STAMP="$VENV/.hiera_backbones_stamp"

hash_inputs() {
  cat "$ROOT/requirements/install.sh" "$ROOT/requirements/install_detectron2.sh" "$C" \
    "$ROOT/setup.cfg" "$ROOT/requirements/install_references.sh" \
    "$ROOT/requirements/references.txt" | sha256sum | cut -d' ' -f1
}
WANT="$(hash_inputs)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi

log() { printf '\n==> [install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $PYTHON_BIN"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# --no-input: CI has no stdin. The machine's pip config may add a find-links entry with a
# CPU-only torch; pinning torch in the constraints keeps pip from ever choosing it.
PIP=("$PY" -m pip install --no-input --disable-pip-version-check -c "$C")

log "build tools (setuptools<70 for mmcv's pkg_resources import)"
"${PIP[@]}" setuptools wheel ninja

log "torch + torchvision (CUDA wheels: PyPI's torchvision ops need the CUDA torch build)"
"${PIP[@]}" torch torchvision

log "mmcv 2.1.0 from source with ops (first time ~15 min on 2 cores; pip caches the wheel)"
if ! "$PY" -c "import mmcv, mmcv.ops" >/dev/null 2>&1; then
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" --no-build-isolation mmcv
fi

log "OpenMMLab (+ its mim launcher), timm, test reference and tools"
"${PIP[@]}" mmengine mmdet mmaction2 openmim importlib_metadata decord timm safetensors numpy \
  hiera-transformer pytest ruff onnx onnxscript onnxruntime

log "detectron2 (upstream main, from the cp310 sal-detectron2 wheel; pure Python part)"
bash "$ROOT/requirements/install_detectron2.sh" "$PY"

log "this package (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

"$PY" - <<'PY'
import torch, torchvision, timm, mmcv, mmengine, mmdet, detectron2, hiera  # noqa: F401
import mmcv.ops  # noqa: F401
from torchvision.ops import nms  # noqa: F401
print("torch", torch.__version__, "| mmcv", mmcv.__version__, "| mmdet", mmdet.__version__,
      "| timm", timm.__version__)
PY
log "reference implementations for parity tests (sam2, transformers) into $VENV/references"
# Outside the pinned stack (they clash with it; see requirements/references.txt): a --target
# folder that only the tests comparing with them put on sys.path.
bash "$ROOT/requirements/install_references.sh" "$VENV/references" "$PY"

echo "$WANT" > "$STAMP"
log "environment ready: $VENV"
