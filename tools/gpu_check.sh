#!/usr/bin/env bash
# GPU speed and memory check, one command on a machine with one CUDA GPU (< 8 min on an H100 /
# H200): tools/benchmark.py on cuda in bf16 and fp32 for ours, the official Hiera and timm, with
# peak memory (torch.cuda.max_memory_allocated) and what autograd saves for backward, and the
# paper's A100 fp16 throughput (Tab. 16) beside ours; then tools/scaling.py's curves (image side
# 512-2048, frames 8-32, batch 1-8) with the training-step time at every point. Writes Markdown tables, PNG plots and JSON
# rows into OUT_DIR (default gpu_check/) and prints the tables.
#
#   tools/gpu_check.sh [OUT_DIR]
#
# Needs torch with CUDA, timm and hiera-transformer (the official model; without it its rows are
# left out: pip install hiera-transformer==0.1.4, or WHEELS=<folder of wheels> to install it
# offline). Runs from the checkout: the package need not be installed.
# Settings (environment): PYTHON (python3), DEVICE (cuda; cpu only to test this script),
# MODELS_224 / MODELS_DET / MODELS_VIDEO (model names for the image-224, 1024x1024 detection and
# 16x224 video runs; empty skips that run), BATCH_224 (64: a GPU batch, the paper's throughput
# is at its best batch), DTYPES ("bf16 fp32"), ROUNDS (20), WARMUP (3),
# IMPLS ("ours compiled official timm"), STEP_TIMEOUT (300 s per benchmark run), SCALING (the
# tools/scaling.py curves to time, "image sam2 frames batch"; empty skips them), SCALING_ROUNDS
# (3), SCALING_DTYPE (bf16), SCALING_POINTS (0: every point; N: the first N of each curve).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-gpu_check}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
MODELS_224="${MODELS_224-hiera_tiny_224 hiera_base_224 hiera_base_plus_224 hiera_large_224}"
MODELS_DET="${MODELS_DET-hiera_base_224 sam2_hiera_base_plus}"
MODELS_VIDEO="${MODELS_VIDEO-hiera_base_16x224}"
BATCH_224="${BATCH_224:-64}"
ROUNDS="${ROUNDS:-20}"
WARMUP="${WARMUP:-3}"
DTYPES="${DTYPES:-bf16 fp32}"
IMPLS="${IMPLS:-ours compiled official timm}"
STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
SCALING="${SCALING-image sam2 frames batch}"
SCALING_ROUNDS="${SCALING_ROUNDS:-3}"
SCALING_DTYPE="${SCALING_DTYPE:-bf16}"
SCALING_POINTS="${SCALING_POINTS:-0}"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

if [[ -n "${WHEELS:-}" ]]; then
  "$PY" -m pip install --no-index --find-links "$WHEELS" --no-deps hiera-transformer >/dev/null
fi
"$PY" - "$DEVICE" <<'PY'
import sys

import torch

device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device is visible to torch " + torch.__version__)
import timm  # noqa: F401  (required: the reference next to ours)

name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
print(f"gpu_check: torch {torch.__version__} on {name}")
PY
# benchmark.py builds every implementation asked for: without the official package, ask for
# none of its rows rather than fail on the first one.
if ! "$PY" -c "import hiera" >/dev/null 2>&1; then
  echo "gpu_check: hiera-transformer is not installed: no official rows" >&2
  IMPLS="$(echo " $IMPLS " | sed 's/ official / /g')"
fi

# One benchmark run: a label, then benchmark.py's arguments.
bench() {
  local label="$1"
  shift
  echo "== $label"
  timeout "$STEP_TIMEOUT" "$PY" "$ROOT/tools/benchmark.py" --device "$DEVICE" --rounds "$ROUNDS" \
    --warmup "$WARMUP" --memory --impls $IMPLS "$@" \
    --out "$OUT/$label.md" --plot "$OUT/$label.png" --json "$OUT/$label.json"
  cat "$OUT/$label.md"
}

start=$(date +%s)
for dtype in $DTYPES; do
  # shellcheck disable=SC2086  # model lists are word lists
  if [[ -n "$MODELS_224" ]]; then
    bench "image224_$dtype" --dtype "$dtype" --models $MODELS_224 --inputs image224 \
      --batch "$BATCH_224"
  fi
  if [[ -n "$MODELS_DET" ]]; then
    bench "det1024_$dtype" --dtype "$dtype" --models $MODELS_DET --inputs det1024 --batch 1 \
      --compile-inputs
  fi
  if [[ -n "$MODELS_VIDEO" ]]; then
    bench "video16x224_$dtype" --dtype "$dtype" --models $MODELS_VIDEO --inputs video16x224 \
      --batch 1 --compile-inputs
  fi
done
if [[ -n "$SCALING" ]]; then
  # Activation memory (counted) and training-step time along the scaling curves; a point that
  # does not fit on the GPU is reported as out of memory.
  echo "== scaling"
  # The same implementations as above (not compiled), and ours with plain autograd.
  scaling_impls="$(echo " $IMPLS " | sed 's/ compiled / /g') ours-plain"
  # shellcheck disable=SC2086  # the sweep and implementation lists are word lists
  timeout "$STEP_TIMEOUT" "$PY" "$ROOT/tools/scaling.py" --sweeps $SCALING --device "$DEVICE" \
    --time "$SCALING_ROUNDS" --dtype "$SCALING_DTYPE" --max-points "$SCALING_POINTS" \
    --impls $scaling_impls --out "$OUT/scaling.md" --plot "$OUT/scaling.png"
  cat "$OUT/scaling.md"
fi
echo "gpu_check: done in $(( $(date +%s) - start )) s; tables, plots and rows in $OUT/"
