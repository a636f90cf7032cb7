"""The composition VAE in the GUI, driven as a user would: train a tiny one through the Training panel
(no targets, its own settings table, loss-term curves), sample it in the Generate panel (funnel, formulas
table, filters, data-vs-samples plots), compute the dataset hull, and send formulas on to structure
prediction when that module is there; the main window has the Generate dock."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt

from tests.ml_synthetic import synthetic_crystals, write_csv

TINY_VAE = {"epochs": "20", "hidden": "32", "latent": "4", "batch_size": "16", "patience": "200", "threads": "1",
            "recon_weight": "20", "lr": "0.01"}


@pytest.fixture
def syn_project(project, tmp_path):
    """The GUI test project (dataset 'good') plus 60 synthetic labelled crystals as dataset 'syn'."""
    from crystal_studio.core.io import read_structures

    records, issues = read_structures([write_csv(tmp_path / "syn.csv", synthetic_crystals(60))])
    assert not issues
    project.add_records("syn", records)
    return project


@pytest.fixture
def jobs():
    from crystal_studio.gui.jobs import JobManager

    manager = JobManager()
    yield manager
    manager.cancel_all()


@pytest.fixture
def training(qtbot, jobs, syn_project):
    from crystal_studio.gui.training_panel import TrainingPanel

    widget = TrainingPanel(jobs)
    qtbot.addWidget(widget)
    widget.resize(700, 900)
    widget.show()
    widget.set_project(syn_project)
    return widget


@pytest.fixture
def generate(qtbot, jobs, syn_project):
    from crystal_studio.gui.generate_panel import GeneratePanel

    widget = GeneratePanel(jobs)
    qtbot.addWidget(widget)
    widget.resize(800, 900)
    widget.show()
    widget.set_project(syn_project)
    return widget


def _edit(table, values: dict[str, str]) -> None:
    names = table.names()
    for name, value in values.items():
        table.item(names.index(name), 1).setText(value)


def train_tiny_vae(qtbot, panel) -> int:
    """Train a tiny composition VAE on 'syn' through the panel's widgets; returns the model id."""
    panel.set_dataset("syn")
    panel.set_kind("composition_vae")
    panel.device_combo.setCurrentText("cpu")
    _edit(panel.kind_settings, TINY_VAE)
    with qtbot.waitSignal(panel.model_trained, timeout=60000) as trained:
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        assert panel.running and not panel.start_button.isEnabled()
    return trained.args[0]


def test_training_panel_offers_the_composition_vae_from_the_registry(qtbot, training, syn_project):
    from crystal_studio.ml.kinds import CSP_KINDS, GENERATOR_KINDS, PREDICTOR_KINDS
    from crystal_studio.store import models as store

    kinds = [training.kind_combo.itemData(i) for i in range(training.kind_combo.count())]
    assert kinds == [k for k in (*PREDICTOR_KINDS, *GENERATOR_KINDS, *CSP_KINDS)] and "composition_vae" in kinds
    assert training.kind() == "gnn" and not training.is_generator()
    assert training.targets_list.isVisible() and not training.kind_settings.isVisible()
    assert training.epochs_spin.isVisible()

    training.set_kind("composition_vae")
    assert training.is_generator()
    assert not training.targets_list.isVisible() and not training.targets_list.isEnabled()
    assert training.targets_note.isVisible() and "no targets" in training.targets_note.text()
    assert training.kind_settings.isVisible() and not training.epochs_spin.isVisible()
    names = training.kind_settings.names()
    assert {"epochs", "latent", "beta", "recon_weight", "class_weight", "max_classes"} <= set(names)
    assert "kind" not in names and "device" not in names  # set by the kind box and the Device row
    assert "KL" in training.kind_settings.item(names.index("beta"), 0).toolTip()
    assert training.start_button.isEnabled()  # no targets needed

    _edit(training.kind_settings, {"latent": "many"})
    assert training.start() is None and "latent" in training.status_label.text()
    _edit(training.kind_settings, {"latent": "10"})

    model_id = train_tiny_vae(qtbot, training)
    record = store.get_model(syn_project, model_id, with_checkpoint=False)
    assert record.kind == "composition_vae" and record.targets == []
    run = store.get_run(syn_project, record.run_id)
    assert run.parameters["config"]["hidden"] == 32 and run.parameters["config"]["device"] == "cpu"
    assert training.epochs_seen == 20
    names = training.curves.curve_names()
    for name in ("train_loss", "val_loss", "train_reconstruction", "val_reconstruction", "train_kl", "val_kl",
                 "train_classification", "val_classification", "val_formula_accuracy"):
        assert name in names, names
    assert training.curves.mae_plot.plotItem.titleLabel.text.startswith("Loss terms")
    assert training.curves.accuracy_plot.isVisible()
    assert "Done: model" in training.status_label.text()
    assert training.parity_data is None  # no parity plots for a generator
    row = [training.models_table.item(0, c).text() for c in range(training.models_table.columnCount())]
    assert row[2] == "(formulas)" and row[3].startswith("recon.") and row[4] == "syn"

    # reopening the run puts its settings back in the table
    _edit(training.kind_settings, {"hidden": "100"})
    training.open_run(record.run_id)
    assert training.kind_settings.changed()["hidden"] == "32"

    # a generative kind with optional property heads (crystal VAE) keeps the targets list, optional
    if "crystal_vae" in kinds:
        training.set_kind("crystal_vae")
        assert training.optional_targets and training.targets_list.isVisible() and training.targets_list.isEnabled()
        assert "optional" in training.targets_note.text() and "targets" not in training.kind_settings.names()
        assert {"lattice_latent", "coord_latent"} <= set(training.kind_settings.names())

    # back to a predictor: its form returns unchanged
    training.set_kind("gnn")
    assert training.targets_list.isVisible() and training.targets_list.isEnabled()
    assert not training.kind_settings.isVisible() and training.epochs_spin.isVisible()
    assert training.curves.mae_plot.plotItem.titleLabel.text == "MAE per target"


