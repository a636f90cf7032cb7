"""The Targets, Optimization and Candidates panels driven as a user would, on a temporary project with a
tiny untrained predictor (fast; the numbers it predicts are meaningless, the plumbing is what is tested)."""

from __future__ import annotations

import os

import pytest

from crystal_studio.core.paths import RESOURCES

needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"),
                                   reason="VTK needs an X display: run under xvfb-run")
GAP_SPEC = RESOURCES / "specs" / "smoacs_perovskite_gap_2.5eV.json"


@pytest.fixture
def model_id(project) -> int:
    """A tiny untrained band gap + formation energy predictor stored in the project."""
    import torch

    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor

    torch.manual_seed(0)
    predictor = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                                 ["band_gap", "formation_energy_per_atom"], members=2)
    predictor.set_normalization([1.0, -1.0], [1.0, 1.0])
    return save_predictor(project, predictor, "tiny", metrics={})


def test_spec_editor_validates_live_and_loads_examples(qtbot, settings, tmp_path):
    from crystal_studio.design.spec import load_spec
    from crystal_studio.gui.targets_panel import TargetsPanel, example_specs

    panel = TargetsPanel(settings=settings)
    qtbot.addWidget(panel)
    names = [panel.example_combo.itemText(i) for i in range(1, panel.example_combo.count())]
    assert len(names) == len(example_specs()) >= 4
    index = names.index("Perovskite, bulk modulus 160 ± 10 GPa (built-in dataset)") + 1
    panel.example_combo.activated.emit(index)  # what choosing it in the combo does
    assert panel.spec is not None and panel.spec.objectives[0].property == "bulk_modulus"
    assert "bulk_modulus = 160 ± 10 GPa" in panel.summary_label.text()
    assert not panel.problems_label.isVisible()

    panel.load(GAP_SPEC)
    assert panel.objectives.rowCount() == 2
    with qtbot.waitSignal(panel.spec_changed, timeout=2000) as changed:
        panel.set_objective_text(0, "value", "abc")  # typed into the table; validated after a short pause
    assert changed.args == [None] and panel.spec is None
    assert any("objectives[0].value: expected a number, got 'abc'" in p for p in panel.problems)
    assert "expected a number" in panel.problems_label.text()
    assert panel.objectives.item(0, 2).background().color().red() == 255  # the bad cell is marked
    assert not panel.save_button.isEnabled()

    panel.set_objective_text(0, "value", "2.5")
    panel.set_objective_text(0, "tolerance", "0")
    panel.forbidden_edit.setText("Pb Xx")
    panel.validate()
    assert any("a target needs a tolerance > 0" in p for p in panel.problems)
    assert any("unknown element(s) 'Xx'" in p for p in panel.problems)

    panel.set_objective_text(0, "tolerance", "0.3")
    panel.forbidden_edit.setText("Pb")
    panel.tf_enabled.setChecked(False)
    spec = panel.validate()
    assert spec is not None and not panel.problems
    assert "band_gap = 2.5 ± 0.3 eV" in panel.summary_label.text() and "avoid Pb" in panel.summary_label.text()
    assert "tolerance_factor" not in spec.criteria_names()

    out = tmp_path / "mine.json"
    panel.save(out)
    assert load_spec(out).to_dict() == spec.to_dict()
    again = TargetsPanel(settings=settings)  # remembers the last file saved
    qtbot.addWidget(again)
    assert again.spec.to_dict() == spec.to_dict()


