"""The main window on a temporary project: title, panels, menus, settings, drag-and-drop, jobs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="VTK needs an X display: run under xvfb-run")

GOOD = Path(__file__).resolve().parents[1] / "data" / "good"


@pytest.fixture
def window(window, qtbot):
    """conftest's window, with the datasets table filled (the 9 good structures)."""
    qtbot.waitUntil(lambda: window.datasets_panel.model.rowCount() == 9, timeout=10000)
    return window


def test_window_opens_project_with_panels_and_menus(window):
    assert window.windowTitle() == "Crystal Studio — p"
    assert set(window.docks) >= {"Datasets", "Training", "Targets", "Optimization", "Candidates", "Structure", "Plots"}
    from crystal_studio.gui.training_panel import TrainingPanel

    assert isinstance(window.panels["Training"], TrainingPanel)
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "View", "Settings", "Help"]
    file_items = [a.text().replace("&", "") for a in window.menuBar().actions()[0].menu().actions() if a.text()]
    for item in ("New Project…", "Open Project…", "Open Recent", "Import…", "Export…", "Quit"):
        assert item in file_items
    assert any("Ctrl+I" in key for _, key in window.shortcut_lines())


def test_selecting_a_row_shows_structure_and_details(qtbot, window):
    panel = window.datasets_panel
    qtbot.waitUntil(lambda: panel.model.row_data(1) is not None, timeout=5000)
    panel.select_rows([1])  # SrTiO3
    assert window.viewer.structure is not None
    assert window.viewer.atom_count() == 15  # 5 sites + periodic images on faces, edges, corners
    assert "SrTiO3" in window.details.toPlainText()
    assert "Pm-3m" in window.details.toPlainText()


def test_settings_persist_recent_projects_and_layout(qtbot, window, settings):
    window.docks["Plots"].hide()
    window.set_compute_device("cpu")
    window.close()
    assert settings.value("compute/device") == "cpu"
    recent = window.recent_projects()
    assert recent and Path(recent[0]).name == "p.sqlite"
    from crystal_studio.gui.main_window import MainWindow

    again = MainWindow(settings=settings, open_default=False)
    qtbot.addWidget(again)
    assert again.docks["Plots"].isHidden()
    assert again.device_actions["cpu"].isChecked()
    again.reset_layout()
    assert not again.docks["Plots"].isHidden()
    again.close()


def test_drop_files_opens_import_dialog_and_imports(qtbot, window):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(GOOD / "GaN_hex.vasp"))])
    event = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    qtbot.waitUntil(lambda: window.last_import_dialog is not None, timeout=3000)
    dialog = window.last_import_dialog
    assert dialog.paths() == [str(GOOD / "GaN_hex.vasp")]
    dialog.dataset_combo.setCurrentText("dropped")
    with qtbot.waitSignal(dialog.imported, timeout=10000):
        dialog.import_button.click()
    qtbot.waitUntil(lambda: "dropped" in [s.name for s in window.datasets_panel.summaries], timeout=5000)
    dialog.close()


def test_every_dataset_list_offers_an_imported_dataset_and_keeps_its_choice(qtbot, window):
    combos = {"training": window.training_panel.dataset_combo, "optimization": window.optimization_panel.dataset_combo,
              "hull": window.generate_panel.hull_dataset_combo}
    for combo in combos.values():
        combo.setCurrentIndex(combo.findData("good"))
    dialog = window.import_dialog([str(GOOD / "GaN_hex.vasp")])
    dialog.dataset_combo.setCurrentText("added")
    with qtbot.waitSignal(dialog.imported, timeout=10000):
        dialog.import_button.click()
    for where, combo in combos.items():
        offered = [combo.itemData(i) for i in range(combo.count())]
        assert "added" in offered, where
        assert combo.currentData() == "good", where  # the user's choice survives the refresh
    dialog.close()


