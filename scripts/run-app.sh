#!/usr/bin/env bash
# Install Crystal Studio into .venv and open it on the built-in project (created on first launch).
# The install runs only when the venv is new or pyproject.toml changed since the last one (a stamp in
# .venv records its hash), so later launches start at once. Extra arguments go to crystal-studio,
# e.g.  bash scripts/run-app.sh info my.sqlite
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.crystal-studio-install
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/crystal-studio ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
  echo "$wanted" > "$stamp"
fi
exec .venv/bin/crystal-studio "$@"