@needs_display
def test_optimization_from_the_panel_then_candidates(qtbot, project, model_id, settings, tmp_path):
    from crystal_studio.gui.main_window import MainWindow
    from crystal_studio.store.candidates import list_candidates

    project.close()
    win = MainWindow(project.path, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.project is not None, timeout=10000)
    win.targets_panel.load(GAP_SPEC)
    opt = win.optimization_panel
    win.docks["Optimization"].raise_()
    assert opt.spec is not None and opt.spec.name.startswith("Perovskite, band gap 2.5")
    assert opt.selected_model_ids() == [model_id]  # the model predicting the spec's properties is preselected
    opt.set_method("smoacs")
    opt.candidates_spin.setValue(4)
    opt.steps_spin.setValue(5)
    opt.seed_spin.setValue(1)
    assert opt.start_button.isEnabled()

    with qtbot.waitSignal(opt.run_finished, timeout=30000) as finished:
        qtbot.mouseClick(opt.start_button, qtbot_button())
        assert opt.running and opt.cancel_button.isEnabled() and not opt.start_button.isEnabled()
    run_id = finished.args[0]
    assert opt.reports_seen == 5
    names = opt.plots.curve_names()
    for name in ("loss/best", "loss/mean", "loss/band_gap_target", "rate/band_gap_target",
                 "rate/formation_energy_per_atom_below"):
        assert name in names, names
    assert list(opt.plots.curves["loss/best"].xData) == [1, 2, 3, 4, 5]
    assert "temperature" not in names  # stored, not plotted
    assert opt.summary_label.isVisible() and f"Run #{run_id}" in opt.summary_label.text()
    assert "band_gap_target" in opt.summary_label.text()
    assert opt.runs_combo.currentData() == run_id and not opt.running

    cands = win.candidates_panel
    assert cands.run_id == run_id and cands.model.rowCount() == 4
    headers = [c.header for c in cands.model.columns]
    for header in ("★", "Formula", "Success", "band_gap_target", "charge_neutral", "band_gap (eV)",
                   "Space group", "t", "Valid", "Unique", "Novel", "Notes"):
        assert header in headers, headers

    # sorting on a numeric column sorts numbers
    col = headers.index("band_gap (eV)")
    cands.table.sortByColumn(col, qt().SortOrder.AscendingOrder)
    gaps = [cands.record(i).evaluation["properties"]["band_gap"] for i in cands.visible_ids()]
    assert gaps == sorted(gaps)

    # a selected row appears in the 3D viewer and the detail pane
    first = cands.visible_ids()[0]
    cands.select_ids([first])
    assert win.viewer.structure is not None and len(win.viewer.structure) == 5
    assert cands.record(first).formula in win.details.toPlainText()

    # compare two
    cands.select_ids(cands.visible_ids()[:2])
    cands.compare_button.click()
    assert win.tabs.currentWidget() is win.compare and len(win.compare.shown_viewers()) == 2

    # star and notes are stored at once
    cands.set_star([first], True)
    cands.set_notes(first, "promising")
    stored = {r.id: r for r in list_candidates(win.project, run_id)}
    assert stored[first].flag == "star" and stored[first].notes == "promising"
    cands.starred_box.setChecked(True)
    assert cands.visible_ids() == [first]
    cands.starred_box.setChecked(False)

    # export the selection
    cands.select_ids([first])
    job = cands.export_to(tmp_path / "out", "poscar", selected=True)
    qtbot.waitUntil(lambda: not job.running, timeout=10000)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [f"{cands.record(first).formula}_c{first}.vasp"]

    # a past run reopens with its stored curves
    opt.plots.clear()
    opt.open_run(run_id)
    assert "loss/best" in opt.plots.curve_names() and len(opt.plots.curves["loss/best"].xData) == 5
    win.close()


