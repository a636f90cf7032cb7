#!/usr/bin/env bash
# Add Crystal Studio to the desktop's application menu (per user, no root): writes
# ~/.local/share/applications/crystal-studio.desktop pointing at this folder. Run it from the unpacked app.
set -euo pipefail
APPDIR=$(cd "$(dirname "$0")" && pwd)
DEST=${XDG_DATA_HOME:-$HOME/.local/share}/applications
mkdir -p "$DEST"
sed "s|@APPDIR@|$APPDIR|g" "$APPDIR/crystal-studio.desktop.in" > "$DEST/crystal-studio.desktop"
echo "installed $DEST/crystal-studio.desktop"
