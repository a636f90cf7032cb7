"""The Candidates panel lists every run that stored candidates (crystal sampling and structure prediction
beside optimizations) and relaxes the candidates of a run without predictor models."""

from __future__ import annotations

import pytest


@pytest.fixture
def runs(project):
    """Run ids of a project: a structure-prediction run without models holding one NaCl crystal, a
    crystal-VAE sampling run with two crystals, a training run and a formula sampling run (no candidates)."""
    from pymatgen.core import Lattice, Structure

    from crystal_studio.design.csp import SPEC
    from crystal_studio.design.evaluation import evaluate_structure
    from crystal_studio.design.spec import spec_from_dict
    from crystal_studio.store import candidates as candidate_store
    from crystal_studio.store import models as model_store

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # CsCl-type, 2 atoms
    csp = model_store.create_run(project, "optimization", {"method": "csp_random", "spec": SPEC, "models": []},
                                 0, "cpu", {})
    doc = evaluate_structure(nacl, spec_from_dict(SPEC), {}).as_json()
    candidate_store.add_candidates(project, csp, [(nacl, doc)], complete_run="1 candidate")
    train = model_store.create_run(project, "train", {"model": "gnn"}, 0, "cpu", {})
    formulas = model_store.create_run(project, "sampling", {"model_id": 1, "n": 10}, 0, "cpu", {})
    sampled = model_store.create_run(project, "sampling", {"model_id": 7, "kind": "crystal_vae", "n": 2}, 0, "cpu", {})
    crystal = {"formula": "NaCl", "success": True, "criteria": {"structurally_valid": True,
                                                                "compositionally_valid": True},
               "properties": {}, "valid": True, "compositionally_valid": True, "unique": True, "novel": False}
    candidate_store.add_candidates(project, sampled, [(nacl, crystal), (nacl, {**crystal, "unique": False})],
                                   complete_run="2 crystals")
    return {"csp": csp, "train": train, "formulas": formulas, "sampled": sampled}


def test_every_run_with_candidates_is_listed_by_kind_or_method(qtbot, project, runs):
    from crystal_studio.gui.candidates_panel import CandidatesPanel
    from crystal_studio.gui.jobs import JobManager

    panel = CandidatesPanel(JobManager())
    qtbot.addWidget(panel)
    panel.set_project(project)
    combo = panel.runs_combo
    listed = {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}
    assert list(listed) == [runs["sampled"], runs["csp"]]  # newest first; no training or formula sampling run
    assert listed[runs["sampled"]] == f"#{runs['sampled']} sampling · model 7 · completed · 2 candidates"
    assert listed[runs["csp"]] == f"#{runs['csp']} csp_random · csp_random · completed · 1 candidate"
    assert panel.run_id == runs["sampled"] and panel.model.rowCount() == 2
    headers = [c.header for c in panel.model.columns]
    assert {"structurally_valid", "compositionally_valid", "Unique", "Novel"} <= set(headers)
    combo.activated.emit(combo.findData(runs["csp"]))  # what choosing it in the combo does
    assert panel.run_id == runs["csp"] and panel.model.rowCount() == 1


def test_relax_a_structure_prediction_run_without_models(qtbot, project, runs):
    pytest.importorskip("chgnet")
    from crystal_studio.gui.candidates_panel import CandidatesPanel
    from crystal_studio.gui.jobs import JobManager
    from crystal_studio.store.candidates import list_candidates

    panel = CandidatesPanel(JobManager())
    qtbot.addWidget(panel)
    panel.device = "cpu"
    panel.set_project(project)
    panel.set_run(runs["csp"])
    panel.select_ids(panel.visible_ids())
    panel.relax_steps_spin.setValue(2)
    job = panel.relax_selected()
    assert job is not None
    qtbot.waitUntil(lambda: not job.running, timeout=120000)
    assert job.state == "succeeded", panel.status_label.text()
    assert panel.status_label.text().startswith("Relaxed 1:")
    [record] = list_candidates(project, runs["csp"])
    assert record.relaxed_structure is not None and record.evaluation["relaxation"]["properties"] == {}
    assert "E CHGNet (eV/atom)" in [c.header for c in panel.model.columns]