def test_candidate_table_filters_and_flags_persist(qtbot, project, model_id, tmp_path):
    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.spec import load_spec
    from crystal_studio.gui.candidates_panel import CandidatesPanel
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.store.candidates import list_candidates

    result = run_optimization(project, load_spec(GAP_SPEC), "random", [model_id], 6, 2, seed=2, device="cpu")
    panel = CandidatesPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    assert panel.run_id == result.run_id and panel.model.rowCount() == 6
    n_success = sum(r.success for r in list_candidates(project, result.run_id))
    panel.success_box.setChecked(True)
    assert panel.proxy.rowCount() == n_success
    assert all(panel.record(i).success for i in panel.visible_ids())
    panel.success_box.setChecked(False)
    assert panel.proxy.rowCount() == 6

    # pass/fail colours per criterion
    col = [c.header for c in panel.model.columns].index("charge_neutral")
    assert panel.proxy.index(0, col).data(qt().ItemDataRole.BackgroundRole).green() > 200

    panel.formula_edit.setText(panel.model.records[0].formula)
    assert panel.proxy.rowCount() >= 1
    panel.formula_edit.clear()

    # star through the check box of the ★ column and notes through the editor, as the user would
    target = panel.model.records[2].id
    star_col = panel.model.column_index("★")
    notes_col = panel.model.column_index("Notes")
    def row():  # the table re-sorts as values change
        return panel.proxy.mapFromSource(panel.model.index(panel.model.row_of(target), 0)).row()

    assert panel.proxy.setData(panel.proxy.index(row(), star_col), qt().CheckState.Checked.value,
                               qt().ItemDataRole.CheckStateRole)
    assert panel.proxy.setData(panel.proxy.index(row(), notes_col), "check the octahedra")
    panel.set_project(None)
    panel.set_project(project)  # read back from the store
    record = panel.record(target)
    assert record.flag == "star" and record.notes == "check the octahedra"
    assert panel.proxy.index(row(), star_col).data(qt().ItemDataRole.CheckStateRole) == qt().CheckState.Checked
    panel.select_ids([target])
    panel.toggle_star_selected()
    assert list_candidates(project, result.run_id)[2].flag == ""

    # export the selection (export_candidates with candidate_ids), relaxed falling back to the candidate
    picked = [panel.model.records[1].id, panel.model.records[4].id]
    panel.select_ids(picked)
    job = panel.export_to(tmp_path / "sel", "cif", selected=True, relaxed=True)
    qtbot.waitUntil(lambda: not job.running, timeout=10000)
    assert sorted(p.name for p in panel.last_export) == sorted(f"{panel.record(i).formula}_c{i}.cif" for i in picked)
    assert all("_symmetry_space_group_name_H-M   'P 1'" in p.read_text() for p in panel.last_export)
    panel.export_symmetrize_box.setChecked(True)  # the same selection in its space-group setting
    job = panel.export_to(tmp_path / "sym", "cif", selected=True)
    qtbot.waitUntil(lambda: not job.running, timeout=10000)
    assert all("'P 1'" not in p.read_text() for p in panel.last_export)
    panel.format_combo.setCurrentText("POSCAR")
    assert not panel.export_symmetrize_box.isEnabled()  # symmetry is written into CIFs only


def test_live_scatter_shows_candidates_and_the_target_window(qtbot, project, model_id):
    import time

    import pyqtgraph as pg

    from crystal_studio.design.spec import load_spec, spec_from_dict
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.gui.live_plots import REDRAW_INTERVAL_MS
    from crystal_studio.gui.optimization_panel import OptimizationPanel

    panel = OptimizationPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.set_spec(load_spec(GAP_SPEC))  # band_gap = 2.5 ± tol (target), formation energy below a bound
    scatter = panel.scatter
    assert scatter.axes() == ("band_gap", "formation_energy_per_atom")
    assert scatter.properties() == ["band_gap", "formation_energy_per_atom"]
    kinds = sorted(type(item).__name__ for item in scatter.window_items)
    assert kinds == ["InfiniteLine", "LinearRegionItem"]  # a band for the target, a line for the bound
    band = next(i for i in scatter.window_items if isinstance(i, pg.LinearRegionItem))
    gap = panel.spec.objectives[0]
    assert band.getRegion() == pytest.approx((gap.value - gap.tolerance, gap.value + gap.tolerance))

    panel.set_method("smoacs")
    panel.candidates_spin.setValue(4)
    panel.steps_spin.setValue(6)
    relay_push = panel._relay.push

    def slow_push(report):  # the worker waits a little per step, so the 10 Hz redraw runs mid-run
        relay_push(report)
        time.sleep(1.5 * REDRAW_INTERVAL_MS / 1000)

    panel._relay.push = slow_push
    seen = []
    with qtbot.waitSignal(panel.run_finished, timeout=30000) as finished:
        panel.start()
        qtbot.waitUntil(lambda: seen.append(scatter.point_count()) or (panel.running and seen[-1] == 4),
                        timeout=20000)
    assert scatter.step is not None and set(scatter.values) == {"band_gap", "formation_energy_per_atom"}
    assert scatter.point_count() == 4 and scatter.step == 6

    # both axes with a 'target': a rectangle
    data = panel.spec.to_dict()
    data["objectives"][1].update(kind="target", value=-1.0, tolerance=0.5)
    panel.set_spec(spec_from_dict(data))
    assert scatter.point_count() == 4
    [rect] = scatter.window_items
    assert type(rect).__name__ == "QGraphicsRectItem"
    box = rect.rect()
    assert (box.left(), box.right(), box.top(), box.bottom()) == pytest.approx(
        (gap.value - gap.tolerance, gap.value + gap.tolerance, -1.5, -0.5))
    scatter.set_axes("formation_energy_per_atom", "band_gap")
    xs, ys = scatter.points.getData()
    assert list(xs) == scatter.values["formation_energy_per_atom"] and list(ys) == scatter.values["band_gap"]

    # a stored run reopens with its final candidates in the scatter
    scatter.clear()
    panel.open_run(finished.args[0])
    assert scatter.point_count() == 4 and scatter.step is None


