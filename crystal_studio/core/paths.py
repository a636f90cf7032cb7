"""Where Crystal Studio keeps its files: shipped resources and the user's data folder."""

from __future__ import annotations

import os
from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def user_data_dir() -> Path:
    """Per-user data folder: $CRYSTAL_STUDIO_HOME, else $XDG_DATA_HOME/crystal-studio, else
    ~/.local/share/crystal-studio."""
    if os.environ.get("CRYSTAL_STUDIO_HOME"):
        return Path(os.environ["CRYSTAL_STUDIO_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "crystal-studio"
