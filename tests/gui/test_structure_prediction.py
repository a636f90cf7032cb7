"""LCOMs structure prediction in the GUI, driven as a user would: the Training panel offers the csp_vae with
its own settings; the Generate panel's Structure prediction tab takes typed formulas, a method and a
csp_vae, runs in a job with live surrogate / CHGNet curves, lists the best structure per formula with
its space group next to the random baseline's, hands the run to the Candidates panel and exports CIF;
without a csp_vae the latent methods cannot start; a run cancels; the Targets panel leads there."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt

from tests.ml_synthetic import synthetic_crystals, write_csv

pytest.importorskip("crystal_studio.design.csp")

TINY_CSP = {"epochs": "3", "hidden": "32", "surrogate_hidden": "64", "batch_size": "16", "threads": "1",
            "prior_samples": "8"}


@pytest.fixture
def syn_project(project, tmp_path):
    """The GUI test project (dataset 'good') plus 60 synthetic crystals with energy_per_atom as 'syn'."""
    from crystal_studio.store.importer import import_paths

    report = import_paths(project, [write_csv(tmp_path / "syn.csv", synthetic_crystals(60))], "syn")
    assert report.imported == 60
    return project


@pytest.fixture
def tiny_csp(syn_project) -> int:
    """A tiny csp_vae trained on 'syn' through the public API; its model id."""
    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model

    result = train_model(syn_project, "syn", config_for("csp_vae", [], epochs=5, hidden=32, surrogate_hidden=64,
                                                        batch_size=16, device="cpu", threads=1), "tiny")
    return result.model_id


@pytest.fixture
def jobs():
    from crystal_studio.gui.jobs import JobManager

    manager = JobManager()
    yield manager
    manager.cancel_all(wait_ms=60000)


@pytest.fixture
def generate(qtbot, jobs, syn_project):
    from crystal_studio.gui.generate_panel import GeneratePanel

    widget = GeneratePanel(jobs)
    qtbot.addWidget(widget)
    widget.resize(820, 1000)
    widget.show()
    widget.set_project(syn_project)
    return widget


@pytest.fixture
def candidates(qtbot, jobs, syn_project, generate):
    """A Candidates panel that follows the Generate panel's finished runs, as the main window wires it."""
    from crystal_studio.gui.candidates_panel import CandidatesPanel

    widget = CandidatesPanel(jobs)
    qtbot.addWidget(widget)
    widget.set_project(syn_project)

    def show(run_id: int) -> None:
        widget.refresh_runs()
        widget.set_run(run_id)

    generate.structures_predicted.connect(show)
    return widget


def _quick(csp, formulas: str = "NaCl", budget: int = 4, steps: int = 10, relax_steps: int = 10) -> None:
    """Fill the form through its widgets: the formulas typed, a small budget, CPU."""
    csp.formula_edit.setText(formulas)
    csp.budget_spin.setValue(budget)
    csp.steps_spin.setValue(steps)
    csp.true_every_spin.setValue(5)
    csp.relax_steps_spin.setValue(relax_steps)
    csp.device_combo.setCurrentText("cpu")