def test_relaxation_settings_and_cancel(qtbot, project, model_id, monkeypatch):
    import crystal_studio.design.relaxation as relaxation
    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.spec import load_spec
    from crystal_studio.gui.candidates_panel import CandidatesPanel
    from crystal_studio.gui.jobs import JobManager

    calls = []

    def fake_relax(project_, run_id, candidate_ids=None, device="auto", fmax=0.05, max_steps=300, progress=None,
                   cancel=None, **_):
        calls.append({"ids": candidate_ids, "fmax": fmax, "max_steps": max_steps})
        while not cancel.cancelled:  # stands in for CHGNet: runs until cancelled
            cancel._event.wait(0.01)
        cancel.check()

    monkeypatch.setattr(relaxation, "relax_candidates", fake_relax)
    result = run_optimization(project, load_spec(GAP_SPEC), "random", [model_id], 3, 1, seed=3, device="cpu")
    panel = CandidatesPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    assert not panel.cancel_relax_button.isEnabled()
    target = panel.visible_ids()[0]
    panel.select_ids([target])
    panel.fmax_spin.setValue(0.02)
    panel.relax_steps_spin.setValue(50)
    job = panel.relax_selected()
    assert job is not None and panel.cancel_relax_button.isEnabled() and not panel.relax_button.isEnabled()
    assert not panel.fmax_spin.isEnabled()
    qtbot.waitUntil(lambda: bool(calls), timeout=5000)
    assert calls == [{"ids": [target], "fmax": 0.02, "max_steps": 50}]
    with qtbot.waitSignal(job.cancelled, timeout=5000):
        qtbot.mouseClick(panel.cancel_relax_button, qtbot_button())
    assert job.state == "cancelled" and "cancelled" in panel.status_label.text()
    assert panel.relax_button.isEnabled() and not panel.cancel_relax_button.isEnabled()
    assert panel.run_id == result.run_id


def qt():
    from PySide6.QtCore import Qt

    return Qt


def qtbot_button():
    return qt().MouseButton.LeftButton