def test_sample_filter_and_plot_in_the_generate_panel(qtbot, training, generate, syn_project):
    from crystal_studio.store import models as store
    from crystal_studio.store.samples import list_samples

    assert generate.model_ids() == [] and not generate.start_button.isEnabled()
    model_id = train_tiny_vae(qtbot, training)
    generate.refresh()
    assert generate.model_ids() == [model_id]  # only generative models are offered
    assert generate.start_button.isEnabled()
    classes = [generate.class_combo.itemData(i) for i in range(generate.class_combo.count())]
    assert classes[0] is None and classes[1:] == [1, 2, 3, 4]

    generate.n_spin.setValue(400)
    generate.seed_spin.setValue(5)
    generate.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(generate.sampled, timeout=60000) as done:
        qtbot.mouseClick(generate.start_button, Qt.MouseButton.LeftButton)
        assert generate.running and generate.cancel_button.isEnabled()
    run_id = done.args[0]
    run = store.get_run(syn_project, run_id)
    assert run.kind == "sampling" and run.status == "completed" and run.parameters["n"] == 400

    result = generate.result
    stored = list_samples(syn_project, run_id)
    assert result.run_id == run_id and len(result.rows) == len(stored) > 0
    funnel = result.funnel
    assert funnel["sampled"] == 400 and funnel["decoded"] <= 400
    assert funnel["unique"] == sum(1 for s in stored if s.checks["compositionally_valid"])
    text = generate.funnel_label.text()
    assert f"Run #{run_id}" in text and ">400<" in text and "novel" in text

    model = generate.samples_model
    assert model.rowCount() == len(stored) and model.columnCount() == 6
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in range(6)] == [
        "Formula", "Count", "Valid", "Novel", "Elements", "Class"]
    first = {model.data(model.index(0, c)) for c in range(6)}
    assert str(max(s.count for s in stored)) in first  # most drawn first
    assert f"{len(stored)} of {len(stored)} formulas" in generate.count_label.text()

    # filters narrow the table
    n_all = model.rowCount()
    qtbot.mouseClick(generate.valid_check, Qt.MouseButton.LeftButton)
    assert generate.valid_check.isChecked()
    valid = [r for r in result.rows if r.valid]
    assert model.rowCount() == len(valid) <= n_all
    assert all(model.data(model.index(r, 2)) == "✓" for r in range(model.rowCount()))
    generate.valid_check.setChecked(False)
    oxygen = [r for r in result.rows if "O" in r.elements]
    generate.element_filter.set_elements(["O"], [])
    assert model.rowCount() == len(oxygen) and all("O" in f for f in generate.shown_formulas())
    generate.element_filter.set_elements([], ["O"])
    assert model.rowCount() == n_all - len(oxygen)
    assert not any("O" in r.elements for r in model.rows)
    generate.element_filter.set_elements([], [])
    generate.min_elements.setValue(3)
    assert model.rowCount() == sum(1 for r in result.rows if r.n_elements >= 3)
    generate.max_elements.setValue(3)
    assert all(r.n_elements == 3 for r in model.rows)
    generate.min_elements.setValue(1)
    generate.max_elements.setValue(20)
    generate.novel_check.setChecked(True)
    assert model.rowCount() == sum(1 for r in result.rows if r.novel)
    generate.novel_check.setChecked(False)
    assert model.rowCount() == n_all

    # sorting by a column header
    generate.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert generate.shown_formulas() == sorted(generate.shown_formulas())

    # plots: element prevalence of the data vs the samples (by data prevalence), and the element counts
    assert result.symbols and result.symbols[0] in ("O", "F")  # every synthetic crystal has O or F
    assert result.data_prevalence == sorted(result.data_prevalence, reverse=True)
    assert len(result.symbols) <= 40
    assert set(generate.plots.bars) == {"funnel", "prevalence/data", "prevalence/samples", "counts/data", "counts/samples"}
    assert list(generate.plots.bars["funnel"].opts["width"]) == [funnel[key] for key, _ in result.funnel_labels]
    assert sum(result.data_counts.values()) == pytest.approx(1.0)
    assert set(result.data_counts) <= {2, 3}  # rock salts and perovskites

    # selection enables structure prediction
    assert not generate.csp_button.isEnabled()
    generate.select_formulas(generate.shown_formulas()[:2])
    assert len(generate.selected_formulas()) == 2 and generate.csp_button.isEnabled()

    # a past run reopens with the same funnel
    generate.result = None
    with qtbot.waitSignal(generate.sampled, timeout=20000):
        generate.open_run(run_id)
    assert generate.result.funnel == funnel and len(generate.result.rows) == len(stored)


