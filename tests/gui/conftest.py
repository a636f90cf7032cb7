"""Fixtures for GUI tests: an isolated home folder and settings, and a small temporary project.

Widgets without VTK run anywhere (offscreen Qt when there is no display); anything with a VTK view
needs an X display: run ``xvfb-run -a -s "-screen 0 1280x1024x24" pytest tests/gui``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

GOOD = Path(__file__).resolve().parents[1] / "data" / "good"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch) -> Path:
    """Keep the built-in project and user files out of the real home folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("CRYSTAL_STUDIO_HOME", str(home))
    return home


@pytest.fixture
def settings(tmp_path):
    """QSettings in a temporary INI file."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def project(tmp_path):
    """A temporary project with tests/data/good imported as dataset 'good'."""
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    proj = Project.create(tmp_path / "p.sqlite")
    report = import_paths(proj, sorted(GOOD.iterdir()), "good")
    assert report.imported >= 5
    yield proj
    proj.close()


@pytest.fixture
def window(qtbot, project, settings):
    """The main window, shown, on :func:`project` (opened once the window's project is set)."""
    from crystal_studio.gui.main_window import MainWindow

    project.close()
    win = MainWindow(project.path, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.project is not None, timeout=10000)
    yield win
    win.close()