def test_settings_table_and_judge_in_the_optimization_panel(qtbot, project, model_id):
    import torch

    from crystal_studio.design.spec import load_spec
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.gui.optimization_panel import OptimizationPanel
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor
    from crystal_studio.store import models as model_store

    torch.manual_seed(1)
    other = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                             ["band_gap", "formation_energy_per_atom"])
    other.set_normalization([1.5, -1.2], [1.0, 1.0])
    judge_id = save_predictor(project, other, "judge", metrics={})
    panel = OptimizationPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.set_spec(load_spec(GAP_SPEC))
    for mid in (model_id, judge_id):
        panel.set_model_checked(mid, mid == model_id)
    offered = [panel.judge_combo.itemData(i) for i in range(panel.judge_combo.count())]
    assert offered == [None, judge_id]  # the optimized model is never offered as its own judge
    panel.set_judge(judge_id)
    panel.set_method("smoacs")
    table = panel.settings_table
    names = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert {"geometry", "lattice_slack", "caution", "mutate_at", "archive_every"} <= set(names)
    row = names.index("archive_every")
    assert "archiving" in table.item(row, 0).toolTip()
    table.item(row, 1).setText("often")
    panel.candidates_spin.setValue(4)
    panel.steps_spin.setValue(4)
    assert panel.start() is None and "'archive_every': expected an integer" in panel.status_label.text()
    table.item(row, 1).setText("2")
    assert table.changed() == {"archive_every": "2"}
    with qtbot.waitSignal(panel.run_finished, timeout=30000) as finished:
        panel.start()
    run_id = finished.args[0]
    parameters = model_store.get_run(project, run_id).parameters
    assert parameters["judge_model"] == judge_id and parameters["config"]["archive_every"] == 2
    text = panel.summary_label.text()
    assert f"judge #{judge_id}" in text and "own model" in text
    assert "judge:" in panel.status_label.text()
    from crystal_studio.gui.candidates_panel import candidate_columns
    from crystal_studio.store.candidates import list_candidates

    records = list_candidates(project, run_id)
    judge_column = next(c for c in candidate_columns(records) if c.header == "Judge")
    assert [judge_column.get(r) for r in records] == [r.evaluation["judge"]["success"] for r in records]
    panel.set_method("random")
    assert "archive_every" not in [table.item(r, 0).text() for r in range(table.rowCount())]
    panel.open_run(run_id)  # reopening restores the method, its settings and the judge
    assert panel.method() == "smoacs" and panel.judge_model() == judge_id
    assert table.changed() == {"archive_every": "2"}


def test_success_after_relaxation_is_the_headline(qtbot, project, model_id, tmp_path):
    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.spec import load_spec
    from crystal_studio.gui.candidates_panel import CandidatesPanel
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.store.candidates import list_candidates, set_relaxation

    result = run_optimization(project, load_spec(GAP_SPEC), "random", [model_id], 6, 2, seed=2, device="cpu")
    records = list_candidates(project, result.run_id)
    records[0].evaluation["success"] = True  # make the first one a success as generated, whatever the tiny model says
    project.db["candidates"].update(records[0].id, {"success": 1})
    for record in records[:3]:  # relaxation blows the cell up: every relaxed candidate fails afterwards
        set_relaxation(project, record.id, record.structure, -1.0,
                       {"success_after": False, "volume_change": 0.6, "converged": True})
    panel = CandidatesPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    headers = [c.header for c in panel.model.columns]
    assert headers[3:5] == ["Success relaxed", "Success as generated"]  # first after ★, id, Formula
    assert "0 of 3 relaxed still successful after relaxation" in panel.count_label.text()
    panel.success_box.setChecked(True)
    survivors = [r for r in list_candidates(project, result.run_id)[3:] if r.success]
    assert panel.proxy.rowCount() == len(survivors)  # the relaxed ✓-as-generated candidate is not shown
    job = panel.export_to(tmp_path / "ok", "cif", selected=False)
    qtbot.waitUntil(lambda: not job.running, timeout=10000)
    assert sorted(p.name for p in panel.last_export) == sorted(f"{r.formula}_c{r.id}.cif" for r in survivors)


