"""The Court et al. voxel VAE end to end in the GUI, as a user would drive it on a small CPU setting:
train a conditional voxel VAE through the Training panel, then sample it in the Generate panel under a
chosen decile with the within-target check by a predictor; the funnel shows the paper's stages (as
text and as the funnel chart), the crystals go to the run's candidates and the run reopens the same."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.gui.test_generate_panel import _edit, generate, jobs, syn_project, training  # noqa: F401 - fixtures

TINY_VOXEL = {"grid": "8", "hidden": "4", "layers": "2", "latent": "8", "epochs": "2", "batch_size": "8",
              "deciles": "3", "prior_samples": "4", "threads": "1"}


@pytest.fixture
def formation_predictor(syn_project) -> int:
    """An untrained formation-energy GNN in the project: the target check only needs its predictions."""
    import torch

    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor

    torch.manual_seed(0)
    predictor = CrystalPredictor(GNNConfig(n_targets=1, hidden=8, layers=1, n_gaussians=8),
                                 ["formation_energy_per_atom"], members=2)
    predictor.set_normalization([-0.3], [0.2])
    return save_predictor(syn_project, predictor, "tiny Ef", metrics={}, dataset_id=syn_project.dataset_id("syn"))


def test_train_a_voxel_vae_and_generate_under_a_decile_with_the_target_check(qtbot, training, generate, syn_project,
                                                                            formation_predictor):
    from crystal_studio.design.sampling import VOXEL_TARGET_FUNNEL
    from crystal_studio.store import models as store
    from crystal_studio.store.candidates import list_candidates

    training.set_dataset("syn")
    training.set_kind("voxel_vae")
    training.device_combo.setCurrentText("cpu")
    _edit(training.kind_settings, TINY_VOXEL)
    with qtbot.waitSignal(training.model_trained, timeout=120000) as trained:
        qtbot.mouseClick(training.start_button, Qt.MouseButton.LeftButton)
    model_id = trained.args[0]
    assert store.get_model(syn_project, model_id, with_checkpoint=False).kind == "voxel_vae"

    generate.refresh()
    generate.set_model(model_id)
    assert generate.crystal_model and generate.form.isRowVisible(generate.condition_row)
    deciles = [generate.decile_combo.itemText(i) for i in range(generate.decile_combo.count())]
    assert len(deciles) == 4 and deciles[1].startswith("decile 1: <") and "eV/atom" in deciles[1]
    assert generate.target_combo.findData(formation_predictor) > 0
    assert not generate.within_spin.isEnabled()  # no check chosen yet
    generate.decile_combo.setCurrentIndex(generate.decile_combo.findData(2))
    generate.target_combo.setCurrentIndex(generate.target_combo.findData(formation_predictor))
    assert generate.within_spin.isEnabled() and generate.within_spin.value() == 20
    generate.n_spin.setValue(16)
    generate.device_combo.setCurrentText("cpu")
    with qtbot.waitSignal(generate.structures_predicted, timeout=60000) as done:
        qtbot.mouseClick(generate.start_button, Qt.MouseButton.LeftButton)
    run_id = done.args[0]
    run = store.get_run(syn_project, run_id)
    assert run.status == "completed"
    assert (run.parameters["condition_decile"], run.parameters["target_model"]) == (2, formation_predictor)
    result = generate.result
    assert tuple(result.funnel) == VOXEL_TARGET_FUNNEL and result.funnel["sampled"] == 16
    assert "within target" in generate.funnel_label.text()
    bars = generate.plots.bars["funnel"].opts["width"]
    assert list(bars) == list(result.funnel.values())  # the chart draws the counts the funnel reports
    assert len(list_candidates(syn_project, run_id)) == result.funnel["decoded"]
    funnel = dict(result.funnel)
    qtbot.waitUntil(lambda: not generate.running, timeout=10000)
    generate.open_run(run_id)
    qtbot.waitUntil(lambda: not generate.running, timeout=30000)
    assert generate.result.funnel == funnel


def test_the_condition_row_is_only_for_conditional_voxel_vaes(qtbot, generate, syn_project, tiny_crystal_vae):
    from tests.conftest import add_generator

    assert not generate.form.isRowVisible(generate.condition_row)  # no model yet
    model_id = add_generator(syn_project, tiny_crystal_vae)
    generate.refresh()
    generate.set_model(model_id)
    assert generate.crystal_model and not generate.form.isRowVisible(generate.condition_row)
    assert generate.decile_combo.count() == 0 and generate.target_combo.count() == 0
