"""The latent map and the Optimization panel's crystal VAE choice, driven as a user would: the generator
combo, a tiny LSBO run from the panel whose queries land on the live map, colouring by a property, and the
composition VAE's latent space."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crystal_studio.core.paths import RESOURCES
from crystal_studio.design.methods import METHODS

GAP_SPEC = RESOURCES / "specs" / "smoacs_perovskite_gap_2.5eV.json"
FAST_LSBO = {"restarts": 2, "raw_samples": 32, "init_pool": 0}


def _panel(qtbot, project):
    from crystal_studio.design.spec import load_spec
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.gui.optimization_panel import OptimizationPanel

    panel = OptimizationPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.set_spec(load_spec(GAP_SPEC))
    return panel


def test_generator_combo_only_for_latent_methods(qtbot, design_project):
    from crystal_studio.store import models as model_store

    project, model_id, vae_id = design_project
    panel = _panel(qtbot, project)
    assert [panel.generator_combo.itemData(i) for i in range(panel.generator_combo.count())] == [vae_id]
    for name, info in METHODS.items():
        panel.set_method(name)
        latent = "generator" in info.needs
        assert panel.generator_combo.isVisibleTo(panel) == latent, name
        assert panel.generator_model() == (vae_id if latent else None)

    model_store.delete_model(project, vae_id)
    panel.refresh()
    panel.set_method("lsbo")
    assert panel.start() is None and not panel.running
    assert "crystal VAE" in panel.status_label.text() and "Training panel" in panel.status_label.text()


def test_lsbo_run_from_the_panel_draws_its_queries_on_the_map(qtbot, design_project, settings):
    from crystal_studio.design.spec import load_spec
    from crystal_studio.gui.main_window import MainWindow

    project, model_id, vae_id = design_project
    win = MainWindow(project.path, settings=settings, open_default=False)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.project is not None, timeout=10000)
    opt, latent_map = win.optimization_panel, win.latent_map
    opt.set_spec(load_spec(GAP_SPEC))
    opt.set_method("lsbo")
    opt.set_model_checked(model_id)
    opt.settings_table.set_values(FAST_LSBO)
    opt.candidates_spin.setValue(3)
    opt.steps_spin.setValue(3)
    arrived = []
    opt.latent_queries.connect(lambda model, steps: arrived.append((model, steps)))
    with qtbot.waitSignal(opt.run_finished, timeout=120000) as finished:
        assert opt.start() is not None
        assert win.tabs.currentWidget() is latent_map and latent_map.queries_model == vae_id
    assert opt.plots.terms_plot.plotItem.titleLabel.text.startswith("Loss terms")
    assert "bo/log_acquisition" in opt.plots.curve_names() and "rate/valid_queries" in opt.plots.curve_names()
    qtbot.waitUntil(lambda: latent_map.codes is not None, timeout=30000)
    assert latent_map.codes.model_id == vae_id and latent_map.codes.dataset == "good"
    assert {m for m, _ in arrived} == {vae_id}
    steps = [s for _, batch in arrived for s, _ in batch]
    assert steps == [1, 2, 3]  # batch 1: one query per BO iteration
    assert latent_map.query_count() == 3 and len(latent_map.latest_points.data) == 1
    latent = np.array([z for _, batch in arrived for _, zs in batch for z in zs])
    expected = latent_map.codes.projection.transform(latent)
    drawn = np.column_stack(latent_map.query_points.getData())
    assert drawn == pytest.approx(expected[:2])

    # another run reopened: its crystal VAE is chosen again; a new run on the same model starts a fresh overlay
    run_id = finished.args[0]
    opt.set_method("smoacs")
    opt.open_run(run_id)
    assert opt.method() == "lsbo" and opt.generator_model() == vae_id
    latent_map.follow(vae_id)
    assert latent_map.query_count() == 0 and latent_map.codes is not None  # mapped already: not encoded again


def test_map_colours_by_a_property_with_a_colour_bar(qtbot, design_project):
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.gui.latent_map import LatentMap

    project, _, vae_id = design_project
    latent_map = LatentMap(JobManager())
    qtbot.addWidget(latent_map)
    latent_map.set_project(project)
    assert latent_map.model_id() == vae_id and latent_map.dataset_combo.currentText() == "good"
    with qtbot.waitSignal(latent_map.start().succeeded, timeout=30000):
        pass
    codes = latent_map.codes
    assert len(codes.ids) == codes.projection.points.shape[0] >= 5
    assert latent_map.points.getData()[0] == pytest.approx(codes.projection.points[:, 0])
    latent_map.colour_combo.setCurrentText("band_gap")
    gaps = codes.properties["band_gap"]
    assert np.isnan(gaps).any() and np.isfinite(gaps).sum() >= 2  # the test data lacks some band gaps
    assert latent_map.colour_bar.isVisible() or not latent_map.isVisible()
    assert latent_map.colour_bar.levels() == pytest.approx(np.nanpercentile(gaps, [1, 99]))
    brushes = [b.color().getRgb() for b in latent_map.points.data["brush"]]
    low, high = np.nanargmin(gaps), np.nanargmax(gaps)
    assert brushes[low] == latent_map.colour_map.map(0.0, mode="qcolor").getRgb()
    assert brushes[high] == latent_map.colour_map.map(1.0, mode="qcolor").getRgb()
    assert len({brushes[k] for k in np.flatnonzero(np.isnan(gaps))}) == 1  # missing values: one grey
    assert latent_map.colour_bar.axis.labelText == "band_gap (eV)"

    latent_map.colour_combo.setCurrentText("(none)")
    assert not latent_map.colour_bar.isVisible()


def test_composition_vae_latent_space_and_subsampling(qtbot, design_project):
    import torch

    from crystal_studio.core.progress import CancelToken
    from crystal_studio.gui import latent_map as module
    from crystal_studio.ml.composition_training import save_composition_vae
    from crystal_studio.ml.models.composition_vae import CompositionVAE, CompositionVAEConfig

    project, _, _ = design_project
    torch.manual_seed(0)
    model_id = save_composition_vae(project, CompositionVAE(CompositionVAEConfig(hidden=8, latent=4)), "cvae", {},
                                    dataset_id=project.dataset_id("good"))
    events = []
    codes = module.encode_dataset(project, model_id, "good", events.append, CancelToken(), max_points=3)
    assert codes.latents.shape == (3, 4) and codes.total > 3 and events[-1].step == events[-1].total == 3
    again = module.encode_dataset(project, model_id, "good", events.append, CancelToken(), max_points=3)
    assert list(again.ids) == list(codes.ids)  # the subset is seeded
    assert all(math.isfinite(v) or math.isnan(v) for v in codes.properties["formation_energy_per_atom"])

    latent_map = module.LatentMap(module.JobManager())
    qtbot.addWidget(latent_map)
    latent_map.set_project(project)
    latent_map.set_model(model_id)
    with qtbot.waitSignal(latent_map.start().succeeded, timeout=30000):
        pass
    assert latent_map.codes.latents.shape[1] == 4 and "composition_vae" in latent_map.model_combo.currentText()
    latent_map.add_queries(model_id + 1, [(1, [[0.0] * 20])])  # another model's latent space: not drawn
    assert latent_map.query_count() == 0