def test_a_model_predicting_none_of_a_new_targets_properties_is_unchecked(qtbot, project, model_id):
    from crystal_studio.design.spec import load_spec, spec_from_dict
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.gui.optimization_panel import OptimizationPanel

    panel = OptimizationPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.set_spec(load_spec(GAP_SPEC))
    panel.set_model_checked(model_id)
    assert panel.selected_model_ids() == [model_id] and panel.start_button.isEnabled()
    data = load_spec(GAP_SPEC).to_dict()
    data["objectives"] = [{"property": "bulk_modulus", "kind": "target", "value": 160, "tolerance": 10}]
    panel.set_spec(spec_from_dict(data))  # the user switched the target to a property the model lacks
    assert panel.selected_model_ids() == [] and not panel.start_button.isEnabled()
    assert f"Unchecked model #{model_id}: it predicts none of bulk_modulus" in panel.status_label.text()
    panel.set_spec(load_spec(GAP_SPEC))
    panel.set_model_checked(model_id)
    data["objectives"] = [{"property": "band_gap", "kind": "target", "value": 1.0, "tolerance": 0.2},
                          {"property": "bulk_modulus", "kind": "maximize"}]
    panel.set_spec(spec_from_dict(data))  # still useful for band_gap: kept, greyed with the reason
    assert panel.selected_model_ids() == [model_id]
    assert "lacks bulk_modulus" in panel.models_list.item(0).toolTip()


def test_compare_runs_lists_the_runs_of_one_target_with_own_and_judge_success(qtbot, project, model_id):
    import torch

    from crystal_studio.design.comparison import compare_runs
    from crystal_studio.design.job import run_optimization, run_summary
    from crystal_studio.design.spec import load_spec, spec_from_dict
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.gui.optimization_panel import OptimizationPanel
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor
    from crystal_studio.store import candidates as candidate_store

    torch.manual_seed(2)
    other = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                             ["band_gap", "formation_energy_per_atom"])
    other.set_normalization([2.5, -1.0], [0.5, 0.5])
    judge_id = save_predictor(project, other, "judge", metrics={})
    spec = load_spec(GAP_SPEC)
    judged = run_optimization(project, spec, "random", [model_id], 6, 1, seed=1, device="cpu", judge_model=judge_id)
    plain = run_optimization(project, spec, "smoacs", [model_id], 4, 2, seed=2, device="cpu")
    elsewhere = spec_from_dict({**spec.to_dict(), "name": "another target"})
    run_optimization(project, elsewhere, "random", [model_id], 3, 1, seed=3, device="cpu")
    [first] = candidate_store.list_candidates(project, judged.run_id)[:1]
    relaxation = {"success_after": True, "judge_after": {"success": False}}
    candidate_store.set_relaxation(project, first.id, first.structure, -1.0, relaxation)  # as if relaxed

    rows = {r.run_id: r for r in compare_runs(project)}
    summary = run_summary(project, judged.run_id)
    row = rows[judged.run_id]
    assert (row.method, row.n_candidates, row.relaxed) == ("random", 6, 1)
    assert row.success_own == summary["success_rate"] and row.success_judge == summary["judge"]["success_rate"]
    assert (row.success_own_relaxed, row.success_judge_relaxed) == (1.0, 0.0)
    assert rows[plain.run_id].success_judge is None and rows[plain.run_id].seconds >= 0

    panel = OptimizationPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.runs_combo.setCurrentIndex(panel.runs_combo.findData(plain.run_id))
    dialog = panel.compare_runs_dialog()
    qtbot.addWidget(dialog)
    assert [r.run_id for r in dialog.shown_runs()] == [plain.run_id, judged.run_id]  # same target only, newest first
    assert dialog.table.rowCount() == 2 and dialog.spec_combo.count() == 2
    texts = {dialog.cell_text(k, "Run"): k for k in range(2)}
    k = texts[f"#{judged.run_id}"]
    assert dialog.cell_text(k, "Success (judge)") == f"{summary['judge']['success_rate']:.1%}"
    assert dialog.cell_text(k, "After relax. (judge)") == "0.0%"
    assert dialog.cell_text(texts[f"#{plain.run_id}"], "Success (judge)") == "—"
    assert "1 run(s) had no judge" in dialog.note.text()
    dialog.spec_combo.setCurrentIndex(dialog.spec_combo.findText("another target — 1 run"))
    assert dialog.table.rowCount() == 1
