#!/usr/bin/env bash
# Installs this package with one extra at a time into a fresh virtual environment, with the
# commands of docs/install.md's "Install into your own environment", then checks the adapter there
# (tools/check_install.py: import, build one of our configs, forward and backward on CPU).
# Usage: requirements/check_extras.sh [mmdet] [mmaction] [detectron2]   (default: all three)
#
# Each environment lives in its own temporary folder, deleted after its check (the CUDA torch
# wheels alone are ~5 GB installed), so at most one exists at a time. Run it after `make env`
# on the same machine: pip's cache then holds the mmcv wheel that env built, so nothing is
# compiled. About 4 minutes per extra on 2 cores, most of it installing torch (a local wheel
# folder does not help: unpacking, not downloading, is the cost). The check runs outside the
# repository, so only the installed package is imported.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON_BIN="${PYTHON:-python3.11}"
C="$ROOT/requirements/constraints.txt"
if [[ $# -eq 0 ]]; then set -- mmdet mmaction detectron2; fi

log() { printf '\n==> [extras %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

WORK=""
trap '[[ -n "$WORK" ]] && rm -rf "$WORK"' EXIT
SUMMARY=()

for EXTRA in "$@"; do
  case "$EXTRA" in
    mmdet | mmaction | detectron2) ;;
    *) echo "error: unknown extra '$EXTRA' (mmdet, mmaction, detectron2)" >&2; exit 2 ;;
  esac
done

for EXTRA in "$@"; do
  START=$SECONDS
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/hiera_extra_$EXTRA.XXXXXX")"
  log "$EXTRA: fresh venv in $WORK"
  "$PYTHON_BIN" -m venv "$WORK/venv"
  PY="$WORK/venv/bin/python"
  # docs/install.md's commands, with -c (pins every version, torch included). --no-input: CI has no
  # stdin.
  PIP=("$PY" -m pip install --no-input --disable-pip-version-check -c "$C")

  log "$EXTRA: torch + torchvision"
  "${PIP[@]}" torch torchvision
  if [[ "$EXTRA" == mm* ]]; then
    log "$EXTRA: mmcv 2.1.0 from source, with ops (from pip's cache once built)"
    "${PIP[@]}" setuptools wheel ninja
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" --no-build-isolation mmcv
  fi
  log "$EXTRA: pip install -e .[$EXTRA]"
  "${PIP[@]}" -e "$ROOT[$EXTRA]"
  if [[ "$EXTRA" == detectron2 ]]; then
    log "$EXTRA: detectron2 itself (requirements/install_detectron2.sh)"
    bash "$ROOT/requirements/install_detectron2.sh" "$PY"
  fi
  INSTALLED=$((SECONDS - START))

  log "$EXTRA: tools/check_install.py $EXTRA"
  (cd "$WORK" && OMP_NUM_THREADS=1 "$PY" "$ROOT/tools/check_install.py" "$EXTRA")
  rm -rf "$WORK"
  WORK=""
  SUMMARY+=("$EXTRA: installed in ${INSTALLED}s, checked in $((SECONDS - START - INSTALLED))s")
done

log "all extras check out"
printf '  %s\n' "${SUMMARY[@]}"
