#!/usr/bin/env bash
# Create .venv and install daggerlm with its pinned dependencies (CPU torch from the local wheel cache),
# then build the default tiny student (params.yaml: student.model), pretrained once here as a real
# student arrives pretrained; the main job's init-model finds it. DAGGERLM_SETUP_STUDENT=0 skips that.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
command -v unshare >/dev/null || { echo "setup: 'unshare' (util-linux) is required for the sandbox" >&2; exit 1; }
command -v git >/dev/null || { echo "setup: git is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]'
if [ "${DAGGERLM_SETUP_STUDENT:-1}" != 0 ]; then
  echo "setup: building the tiny student (a few minutes on 2 cores; a finished build is reused)"
  .venv/bin/daggerlm build-student
fi
echo "setup: ok ($(.venv/bin/python --version), daggerlm $(.venv/bin/python -c 'import daggerlm; print(daggerlm.__version__)'))"
