"""First run: the welcome page's actions, the guided tour over the panels and Help → User guide."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QFileDialog

pytestmark = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="VTK needs an X display: run under xvfb-run")

GOOD = Path(__file__).resolve().parents[1] / "data" / "good"


def menu_action(window, menu: str, text: str):
    for top in window.menuBar().actions():
        if top.text().replace("&", "") == menu:
            for action in top.menu().actions():
                if action.text().replace("&", "") == text:
                    return action
    raise AssertionError(f"no {menu} → {text}")


def test_first_launch_shows_the_page_once(qtbot, window, settings):
    from crystal_studio.gui.welcome import WelcomePage, show_at_startup

    page = show_at_startup(window)
    assert isinstance(page, WelcomePage) and page.isVisible()
    page.close()
    assert show_at_startup(window) is None  # not the first launch any more
    again = menu_action(window, "Help", "Welcome")
    again.trigger()
    page = window.findChildren(WelcomePage)[-1]
    assert page.isVisible()
    page.startup_box.setChecked(True)  # "show this page when Crystal Studio starts"
    page.close()
    assert show_at_startup(window) is not None


def test_open_builtin_from_the_page(qtbot, window, isolated_home):
    from crystal_studio.store.builtin import BUILTIN_DATASET, builtin_project_path
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    builtin = Project.create(builtin_project_path())  # a small stand-in, so the test need not import 2,685 rows
    import_paths(builtin, sorted(GOOD.iterdir()), BUILTIN_DATASET)
    builtin.close()
    page = window.show_welcome()
    qtbot.mouseClick(page.builtin_button, Qt.MouseButton.LeftButton)
    assert not page.isVisible()
    qtbot.waitUntil(lambda: window.project.path == builtin_project_path(), timeout=60000)
    assert window.project.dataset_names() == [BUILTIN_DATASET]
    qtbot.waitUntil(lambda: len(window.training_panel.project.dataset_names()) == 1, timeout=10000)


def test_create_new_project_from_the_page(qtbot, window, tmp_path, monkeypatch):
    target = tmp_path / "fresh"
    answers = iter([("", ""), (str(target), "")])  # first cancelled, then a name without the suffix
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *args, **kwargs: next(answers)))
    page = window.show_welcome()
    qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)
    assert page.isVisible()  # cancelled: the page stays
    qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)
    assert not page.isVisible()
    qtbot.waitUntil(lambda: window.project.path.name == "fresh.sqlite", timeout=10000)
    assert window.project.dataset_names() == []


def test_recent_list_opens_a_recent_project(qtbot, window, settings, tmp_path):
    from crystal_studio.store.project import Project

    other = Project.create(tmp_path / "other.sqlite")
    other.close()
    window._remember(other.path)
    missing = tmp_path / "gone.sqlite"
    settings.setValue("project/recent", window.recent_projects() + [str(missing)])
    window.open_project(window.project.path)  # back to p.sqlite: now first in the list
    qtbot.waitUntil(lambda: window.recent_projects()[0].endswith("p.sqlite"), timeout=10000)

    page = window.show_welcome()
    items = [page.recent_list.item(i) for i in range(page.recent_list.count())]
    paths = [item.data(Qt.ItemDataRole.UserRole) for item in items]
    assert [Path(p).name for p in paths] == ["p.sqlite", "other.sqlite", "gone.sqlite"]
    assert not items[2].flags() & Qt.ItemFlag.ItemIsEnabled and "(missing)" in items[2].text()
    page.recent_list.setCurrentItem(items[2])
    assert not page.recent_open_button.isEnabled()
    page.recent_list.setCurrentItem(items[1])
    assert page.recent_open_button.isEnabled()
    qtbot.mouseClick(page.recent_open_button, Qt.MouseButton.LeftButton)
    assert not page.isVisible()
    qtbot.waitUntil(lambda: window.project.path.name == "other.sqlite", timeout=10000)


def test_import_from_the_page_opens_the_import_dialog(qtbot, window):
    page = window.show_welcome()
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    dialog = window.last_import_dialog
    assert dialog is not None and dialog.isVisible() and not page.isVisible()
    dialog.reject()


def test_device_statement_says_plainly_where_jobs_run(qtbot, window):
    from crystal_studio.gui.welcome import device_statement

    cpu = {"cuda": False, "mps": False, "gpus": [], "cpu_threads": 2}
    text = device_statement(cpu, "auto")
    assert text.startswith("Compute device: CPU only (no GPU was found)")
    assert "2 PyTorch threads" in text and "slower than on a GPU" in text
    gpu = {"cuda": True, "mps": False, "gpus": ["NVIDIA H200"], "cpu_threads": 16}
    assert device_statement(gpu, "auto") == ("Compute device: GPU — NVIDIA H200. Training, optimization and "
                                            "CHGNet relaxation run on it.")
    assert "although a GPU (NVIDIA H200) is available" in device_statement(gpu, "cpu")
    assert "MPS" in device_statement({**cpu, "mps": True}, "auto")

    page = window.show_welcome()  # the page asks torch in the background and says what it found
    qtbot.waitUntil(lambda: window.devices is not None, timeout=60000)
    assert page.device_label.text() == device_statement(window.devices, window.compute_device())
    assert "detecting" not in page.device_label.text()


def _rect(window, widget) -> QRect:
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def test_tour_walks_the_session_and_frames_each_panel(qtbot, window):
    cands = window.candidates_panel
    expected = [  # (title, dock in front, framed widgets, central tab)
        ("Import", "Datasets", [window.docks["Datasets"]], None),
        ("Train", "Training", [window.docks["Training"]], None),
        ("Target", "Targets", [window.docks["Targets"]], None),
        ("Optimize", "Optimization", [window.docks["Optimization"]], None),
        ("Inspect", "Candidates", [cands.table, window.viewer], window.viewer),
        ("Relax", "Candidates", [cands.relax_button, cands.fmax_spin, cands.relax_steps_spin], None),
        ("Export", "Candidates", [cands.format_combo, cands.export_relaxed_box, cands.export_selected_button,
                                  cands.export_success_button], None),
    ]
    window.tabs.setCurrentWidget(window.compare)
    tour = menu_action(window, "Help", "Take the Tour")
    tour.trigger()
    tour = window.tour
    left_docks = ("Datasets", "Training", "Targets", "Optimization", "Candidates", "Generate")
    for index, (title, dock, widgets, tab) in enumerate(expected):
        qtbot.wait(20)  # the deferred placement
        assert tour.active and tour.index == index and tour.step.title == title
        assert title in tour.callout.title_label.text() and tour.callout.text_label.text()
        assert not window.docks[dock].visibleRegion().isEmpty()  # raised above the docks it is tabbed with
        for other in left_docks:
            if other != dock:
                assert window.docks[other].visibleRegion().isEmpty(), (title, other)
        rects = [_rect(window, w) for w in widgets]
        assert tour.framed_rects() == rects
        assert all(r.isValid() and window.rect().contains(r.center()) for r in rects)
        for frame, rect in zip(tour.frames, rects, strict=False):  # a ring just outside the widget, not over it
            assert frame.geometry() == rect.adjusted(-4, -4, 4, 4) and not frame.mask().contains(rect.center())
        callout = tour.callout.geometry()
        assert window.rect().contains(callout)
        if tab is not None:
            assert window.tabs.currentWidget() is tab
        assert tour.callout.back_button.isEnabled() == (index > 0)
        if index == 2:  # Back returns to the previous stop, Next comes back
            qtbot.mouseClick(tour.callout.back_button, Qt.MouseButton.LeftButton)
            assert tour.index == 1 and not window.docks["Training"].visibleRegion().isEmpty()
            qtbot.mouseClick(tour.callout.next_button, Qt.MouseButton.LeftButton)
            assert tour.index == 2
        qtbot.mouseClick(tour.callout.next_button, Qt.MouseButton.LeftButton)
    assert not tour.active and not any(frame.isVisible() for frame in tour.frames)


def test_tour_close_ends_it(qtbot, window):
    tour = window.start_tour()
    assert tour.active
    qtbot.mouseClick(tour.callout.close_button, Qt.MouseButton.LeftButton)
    assert not tour.active and not any(frame.isVisible() for frame in tour.frames)


def test_user_guide_opens_with_its_text_and_images(qtbot, window):
    from crystal_studio.gui.user_guide import UserGuideDialog, user_guide_path

    menu_action(window, "Help", "User Guide").trigger()
    dialogs = window.findChildren(UserGuideDialog)
    assert dialogs and dialogs[-1].isVisible()
    dialog = dialogs[-1]
    text = dialog.browser.toPlainText()
    assert "Crystal Studio user guide" in text
    for step in ("Import", "Train", "Target", "Optimize", "Inspect", "Relax", "Export"):
        assert re.search(rf"\b{step}", text), step
    source = user_guide_path().read_text(encoding="utf-8")
    referenced = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", source)
    assert len(referenced) >= 7
    assert dialog.image_names() == referenced
    for name in referenced:
        image = dialog.image(name)
        assert image is not None and not image.isNull(), name
        assert image.width() > 100 and image.height() > 100, name
    dialog.close()


def test_guide_is_found_in_the_frozen_bundle(monkeypatch, tmp_path):
    from crystal_studio.gui.user_guide import docs_dir, user_guide_path

    assert user_guide_path().is_file()  # from source: docs/ beside the package
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert docs_dir() == tmp_path / "docs" and user_guide_path() == tmp_path / "docs" / "user-guide.md"


def test_missing_guide_says_where_it_looked(qtbot, tmp_path):
    from crystal_studio.gui.user_guide import UserGuideDialog

    dialog = UserGuideDialog(tmp_path / "nowhere.md")
    qtbot.addWidget(dialog)
    assert "User guide not found" in dialog.browser.toPlainText() and "nowhere.md" in dialog.browser.toPlainText()