def test_training_panel_trains_a_csp_vae_with_its_own_settings(qtbot, jobs, syn_project):
    from crystal_studio.gui.generate_panel import GeneratePanel
    from crystal_studio.gui.training_panel import TRAINABLE_KINDS, TrainingPanel
    from crystal_studio.ml.csp_vae_training import CspVAETrainConfig
    from crystal_studio.ml.kinds import CSP_KINDS
    from crystal_studio.store import models as store

    assert set(CSP_KINDS) <= set(TRAINABLE_KINDS)
    panel = TrainingPanel(jobs)
    qtbot.addWidget(panel)
    panel.resize(700, 900)
    panel.show()
    panel.set_project(syn_project)
    panel.set_dataset("syn")
    panel.set_kind("csp_vae")
    assert panel.is_generator() and "LCOMs" in panel.kind_combo.currentText()
    assert panel.kind_settings.isVisible() and not panel.targets_list.isVisible()
    assert "energy" in panel.targets_note.text() and "Generate panel" in panel.targets_note.text()
    names = set(panel.kind_settings.names())
    from dataclasses import fields

    assert names == {f.name for f in fields(CspVAETrainConfig)} - {"kind", "device"}
    assert {"surrogate_hidden", "alpha", "mining_steps", "energy", "max_sites"} <= names
    assert "conservative" in panel.kind_settings.item(panel.kind_settings.names().index("alpha"), 0).toolTip()
    assert panel.start_button.isEnabled()

    names = panel.kind_settings.names()
    for name, value in TINY_CSP.items():
        panel.kind_settings.item(names.index(name), 1).setText(value)
    panel.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(panel.model_trained, timeout=120000) as trained:
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    model_id = trained.args[0]
    record = store.get_model(syn_project, model_id, with_checkpoint=False)
    assert record.kind == "csp_vae"
    curves = panel.curves.curve_names()
    assert "val_loss" in curves and any(n.startswith("val_conservative") for n in curves), curves
    assert panel.parity_data is None
    row = [panel.models_table.item(0, c).text() for c in range(panel.models_table.columnCount())]
    assert row[2] == "(crystals · energy)" and row[3].startswith("surrogate")

    # the Generate panel offers it for LCOMs
    generate = GeneratePanel(jobs)
    qtbot.addWidget(generate)
    generate.set_project(syn_project)
    assert generate.csp.model_id() == model_id and generate.csp.model_combo.isEnabled()


def test_lcoms_for_nacl_with_live_curves_baseline_candidates_and_cif(qtbot, tiny_csp, generate, candidates,
                                                                      syn_project, tmp_path):
    from pymatgen.core import Structure

    from crystal_studio.store import models as store

    csp = generate.csp
    generate.show_structure_prediction()
    assert generate.sections.currentWidget() is csp
    assert csp.method() == "lcoms"  # the default once the project has a csp_vae
    csp.set_method("lcoms")
    assert csp.model_id() == tiny_csp and csp.model_combo.isEnabled() and csp.baseline_check.isChecked()
    _quick(csp)
    assert csp.formulas() == ["NaCl"] and csp.start_button.isEnabled()
    with qtbot.waitSignal(generate.structures_predicted, timeout=180000) as done:
        qtbot.mouseClick(csp.start_button, Qt.MouseButton.LeftButton)
        assert csp.running and csp.cancel_button.isEnabled() and not csp.start_button.isEnabled()
        assert not csp.formula_edit.isEnabled()
    run_id = done.args[0]
    runs = csp.last_runs
    assert runs.main.run_id == run_id and runs.main.method == "csp_lcoms" and runs.baseline is not None

    # live curves: the surrogate per latent step, CHGNet every 5 steps, every relaxation
    series = csp.curves.series
    assert csp.curves.latent_plot.isVisible()
    assert len(series["lcoms/surrogate_mean"][0]) == 10 and len(series["lcoms/surrogate_min"][0]) == 10
    assert series["lcoms/surrogate_mean"][0] == [float(s) for s in range(1, 11)]
    assert all(lo <= mean + 1e-9 for lo, mean in zip(series["lcoms/surrogate_min"][1],
                                                        series["lcoms/surrogate_mean"][1], strict=True))
    names = csp.curves.curve_names()
    assert {"lcoms/surrogate_mean", "lcoms/surrogate_min", "relax/start", "relax/baseline", "best/main",
            "best/baseline"} <= set(names), names
    assert len(series.get("lcoms/true_mean", ([], []))[0]) <= 3  # steps 1, 5 and 10, where CHGNet scored them
    assert len(series["relax/start"][0]) + len(series.get("relax/decode", ([], []))[0]) == \
        runs.main.formulas[0].n_relaxed
    assert len(series["relax/baseline"][0]) == runs.baseline.formulas[0].n_relaxed >= 1

    # the result: per formula the best energy, its space group, where it came from, the run; and the baseline
    table = csp.result_table
    assert table.rowCount() == 2
    cells = [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(2)]
    best = runs.main.formulas[0]
    assert best.status == "ok" and best.spacegroup
    assert cells[0][:2] == ["NaCl", "LCOMs"] and cells[0][5] == f"#{run_id}"
    assert cells[0][3] == f"{best.spacegroup} ({best.spacegroup_number})"
    assert float(cells[0][2]) == pytest.approx(best.energy_per_atom, abs=1e-4)
    assert cells[0][4] == best.best_from
    assert cells[1][:2] == ["NaCl", "random"] and cells[1][5] == f"#{runs.baseline.run_id}"
    assert "vs random" in csp.compare_label.text() and "NaCl" in csp.compare_label.text()
    assert "Candidates panel" in csp.status_label.text()

    parameters = store.get_run(syn_project, run_id).parameters
    assert parameters["method"] == "csp_lcoms" and parameters["models"] == [tiny_csp]
    assert parameters["trials"] == 4 and parameters["relax_steps"] == 10 and parameters["lcoms"]["steps"] == 10
    base = store.get_run(syn_project, runs.baseline.run_id).parameters
    assert base["method"] == "csp_random" and base["source"] == {"baseline_of": run_id} and base["seed"] == 0

    # the run (and its baseline) in the Candidates panel
    assert candidates.run_id == run_id and candidates.runs_combo.currentData() == run_id
    assert candidates.runs_combo.findData(runs.baseline.run_id) >= 0
    assert candidates.model.rowCount() == 1

    # CIF export of the best structures
    folder = tmp_path / "cif"
    job = csp.export_cif(str(folder))
    qtbot.waitUntil(lambda: not job.running, timeout=30000)
    assert job.state == "succeeded" and len(csp.last_export) == 2
    for path in csp.last_export:
        assert path.suffix == ".cif" and Structure.from_file(path).composition.reduced_formula == "NaCl"
    assert "CIF" in csp.status_label.text()


