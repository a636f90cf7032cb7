#!/usr/bin/env bash
# Install Crystal Studio into .venv and open it on the built-in project (created on first launch).
# Extra arguments go to crystal-studio, e.g.  bash scripts/run-app.sh info my.sqlite
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/crystal-studio "$@"