def test_around_a_structure_with_a_class(qtbot, training, generate, syn_project):
    from crystal_studio.store import models as store
    from crystal_studio.store.project import StructureQuery

    train_tiny_vae(qtbot, training)
    generate.refresh()
    assert not generate.around_check.isEnabled()
    sid = syn_project.page(StructureQuery(dataset="syn"), limit=1)[0]["id"]
    generate.set_structure(sid)
    assert generate.around_check.isEnabled() and f"#{sid}" in generate.around_label.text()
    generate.around_check.setChecked(True)
    generate.sigma_spin.setValue(0.3)
    generate.class_combo.setCurrentIndex(generate.class_combo.findData(1))
    generate.n_spin.setValue(100)
    generate.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(generate.sampled, timeout=60000) as done:
        generate.start()
    p = store.get_run(syn_project, done.args[0]).parameters
    assert p["around"] == sid and p["sigma"] == pytest.approx(0.3) and p["decomposition_class"] == 1
    assert all(r.decomposition_class == 1 for r in generate.result.rows)


def test_cancel_sampling_stores_nothing(qtbot, training, generate, syn_project):
    from crystal_studio.store import models as store

    train_tiny_vae(qtbot, training)
    generate.refresh()
    generate.n_spin.setValue(200_000)
    generate.device_combo.setCurrentText("cpu")
    job = generate.start()
    generate.cancel()
    qtbot.waitUntil(lambda: not job.running, timeout=60000)
    assert job.state == "cancelled" and generate.result is None
    assert "Cancelled" in generate.status_label.text()
    runs = store.list_runs(syn_project, "sampling")
    assert all(r.status != "completed" for r in runs)
    assert generate.start_button.isEnabled()


def test_compute_dataset_hull_from_the_panel(qtbot, generate, syn_project):
    generate.hull_dataset_combo.setCurrentIndex(generate.hull_dataset_combo.findData("syn"))
    with qtbot.waitSignal(generate.hull_computed, timeout=60000) as done:
        qtbot.mouseClick(generate.hull_button, Qt.MouseButton.LeftButton)
    assert done.args[0] == "syn"
    assert generate.last_hull.entries == 60 and generate.last_hull.stable >= 1
    assert "on the hull" in generate.side_label.text()
    values = dict(syn_project.property_values("decomposition_components", None))
    assert len(values) == 60