def test_latent_methods_need_a_csp_vae(qtbot, generate, syn_project):
    from crystal_studio.store import models as store

    csp = generate.csp
    assert csp.method() == "random"  # the default without a csp_vae
    csp.set_method("lcoms")
    qtbot.keyClicks(csp.formula_edit, "NaCl")
    assert csp.model_id() is None
    assert not csp.model_combo.isEnabled() and "Training panel" in csp.model_combo.toolTip()
    assert "no csp_vae" in csp.model_combo.currentText()
    assert not csp.start_button.isEnabled() and "Training panel" in csp.start_button.toolTip()
    assert csp.start() is None and "Training panel" in csp.status_label.text()
    csp.set_method("mse")
    assert not csp.start_button.isEnabled()

    # random search needs none
    csp.set_method("random")
    assert csp.start_button.isEnabled() and not csp.model_combo.isEnabled()
    assert "no model" in csp.model_combo.toolTip()
    assert not csp.steps_spin.isEnabled() and not csp.baseline_check.isEnabled()
    assert csp.budget_spin.minimum() == 1

    # text that is not a formula is refused before a job starts
    csp.formula_edit.setText("NaCl, Xq2")
    assert csp.start() is None and "Xq2" in csp.status_label.text()
    assert not store.list_runs(syn_project, "optimization")


def test_cancel_during_the_latent_descent(qtbot, tiny_csp, generate, syn_project):
    from crystal_studio.store import models as store

    csp = generate.csp
    csp.set_method("lcoms")
    _quick(csp, budget=2, steps=100000, relax_steps=10)
    job = csp.start()
    assert job is not None
    qtbot.waitUntil(lambda: "lcoms/surrogate_mean" in csp.curves.series, timeout=120000)
    qtbot.mouseClick(csp.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not job.running, timeout=60000)
    assert job.state == "cancelled" and csp.last_runs is None
    assert "Cancelled" in csp.status_label.text()
    assert csp.start_button.isEnabled() and not csp.cancel_button.isEnabled()
    runs = store.list_runs(syn_project, "optimization")
    assert runs and all(r.status == "cancelled" for r in runs)


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="VTK needs an X display: run under xvfb-run")
def test_targets_panel_leads_to_structure_prediction(qtbot, syn_project, settings):
    from crystal_studio.gui.main_window import MainWindow

    window = MainWindow(project_path=syn_project.path, settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.project is not None, timeout=20000)
    window.docks["Targets"].raise_()
    button = window.targets_panel.csp_button
    assert button.text() == "Predict the structure of a composition…"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    generate = window.generate_panel
    assert not window.docks["Generate"].visibleRegion().isEmpty()
    assert generate.sections.currentWidget() is generate.csp and generate.csp.isVisible()
    assert window.focusWidget() is generate.csp.formula_edit
    window.close()
