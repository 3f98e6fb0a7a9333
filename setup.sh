#!/usr/bin/env bash
# Create .venv and install daggerlm with its pinned dependencies (CPU torch from the local wheel cache).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
command -v unshare >/dev/null || { echo "setup: 'unshare' (util-linux) is required for the sandbox" >&2; exit 1; }
command -v git >/dev/null || { echo "setup: git is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup: ok ($(.venv/bin/python --version), daggerlm $(.venv/bin/python -c 'import daggerlm; print(daggerlm.__version__)'))"
