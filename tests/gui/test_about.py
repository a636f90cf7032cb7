"""Help ▸ About opens a dialog with the versions, the compute device and the shipped data's licences."""

from __future__ import annotations

import os

import pytest

from crystal_studio import __version__

needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"),
                                   reason="VTK needs an X display: run under xvfb-run")


@needs_display
def test_about_dialog_from_the_help_menu(qtbot, settings):
    from PySide6.QtGui import QGuiApplication

    from crystal_studio.gui.about import AboutDialog
    from crystal_studio.gui.main_window import MainWindow

    win = MainWindow(settings=settings, open_default=False)
    qtbot.addWidget(win)
    win.show()
    help_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Help")
    about = next(a for a in help_menu.actions() if a.text() == "&About Crystal Studio")
    about.trigger()
    dialog = win.findChild(AboutDialog)
    assert dialog is not None and dialog.isVisible() and dialog.windowTitle() == "About Crystal Studio"
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=20000)

    versions = dialog.report["versions"]
    for name in ("Crystal Studio", "Python", "Qt", "PySide6", "VTK", "torch", "pymatgen", "CHGNet", "spglib"):
        assert versions[name] and versions[name] != "not installed", name
    assert versions["Crystal Studio"] == __version__
    text = " ".join(dialog.body.toPlainText().split())  # the table's cells, one space apart
    for name in ("Crystal Studio", "Qt", "VTK", "torch", "CHGNet"):
        assert f"{name} {versions[name]}" in text, name
    import torch

    if torch.cuda.is_available():
        assert f"GPU: {torch.cuda.get_device_name(0)}" in text
    else:
        assert f"CPU only: torch sees no CUDA GPU, so training and optimization run on this machine's {os.cpu_count()}" \
            in text and text.count("slower than on a GPU") == 1
    assert "Materials Project" in text and "CC BY 4.0" in text
    assert "2,685 hypothetical cubic ABX3 perovskites" in text and "CHGNet predictions (not DFT)" in text
    assert "modified BSD" in text and "LGPL-2.1-or-later" in text

    dialog.copy_button.click()
    copied = QGuiApplication.clipboard().text()
    assert copied.startswith(f"Crystal Studio {__version__}\n") and f"VTK: {versions['VTK']}" in copied
    dialog.close()
    qtbot.waitUntil(lambda: win.findChild(AboutDialog) is None, timeout=2000)  # deleted on close
    win.close()
