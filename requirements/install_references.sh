#!/usr/bin/env bash
# Installs the reference implementations of requirements/references.txt (SAM 2's own code and
# Hugging Face transformers) into a folder of their own, outside the pinned environment, for the
# parity tests that compare with them (tests/unit/test_hieradet_references.py).
# Usage: requirements/install_references.sh [TARGET_DIR] [PYTHON]
#   TARGET_DIR default: $HIERA_BACKBONES_REFERENCES, else <repo>/.venv/references (where the
#              tests look; they read the same variable). PYTHON default: <repo>/.venv/bin/python.
# Idempotent: a stamp holding the hash of this script and references.txt makes a second run
# return at once. The folder is built next to TARGET_DIR and renamed into place, so an
# interrupted run never leaves a half-installed folder behind.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${1:-${HIERA_BACKBONES_REFERENCES:-$ROOT/.venv/references}}"
TARGET="$(realpath -m "$TARGET")"  # the import check below compares absolute paths
PY="${2:-$ROOT/.venv/bin/python}"
REQ="$ROOT/requirements/references.txt"
STAMP="$TARGET/.hiera_backbones_references_stamp"

WANT="$(cat "$ROOT/requirements/install_references.sh" "$REQ" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
printf '\n==> [references %s] %s -> %s\n' "$(date +%H:%M:%S)" "$(grep -v '^#' "$REQ" | xargs)" \
  "$TARGET"

PARTIAL="$TARGET.partial"
rm -rf "$PARTIAL"
mkdir -p "$(dirname "$TARGET")"
# SAM2_BUILD_CUDA=0: sam2's only extension is a CUDA post-processing kernel.
# --no-build-isolation: sam2's build imports torch; an isolated build would fetch another one.
SAM2_BUILD_CUDA=0 "$PY" -m pip install --no-input --disable-pip-version-check --no-deps \
  --no-build-isolation --target "$PARTIAL" -r "$REQ"

# The tests import exactly this, with the folder appended to sys.path of the pinned stack.
PYTHONPATH="" "$PY" - "$PARTIAL" <<'PY'
import sys

sys.path.append(sys.argv[1])
from sam2.modeling.backbones.hieradet import Hiera  # noqa: E402,F401
from transformers.models.sam2.modeling_sam2 import Sam2HieraDetModel, Sam2Model  # noqa: E402,F401
import sam2, transformers  # noqa: E401,E402

for mod in (sam2, transformers):
    assert mod.__file__.startswith(sys.argv[1]), f"{mod.__name__} from {mod.__file__}"
print("references: sam2 (SAM 2 trunk) and transformers", transformers.__version__, "import")
PY
rm -rf "$TARGET"
mv "$PARTIAL" "$TARGET"
echo "$WANT" > "$STAMP"
