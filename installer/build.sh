#!/usr/bin/env bash
# Build the self-contained Linux app:
#   dist/crystal-studio/                       folder app: ./crystal-studio (GUI + the whole CLI),
#                                              icon, .desktop template, install-desktop-entry.sh
#   dist/crystal-studio-VERSION-linux-ARCH.tar.gz   the same folder as one archive
# It installs the project (not editable) with PyInstaller into its own venv, build/installer-venv, with
# the CPU build of PyTorch, and refuses to bundle a CUDA build. Sizes and times go to
# build/installer-report.json.   Usage: bash installer/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=build/installer-venv
TORCH_REQUIREMENT=${TORCH_REQUIREMENT:-torch==2.13.0}   # the CPU wheel on our package index
start=$(date +%s)

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_REQUIREMENT"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check . "pyinstaller>=6.10" "pyinstaller-hooks-contrib>=2024.8"
if "$VENV/bin/python" -c "import sys, torch; sys.exit(0 if torch.version.cuda is None else 1)"; then :; else
  echo "build.sh: $VENV holds a CUDA build of torch; set TORCH_REQUIREMENT to a CPU wheel" >&2; exit 1
fi
installed=$(date +%s)

"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller installer/crystal-studio.spec
APP=dist/crystal-studio
cp installer/crystal-studio.svg installer/crystal-studio.desktop.in installer/install-desktop-entry.sh "$APP/"
frozen=$(date +%s)

VERSION=$("$APP/crystal-studio" --version | awk '{print $NF}')
ARCHIVE="dist/crystal-studio-$VERSION-linux-$(uname -m).tar.gz"
tar -C dist -czf "$ARCHIVE" crystal-studio
done_at=$(date +%s)

"$VENV/bin/python" - "$APP" "$ARCHIVE" "$VERSION" $((installed - start)) $((frozen - installed)) $((done_at - frozen)) <<'PY'
import json, os, sys
app, archive, version, install_s, freeze_s, archive_s = sys.argv[1:]
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(app) for f in fs)
report = {"version": version, "app": app, "app_mib": round(size / 2**20, 1), "archive": archive,
          "archive_mib": round(os.path.getsize(archive) / 2**20, 1), "install_s": int(install_s),
          "pyinstaller_s": int(freeze_s), "archive_s": int(archive_s)}
os.makedirs("build", exist_ok=True)
with open("build/installer-report.json", "w") as f:
    json.dump(report, f)
print(json.dumps(report))
PY
