"""Application entry point: ``crystal-studio`` with no arguments calls :func:`run_app`."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from crystal_studio import __version__


def run_app(project_path: Path | None = None) -> int:
    """Start the Qt application on ``project_path`` (default: the last project, else the built-in one)."""
    from crystal_studio.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("CrystalStudio")
    app.setApplicationName("Crystal Studio")
    app.setApplicationVersion(__version__)
    window = MainWindow(project_path)
    window.show()
    from crystal_studio.gui.welcome import show_at_startup

    show_at_startup(window)
    return app.exec()
