#!/usr/bin/env bash
# Set up leansnn on a fresh Debian machine (or any Linux with Python >= 3.11):
#   1. create .venv in the repository root when missing (installing python3-venv via apt if
#      the interpreter cannot make one),
#   2. install the CPU build of PyTorch (pinned, so no multi-GB CUDA build is pulled) and
#      leansnn with its dev and nir extras,
#   3. install Debian's dataset-fashion-mnist when the data is missing and apt is available.
# Idempotent: a second run only checks. Variables: PYTHON (interpreter, default python3),
# TORCH_SPEC (default torch==2.13.0), EXTRAS (default dev,nir), SKIP_DATA=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
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

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "setup: installing $TORCH_SPEC (CPU) and leansnn[$EXTRAS] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
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