def test_predict_structures_of_selected_formulas(qtbot, training, generate, syn_project):
    pytest.importorskip("crystal_studio.design.csp")
    from crystal_studio.store import models as store
    from crystal_studio.store.candidates import list_candidates

    train_tiny_vae(qtbot, training)
    generate.refresh()
    generate.n_spin.setValue(200)
    generate.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(generate.sampled, timeout=60000):
        generate.start()
    generate.valid_check.setChecked(True)
    generate.select_formulas(generate.shown_formulas()[:1])
    assert generate.csp_button.isEnabled()
    generate.trials_spin.setValue(2)
    with qtbot.waitSignal(generate.structures_predicted, timeout=300000) as done:
        generate.predict_structures(["NaF"])  # a formula PyXtal and CHGNet certainly manage
    run_id = done.args[0]
    records = list_candidates(syn_project, run_id)
    assert len(records) == 1 and "Candidates panel" in generate.side_label.text()
    parameters = store.get_run(syn_project, run_id).parameters
    assert parameters["source"] == {"sampling_run": generate.result.run_id}
    assert parameters["reference_dataset"] == "syn"


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="VTK needs an X display: run under xvfb-run")
def test_main_window_has_the_generate_dock(qtbot, syn_project, settings):
    from crystal_studio.gui.main_window import MainWindow
    from crystal_studio.store.project import StructureQuery

    window = MainWindow(project_path=syn_project.path, settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.project is not None, timeout=20000)
    assert "Generate" in window.docks and window.panels["Generate"] is window.generate_panel
    assert window.docks["Generate"].toggleViewAction() in window.menuBar().actions()[1].menu().actions()
    assert window.generate_panel.project is window.project
    assert [window.generate_panel.hull_dataset_combo.itemData(i)
            for i in range(window.generate_panel.hull_dataset_combo.count())] == ["good", "syn"]
    sid = window.project.page(StructureQuery(dataset="syn"), limit=1)[0]["id"]
    window.datasets_panel.current_changed.emit(sid)  # the structure under the cursor is the 'around' centre
    assert window.generate_panel.structure_id == sid
    # a finished structure prediction is handed to the Candidates panel, which comes into view
    from crystal_studio.store import models as store

    run_id = store.create_run(window.project, "optimization", {"method": "csp_random"}, 0, "cpu", {})
    window.generate_panel.structures_predicted.emit(run_id)
    assert window.candidates_panel.run_id == run_id
    assert window.candidates_panel.runs_combo.currentData() == run_id
    assert not window.docks["Candidates"].visibleRegion().isEmpty()
    window.close()


def test_sample_a_crystal_vae_around_a_crystal(qtbot, generate, syn_project, tiny_crystal_vae):
    """A crystal VAE in the same panel: class disabled, crystals drawn around the selected structure,
    structural funnel, their formulas in the table, the run announced for the Candidates panel; the
    run reopens with the same funnel."""
    from crystal_studio.store import models as store
    from crystal_studio.store.candidates import list_candidates
    from crystal_studio.store.project import StructureQuery
    from tests.conftest import add_generator

    model_id = add_generator(syn_project, tiny_crystal_vae)
    generate.refresh()
    generate.set_model(model_id)
    assert generate.crystal_model and not generate.class_combo.isEnabled()
    sid = syn_project.page(StructureQuery(dataset="good", reduced_formulas=["NaCl"]), limit=1)[0]["id"]
    generate.set_structure(sid)
    generate.around_check.setChecked(True)
    generate.n_spin.setValue(24)
    generate.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(generate.structures_predicted, timeout=60000) as done:
        qtbot.mouseClick(generate.start_button, Qt.MouseButton.LeftButton)
    run_id = done.args[0]
    run = store.get_run(syn_project, run_id)
    assert run.status == "completed" and run.parameters["around"] == sid
    result = generate.result
    assert result.crystals and result.funnel["sampled"] == 24
    assert "structurally valid" in generate.funnel_label.text()
    valid = [r for r in list_candidates(syn_project, run_id) if r.evaluation["valid"]]
    assert sum(row.count for row in generate.samples_model.all_rows) == len(valid) == result.funnel["structurally_valid"]
    assert not generate.csp_button.isEnabled()  # the draws have structures already
    assert "Candidates panel" in generate.status_label.text()
    funnel = dict(result.funnel)
    qtbot.waitUntil(lambda: not generate.running, timeout=10000)
    generate.open_run(run_id)
    qtbot.waitUntil(lambda: not generate.running, timeout=30000)
    assert generate.result.funnel == funnel
