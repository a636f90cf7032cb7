"""The Training panel driven as a user would: train a tiny model on small synthetic crystals, watch the
curves, read the parity plots, rename/delete/export/import models, cancel and resume a run."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt

from tests.ml_synthetic import synthetic_crystals, write_csv

TARGETS = ["formation_energy_per_atom", "band_gap"]
TINY = {"cutoff": 4.5, "n_gaussians": 10, "patience": 50, "threads": 1}


@pytest.fixture
def syn_project(project, tmp_path):
    """The GUI test project (dataset 'good') plus 30 synthetic labelled crystals as dataset 'syn'."""
    from crystal_studio.core.io import read_structures

    records, issues = read_structures([write_csv(tmp_path / "syn.csv", synthetic_crystals(30))])
    assert not issues
    project.add_records("syn", records)
    return project


@pytest.fixture
def panel(qtbot, syn_project):
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.gui.training_panel import TrainingPanel

    jobs = JobManager()
    widget = TrainingPanel(jobs)
    qtbot.addWidget(widget)
    widget.resize(700, 900)
    widget.show()
    widget.set_project(syn_project)
    yield widget
    jobs.cancel_all()


def _tiny(panel, epochs: int) -> None:
    panel.set_dataset("syn")
    panel.set_targets(TARGETS)
    panel.epochs_spin.setValue(epochs)
    panel.ensemble_spin.setValue(2)
    panel.seed_spin.setValue(3)
    panel.device_combo.setCurrentText("cpu")
    panel.hidden_spin.setValue(12)
    panel.layers_spin.setValue(2)
    panel.batch_spin.setValue(8)
    panel.lr_spin.setValue(3e-3)
    panel.config_overrides = dict(TINY)


def test_train_curves_parity_and_model_management(qtbot, panel, syn_project, tmp_path):
    from crystal_studio.store import models as store

    assert [panel.dataset_combo.itemData(i) for i in range(panel.dataset_combo.count())] == ["good", "syn"]
    _tiny(panel, epochs=3)
    assert set(panel.targets()) == set(TARGETS)
    assert panel.config()["split"] == (0.8, 0.1, 0.1)
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()

    with qtbot.waitSignal(panel.model_trained, timeout=30000) as trained:
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        assert panel.running and panel.cancel_button.isEnabled() and not panel.start_button.isEnabled()
    model_id = trained.args[0]
    assert panel.epochs_seen == 6  # 2 members × 3 epochs, none lost to progress throttling
    names = panel.curves.curve_names()
    for name in ("train_loss", "val_loss", "batch_loss", "val_mae/band_gap", "train_mae/formation_energy_per_atom"):
        assert name in names, names
    assert list(panel.curves.curves["val_loss"].xData) == [1, 2, 3, 4, 5, 6]
    run = store.get_run(syn_project, panel.last_result.run_id)
    assert run.status == "completed" and run.parameters["config"]["hidden"] == 12
    assert "Done: model" in panel.status_label.text()

    # the models table lists it with its metrics and dataset
    assert panel.model_ids() == [model_id] and panel.selected_model_id() == model_id
    row = [panel.models_table.item(0, c).text() for c in range(panel.models_table.columnCount())]
    assert row[4] == "syn" and "band_gap" in row[2] and " eV;" in row[3]

    # parity plots of the test split come in a job after training
    qtbot.waitUntil(lambda: panel.parity_data is not None, timeout=15000)
    data = panel.parity_data
    assert data.model_id == model_id and data.targets == sorted(TARGETS)
    assert len(data.true["band_gap"]) == len(run.parameters["split"]["test"]) == 3
    assert set(panel.parity.parity) == set(TARGETS) and set(panel.parity.histograms) == set(TARGETS)
    assert set(panel.parity.calibration) == set(TARGETS)  # two members: the spread's calibration is drawn
    stored = store.get_model(syn_project, model_id, with_checkpoint=False).metrics
    assert data.mae("band_gap") == pytest.approx(stored["band_gap"]["mae"], rel=1e-3, abs=1e-5)
    assert panel.parity.mae_labels["band_gap"].toPlainText().startswith("MAE ")
    assert panel.results_tabs.currentWidget() is panel.parity

    # rename, export, import, delete
    panel.rename_model(model_id, "tiny gap model")
    assert store.get_model(syn_project, model_id, with_checkpoint=False).name == "tiny gap model"
    assert panel.models_table.item(0, 1).text() == "tiny gap model"
    out = tmp_path / "tiny.pt"
    job = panel.export_model(model_id, str(out))
    qtbot.waitUntil(lambda: not job.running, timeout=10000)
    assert job.state == "succeeded" and out.is_file()
    with qtbot.waitSignal(panel.models_changed, timeout=10000):
        panel.import_model(str(out))
    assert len(panel.model_ids()) == 2
    imported = panel.model_ids()[1]
    assert panel.models_table.item(1, 4).text() == "(imported)"
    panel.show_parity(imported)  # no stored split for an imported model: says so instead of plotting
    assert "imported" in panel.parity.message
    with qtbot.waitSignal(panel.models_changed, timeout=1000):
        panel.delete_model(model_id)
    assert panel.model_ids() == [imported]
    assert [m.id for m in store.list_models(syn_project)] == [imported]


def test_cancel_leaves_a_resumable_run(qtbot, panel, syn_project):
    from crystal_studio.store import models as store

    _tiny(panel, epochs=40)
    panel.ensemble_spin.setValue(1)
    panel.epoch_recorded.connect(lambda _step: panel.cancel())  # cancel as soon as one epoch is drawn
    job = panel.start()
    qtbot.waitUntil(lambda: not job.running, timeout=20000)
    assert job.state == "cancelled"
    run_id = panel.run_id
    run = store.get_run(syn_project, run_id)
    assert run.status == "cancelled" and "resume" in run.message
    assert store.run_state_path(syn_project, run_id).is_file()
    done = len(store.run_metrics(syn_project, run_id)["val_loss"])
    assert 1 <= done < 40
    assert "Resume" in panel.status_label.text()
    assert panel.runs_combo.currentData() == run_id and panel.resume_button.isEnabled()
    assert "cancelled" in panel.runs_combo.currentText()
    assert panel.model_ids() == []

    panel.epoch_recorded.disconnect()
    with qtbot.waitSignal(panel.model_trained, timeout=30000):
        qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
        assert panel.running and not panel.resume_button.isEnabled()
    assert store.get_run(syn_project, run_id).status == "completed"
    steps = [s for s, _ in store.run_metrics(syn_project, run_id)["val_loss"]]
    assert steps == list(range(40))  # the stored history continues where the cancelled run stopped
    assert list(panel.curves.curves["val_loss"].xData) == [float(s + 1) for s in steps]
    assert len(panel.model_ids()) == 1
    assert not panel.resume_button.isEnabled()


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="VTK needs an X display: run under xvfb-run")
def test_main_window_mounts_training_panel_and_lists_new_models(qtbot, syn_project, settings):
    from crystal_studio.gui.main_window import MainWindow
    from crystal_studio.gui.training_panel import TrainingPanel

    syn_project.close()
    win = MainWindow(syn_project.path, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.project is not None, timeout=10000)
    panel = win.panels["Training"]
    assert isinstance(panel, TrainingPanel) and panel is win.training_panel
    assert panel.dataset_combo.count() == 2
    _tiny(panel, epochs=1)
    panel.ensemble_spin.setValue(1)
    with qtbot.waitSignal(panel.model_trained, timeout=30000) as trained:
        panel.start()
    opt_ids = [win.optimization_panel.models_list.item(i).data(Qt.ItemDataRole.UserRole)
               for i in range(win.optimization_panel.models_list.count())]
    assert opt_ids == [trained.args[0]]  # the Optimization panel lists the new model at once
    qtbot.waitUntil(lambda: panel.parity_data is not None, timeout=15000)
    win.close()


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="VTK needs an X display: run under xvfb-run")
def test_builtin_project_gets_the_shipped_models(qtbot, settings, monkeypatch, tmp_path):
    """Opening the built-in project adds the shipped models; the Training panel lists them all, the
    Optimization panel only the differentiable ones (the CHGNet-transfer model can only judge).
    (The built-in dataset import itself is slow and tested elsewhere: a small project stands in for it.)"""
    from crystal_studio.gui.main_window import MainWindow
    from crystal_studio.ml.builtin import BUILTIN_DIR, BUILTIN_MODELS
    from crystal_studio.store import builtin
    from crystal_studio.store.project import Project

    shipped = [name for filename, name in BUILTIN_MODELS if (BUILTIN_DIR / filename).exists()]
    if not shipped:
        pytest.skip("this checkout ships no built-in model file")
    monkeypatch.setattr(builtin, "ensure_builtin_project", lambda _progress: Project.create(tmp_path / "b.sqlite"))
    win = MainWindow(settings=settings)  # no last project: opens the built-in one
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.project is not None, timeout=20000)
    table = win.training_panel.models_table
    assert [table.item(r, 1).text() for r in range(table.rowCount())] == shipped
    assert all("eV" in table.item(r, 3).text() for r in range(table.rowCount()))  # test MAEs are shown
    opt = win.optimization_panel
    offered = [opt.models_list.item(i).text() for i in range(opt.models_list.count())]
    assert [name for name in shipped if "transfer" not in name] == [
        name for name in shipped if any(name in text for text in offered)]
    win.close()


def test_calibration_curve_counts_errors_within_k_sigma():
    import numpy as np

    from crystal_studio.gui.training_panel import calibration_curve

    true = np.zeros(4)
    expected, observed = calibration_curve(true, np.array([0.5, 1.5, 2.5, -0.5]), np.ones(4), points=4)
    assert list(observed) == [0.0, 0.5, 0.75, 1.0]  # k = 0, 1, 2, 3
    assert expected[1] == pytest.approx(0.6827, abs=1e-4) and expected[2] == pytest.approx(0.9545, abs=1e-4)
    assert calibration_curve(true, true, np.zeros(4))[0].size == 0  # one member: nothing to calibrate
