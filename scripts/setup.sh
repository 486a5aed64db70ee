#!/usr/bin/env bash
# Set up leansnn on a fresh Debian machine (or any Linux with Python >= 3.11):
#   1. create .venv in the repository root when missing (installing python3-venv via apt if
#      the interpreter cannot make one),
#   2. PyTorch, never a CUDA build behind your back:
#      - a torch already in .venv that satisfies TORCH_SPEC (or, when TORCH_SPEC is not set,
#        leansnn's own requirement) is kept as it is;
#      - TORCH_INDEX_URL set: pip install "$TORCH_SPEC" from that index (your choice of build,
#        e.g. https://download.pytorch.org/whl/cu124 for CUDA 12.4);
#      - else, when a local wheel (pip's find-links) satisfies TORCH_SPEC: a plain pip install
#        (works offline);
#      - else: the CPU build from https://download.pytorch.org/whl/cpu,
#   3. leansnn with its dev and nir extras (editable),
#   4. Debian's dataset-fashion-mnist when the data is missing and apt is available.
# Idempotent: a second run only checks. Variables: PYTHON (interpreter, default python3),
# TORCH_SPEC (default torch==2.13.0), TORCH_INDEX_URL (default: see 2.), EXTRAS (default
# dev,nir), SKIP_DATA=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC_GIVEN=${TORCH_SPEC:+1}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
CPU_INDEX=https://download.pytorch.org/whl/cpu
EXTRAS=${EXTRAS:-dev,nir}
STAMP=.venv/.leansnn-installed-$EXTRAS

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"
}

if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found; installing python3 with apt" >&2
  apt_install python3 python3-venv python3-pip || { echo "setup: install Python >= 3.11 first" >&2; exit 1; }
fi
"$PYTHON" - <<'PY' || { echo "setup: leansnn needs Python >= 3.11 (set PYTHON=python3.11)" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python$ver-venv" || apt_install python3-venv || true
    "$PYTHON" -m venv .venv
  fi
fi

# exit 0 when the torch in .venv satisfies the requirement $1 (e.g. "torch>=2.1")
torch_satisfies() {
  .venv/bin/python - "$1" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    v = version("torch")
except PackageNotFoundError:
    sys.exit(1)
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
sys.exit(0 if Requirement(sys.argv[1]).specifier.contains(v, prereleases=True) else 1)
PY
}

install_torch() {
  local keep="$TORCH_SPEC"
  [ -n "$TORCH_SPEC_GIVEN" ] || keep=$(sed -n 's/^ *"\(torch[^"]*\)".*/\1/p' pyproject.toml | head -1)
  if torch_satisfies "${keep:-torch}"; then
    echo "setup: keeping torch $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))') (satisfies ${keep:-torch})"
  elif [ -n "$TORCH_INDEX_URL" ]; then
    echo "setup: installing $TORCH_SPEC from $TORCH_INDEX_URL"
    .venv/bin/python -m pip install -q --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
  elif .venv/bin/python -m pip install -q --dry-run --no-deps --no-index "$TORCH_SPEC" \
      >/dev/null 2>&1; then
    echo "setup: installing $TORCH_SPEC from a local wheel"
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
  else
    echo "setup: installing $TORCH_SPEC, CPU build, from $CPU_INDEX (CUDA: see README)"
    .venv/bin/python -m pip install -q --index-url "$CPU_INDEX" "$TORCH_SPEC"
  fi
}

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  install_torch
  echo "setup: installing leansnn[$EXTRAS] into .venv"
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  touch "$STAMP"
fi

if [ "${SKIP_DATA:-0}" != 1 ]; then
  if ! .venv/bin/python -c 'import leansnn as ls; ls.data.fashion_mnist("test")' 2>/dev/null; then
    echo "setup: Fashion-MNIST not found; installing Debian's dataset-fashion-mnist"
    if ! apt_install dataset-fashion-mnist; then
      echo "setup: could not install it with apt. Get the four idx files from" >&2
      echo "  https://github.com/zalandoresearch/fashion-mnist into a folder and set LEANSNN_DATA=FOLDER" >&2
    fi
  fi
fi
