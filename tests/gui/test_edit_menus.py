"""Context menus that rename and delete: datasets in the Datasets panel, runs and candidates in the
Candidates panel, driven through the QActions a user triggers, with the questions answered by patching
:mod:`crystal_studio.gui.edit_dialogs`; and the window re-reading every list afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crystal_studio.gui import edit_dialogs
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import StructureQuery

GOOD = Path(__file__).resolve().parents[1] / "data" / "good"


class Answers:
    """Stands in for the dialogs: records each question and gives the next prepared answer."""

    def __init__(self, monkeypatch):
        self.names: list[str | None] = []
        self.confirms: list[bool] = []
        self.asked: list[tuple[str, str, str]] = []  # (kind, title, text)
        monkeypatch.setattr(edit_dialogs, "ask_name", self._ask_name)
        monkeypatch.setattr(edit_dialogs, "confirm_delete", self._confirm)

    def _ask_name(self, _parent, title, label, text=""):
        self.asked.append(("name", title, f"{label} [{text}]"))
        return self.names.pop(0)

    def _confirm(self, _parent, title, text, details=""):
        self.asked.append(("confirm", title, f"{text} {details}"))
        return self.confirms.pop(0)


@pytest.fixture
def answers(monkeypatch):
    return Answers(monkeypatch)


def _item(panel, name):
    for i in range(panel.dataset_list.topLevelItemCount()):
        item = panel.dataset_list.topLevelItem(i)
        if item.text(0) == name:
            return item
    return None


def _names(panel):
    return [panel.dataset_list.topLevelItem(i).text(0) for i in range(panel.dataset_list.topLevelItemCount())]


@pytest.fixture
def datasets_panel(qtbot, project):
    from crystal_studio.gui.datasets_panel import DatasetsPanel

    project.add_records("other", [])  # an empty second dataset
    panel = DatasetsPanel()
    qtbot.addWidget(panel)
    panel.set_project(project)
    yield panel
    panel.set_project(None)


def test_dataset_context_menu_renames_and_deletes_after_confirming(qtbot, project, datasets_panel, answers):
    panel = datasets_panel
    assert not panel.rename_dataset_action.isEnabled()  # "All datasets" is no dataset
    item = _item(panel, "good")
    menu = panel.show_dataset_menu(panel.dataset_list.visualItemRect(item).center())
    assert menu is not None and panel.current_dataset() == "good"
    assert [a.text() for a in menu.actions()] == ["Rename…", "Delete…"]
    assert all(a.isEnabled() for a in menu.actions())
    menu.close()

    answers.names = ["other"]  # taken: refused in a dialog, nothing renamed
    panel.rename_dataset_action.trigger()
    assert "has a dataset named 'other' already" in panel.last_error_dialog.text()
    panel.last_error_dialog.close()
    assert project.dataset_names() == ["good", "other"]
    answers.names = [None]  # cancelled
    panel.rename_dataset_action.trigger()
    answers.names = ["  better "]
    with qtbot.waitSignal(panel.datasets_changed, timeout=2000) as renamed:
        panel.rename_dataset_action.trigger()
    assert renamed.args == ["better"]
    assert project.dataset_names() == ["better", "other"]
    assert _names(panel) == ["All datasets", "better", "other"] and panel.current_dataset() == "better"
    assert answers.asked[-1] == ("name", "Rename dataset", "New name of dataset “good”: [good]")

    answers.confirms = [False]
    panel.delete_dataset_action.trigger()
    kind, title, text = answers.asked[-1]
    assert (kind, title) == ("confirm", "Delete dataset")
    assert "Delete dataset “better” with 9 structures, " in text and "property values" in text
    assert project.count() == 9  # not confirmed: nothing deleted
    answers.confirms = [True]
    with qtbot.waitSignal(panel.datasets_changed, timeout=2000) as deleted:
        panel.delete_dataset_action.trigger()
    assert deleted.args == [""]
    assert project.dataset_names() == ["other"] and project.count() == 0
    assert _names(panel) == ["All datasets", "other"] and panel.current_dataset() is None
    assert not panel.delete_dataset_action.isEnabled()
    assert panel.show_dataset_menu(panel.dataset_list.visualItemRect(_item(panel, "All datasets")).center()) is None


def test_a_dataset_a_live_run_uses_cannot_be_deleted(qtbot, project, datasets_panel, answers):
    model_store.create_run(project, "polymorphs", {"dataset": "good"}, 0, "cpu", {})  # running, in this process
    datasets_panel.select_dataset("good")
    answers.confirms = [True]
    datasets_panel.delete_dataset_action.trigger()
    assert "run 1 (polymorphs) is using it" in datasets_panel.last_error_dialog.text()
    datasets_panel.last_error_dialog.close()
    assert project.count() == 9


@pytest.fixture
def runs(project):
    """Two optimization runs with candidates from the good structures (3 and 2) and a live one."""
    structures = [s for _, s in project.iter_structures(StructureQuery(dataset="good"))]
    ids = []
    for n in (3, 2):
        run_id = model_store.create_run(project, "optimization", {"method": "smoacs", "spec": {"name": "gap"}},
                                        0, "cpu", {})
        model_store.record_metrics(project, run_id, 1, {"loss": 1.0})
        candidate_store.add_candidates(
            project, run_id, [(s, {"formula": s.composition.reduced_formula, "success": True}) for s in structures[:n]],
            complete_run="done")
        ids.append(run_id)
    live = model_store.create_run(project, "optimization", {"method": "smoacs"}, 0, "cpu", {})
    return {"first": ids[0], "second": ids[1], "live": live}


@pytest.fixture
def candidates_panel(qtbot, project):
    from crystal_studio.gui.candidates_panel import CandidatesPanel
    from crystal_studio.gui.jobs import JobManager

    panel = CandidatesPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    return panel


def test_run_menu_renames_and_deletes_runs(qtbot, project, runs, candidates_panel, answers):
    panel = candidates_panel
    panel.set_run(runs["first"])
    assert panel.run_menu_button.menu() is panel.run_menu
    assert [a.text() for a in panel.run_menu.actions()] == ["Rename run…", "Delete run…"]

    answers.names = ["wide search"]
    with qtbot.waitSignal(panel.runs_changed, timeout=2000):
        panel.rename_run_action.trigger()
    assert model_store.get_run(project, runs["first"]).name == "wide search"
    assert panel.runs_combo.currentText().startswith(f"#{runs['first']} “wide search” smoacs · gap · completed")

    answers.confirms = [False]
    panel.delete_run_action.trigger()
    assert "with 1 metric value, 3 candidates and 0 sampled formulas?" in answers.asked[-1][2]
    assert f"run {runs['first']} (optimization, completed, “wide search”)" in answers.asked[-1][2]
    assert len(model_store.list_runs(project)) == 3
    answers.confirms = [True]
    with qtbot.waitSignal(panel.runs_changed, timeout=2000):
        panel.delete_run_action.trigger()
    assert [r.id for r in model_store.list_runs(project)] == [runs["live"], runs["second"]]
    assert panel.runs_combo.findData(runs["first"]) == -1
    assert panel.run_id == runs["live"]  # the newest remaining run is shown
    assert "Deleted run" in panel.status_label.text()

    answers.confirms = [True]  # the live run is refused
    panel.delete_run_action.trigger()
    assert "is running in process" in panel.last_error_dialog.text()
    panel.last_error_dialog.close()
    assert panel.runs_combo.findData(runs["live"]) >= 0


def test_candidate_menu_edits_notes_and_deletes_the_selection(qtbot, project, runs, candidates_panel, answers):
    panel = candidates_panel
    panel.set_run(runs["first"])
    ids = panel.visible_ids()
    assert len(ids) == 3
    row = panel.proxy.mapFromSource(panel.model.index(panel.model.row_of(ids[0]), 1))
    menu = panel.show_candidate_menu(panel.table.visualRect(row).center())  # selects the row under the cursor
    assert panel.selected_ids() == [ids[0]]
    assert [a.text() for a in menu.actions() if a.text()] == ["★ Star / unstar", "Edit note…",
                                                            "Delete selected candidates…"]
    assert panel.edit_note_action.isEnabled() and panel.delete_candidates_action.isEnabled()
    menu.close()

    answers.names = ["promising"]
    panel.edit_note_action.trigger()
    assert candidate_store.get_candidate(project, ids[0]).notes == "promising"
    assert panel.model.data(panel.model.index(panel.model.row_of(ids[0]), panel.model.column_index("Notes"))) \
        == "promising"
    panel.star_action.trigger()
    assert candidate_store.get_candidate(project, ids[0]).flag == "star"

    panel.select_ids(ids[:2])
    assert not panel.edit_note_action.isEnabled()  # one note at a time
    answers.confirms = [True]
    panel.delete_candidates_action.trigger()
    assert answers.asked[-1][2].startswith("Delete 2 candidates (")
    assert [c.id for c in candidate_store.list_candidates(project, runs["first"])] == ids[2:]
    assert panel.visible_ids() == ids[2:]
    assert f"#{runs['first']}" in panel.runs_combo.currentText() and "1 candidate" in panel.runs_combo.currentText()


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the main window's VTK view needs an X display")
def test_window_lists_follow_a_renamed_and_a_deleted_dataset(qtbot, project, settings, answers):
    from crystal_studio.gui.main_window import MainWindow

    project.add_records("other", [])
    path = project.path
    project.close()
    win = MainWindow(path, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.project is not None, timeout=10000)
    panel = win.datasets_panel
    panel.select_dataset("good")
    answers.names = ["renamed"]
    panel.rename_dataset_action.trigger()
    combo = win.training_panel.dataset_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["renamed", "other"]
    assert panel.current_dataset() == "renamed"
    answers.confirms = [True]
    panel.delete_dataset_action.trigger()
    assert [combo.itemData(i) for i in range(combo.count())] == ["other"]
    hull = win.generate_panel.hull_dataset_combo
    assert [hull.itemData(i) for i in range(hull.count())] == ["other"]
    win.close()
