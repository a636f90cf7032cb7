#!/usr/bin/env bash
# Install everything the test suite needs and run it all.
#   - as root on Debian/Ubuntu: the system libraries for headless Qt + VTK (Xvfb, Mesa, xcb);
#   - a virtual environment in .venv with the project, its test extra and the cluster extra (Ray, so
#     tests/test_ray.py runs; without it those tests skip);
#   - pytest under Xvfb, so the VTK viewer tests get a real (software) OpenGL context.
# Extra arguments go to pytest, e.g.  bash scripts/run-tests.sh -k store
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
  libxcb-keysyms1 libxcb-shape0 libxcb-render-util0 libxcb-image0 libxcb-randr0 libxcb-xinerama0
  libxcb-xkb1 libdbus-1-3 libfontconfig1"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    echo "installing system packages: $(echo $missing)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,cluster]"

if command -v xvfb-run >/dev/null 2>&1; then
  exec xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python -m pytest "$@"
else
  echo "xvfb-run not found: GUI tests that need OpenGL will be skipped" >&2
  QT_QPA_PLATFORM=offscreen exec .venv/bin/python -m pytest "$@"
fi