def test_running_job_appears_in_status_bar(qtbot, window):
    import time

    from crystal_studio.core.progress import ProgressEvent
    from crystal_studio.gui.jobs import JOB_LABEL_WIDTH

    message = "epoch 3: validation loss 0.1234 on band_gap and formation_energy_per_atom " * 3

    def work(progress, cancel):
        progress(ProgressEvent(3, 10, message))
        while True:
            cancel.check()
            time.sleep(0.01)

    job = window.jobs.start("Waiting", work)
    assert job in window.jobs_status.rows and window.jobs_status.isVisible()
    row = window.jobs_status.rows[job]
    qtbot.waitUntil(lambda: row.label.toolTip() == f"Waiting: {message}", timeout=2000)
    assert row.label.width() <= JOB_LABEL_WIDTH and row.label.text().endswith("…")  # elided, never overlapping
    window.statusBar().showMessage("Optimization run #1 finished", 2000)
    qtbot.wait(50)
    free = window.statusBar().width() - window.jobs_status.width()
    assert free >= window.statusBar().fontMetrics().horizontalAdvance("Optimization run #1 finished")
    with qtbot.waitSignal(job.done, timeout=2000):
        window.jobs_status.rows[job].cancel_button.click()
    assert not window.jobs_status.isVisible()


def test_builtin_project_failure_is_a_dialog_not_a_crash(qtbot, settings, monkeypatch):
    from crystal_studio.gui import main_window
    from crystal_studio.store import builtin

    monkeypatch.setattr(builtin, "BUILTIN_DATA", Path("/nonexistent/builtin.csv.gz"))
    win = main_window.MainWindow(settings=settings)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.jobs.last_error_dialog is not None, timeout=10000)
    assert "built-in dataset is missing" in win.jobs.last_error_dialog.text()
    assert win.project is None
    win.jobs.last_error_dialog.close()
    win.close()


def test_plots_dock_opens_tall_and_resizes_whichever_panel_is_raised(qtbot, window):
    plots = window.docks["Plots"]
    window.resize(1280, 1000)
    qtbot.waitUntil(lambda: plots.height() >= 200, timeout=3000)
    for name in ("Optimization", "Training", "Generate"):  # the tallest forms scroll instead of pinning the dock
        window.docks[name].raise_()
        window.resizeDocks([plots], [450], Qt.Orientation.Vertical)
        qtbot.waitUntil(lambda: plots.height() >= 400, timeout=3000)
        window.resizeDocks([plots], [220], Qt.Orientation.Vertical)
        qtbot.waitUntil(lambda: plots.height() <= 260, timeout=3000)


def test_xrd_tab_simulates_the_selected_structures_powder_pattern(qtbot, window):
    import numpy as np

    panel = window.datasets_panel
    qtbot.waitUntil(lambda: panel.model.row_data(1) is not None, timeout=5000)
    window.tabs.setCurrentWidget(window.xrd_view)
    panel.select_rows([1])  # SrTiO3, a = 3.905 Å
    xrd = window.xrd_view
    qtbot.waitUntil(lambda: xrd.peaks is not None, timeout=20000)
    assert window.tabs.currentWidget() is xrd  # selecting keeps the XRD tab in front
    two_theta, intensity, labels = xrd.peaks
    strongest = int(np.argmax(intensity))
    expected = 2 * np.degrees(np.arcsin(1.54184 / (2 * 3.905 / np.sqrt(2))))  # Bragg (110), Cu Kα
    assert two_theta[strongest] == pytest.approx(expected, abs=0.05) and labels[strongest] == "110"
    xrd.wavelength_combo.setCurrentText("MoKa")  # a shorter wavelength moves every peak to lower 2θ
    qtbot.waitUntil(lambda: xrd.peaks is not None, timeout=20000)
    assert xrd.peaks[0][int(np.argmax(xrd.peaks[1]))] < expected / 2
    assert "MoKa" in xrd.status.text() and "reflections" in xrd.status.text()
