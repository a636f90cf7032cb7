"""Application entry point: ``crystal-studio`` with no arguments calls :func:`run_app`.

With ``CRYSTAL_STUDIO_STARTUP_LOG=PATH`` set, the app writes the wall-clock times (``time.time()``)
at which it entered :func:`run_app`, showed the main window and had its project open to PATH as
JSON, then quits: ``benchmarks/startup.py`` measures start-up with it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from crystal_studio import __version__

STARTUP_LOG_ENV = "CRYSTAL_STUDIO_STARTUP_LOG"


def run_app(project_path: Path | None = None) -> int:
    """Start the Qt application on ``project_path`` (default: the last project, else the built-in one)."""
    entered = time.time()
    from crystal_studio.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("CrystalStudio")
    app.setApplicationName("Crystal Studio")
    app.setApplicationVersion(__version__)
    window = MainWindow(project_path)
    window.show()
    from crystal_studio.gui.welcome import show_at_startup

    show_at_startup(window)
    log = os.environ.get(STARTUP_LOG_ENV)
    if log:
        _log_startup(app, window, Path(log), entered)
    return app.exec()


def _log_startup(app: QApplication, window, path: Path, entered: float) -> None:
    """Poll until the window is on screen and its project is open (or failed to open), write the times
    to ``path`` and quit."""
    times = {"pid": os.getpid(), "run_app": entered}
    timer = QTimer(app)

    def poll() -> None:
        handle = window.windowHandle()
        if "shown" not in times and handle is not None and handle.isExposed():
            times["shown"] = time.time()
        failed = window.jobs.last_error_dialog
        if "shown" in times and (window.project is not None or failed is not None):
            times["ready" if failed is None else "failed"] = time.time()
            if failed is not None:
                times["error"] = failed.text()
            timer.stop()
            path.write_text(json.dumps(times), encoding="utf-8")
            app.quit()

    timer.timeout.connect(poll)
    timer.start(5)
