"""Crystal structure prediction (PyXtal random symmetric crystals + CHGNet relaxation) stored as a run."""

from __future__ import annotations

import functools
import math

import pytest

from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.design.csp import METHOD, formulas_from_samples, predict_structures, repeat_csp
from crystal_studio.design.job import run_summary
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.samples import add_samples
from tests.clitools import invoke_cli, run_cli

TINY = {"trials": 2, "relax_steps": 4, "device": "cpu"}


cli = functools.partial(invoke_cli, json_exit_codes=(0, 3))  # 3: some formulas failed, still a document


def test_tiny_run_stores_relaxed_candidates_with_energies_and_predictions(design_project):
    project, model_id, _ = design_project
    events = []
    result = predict_structures(project, ["NaCl", "LiF", "Xx2O", "Al2O3"], model_ids=[model_id], max_atoms=4,
                                progress=events.append, **TINY)
    run = model_store.get_run(project, result.run_id)
    assert run.kind == "optimization" and run.status == "completed" and run.parameters["method"] == METHOD
    assert run.parameters["formulas"] == ["NaCl", "LiF", "Xx2O", "Al2O3"] and run.parameters["models"] == [model_id]
    assert any(e.run_id == result.run_id for e in events)
    by_formula = {f.formula: f for f in result.formulas}
    assert by_formula["Xx2O"].status == "failed" and "unknown element Xx" in by_formula["Xx2O"].reason
    assert by_formula["Al2O3"].status == "failed" and "max-atoms" in by_formula["Al2O3"].reason
    records = candidate_store.list_candidates(project, result.run_id)
    assert result.n_candidates == len(records) == 2
    assert {r.formula for r in records} == {"NaCl", "LiF"}
    for record in records:
        assert record.structure.composition.reduced_formula == record.formula
        assert len(record.structure) <= 4
        energy = record.evaluation["properties"]["energy_per_atom"]
        assert math.isfinite(energy) and energy == pytest.approx(record.oracle_energy_per_atom)
        assert {"band_gap", "formation_energy_per_atom"} <= set(record.evaluation["properties"])
        assert record.relaxed_structure is not None
        ev = record.evaluation
        assert ev["success"] == (ev["valid"] and ev["relaxation"]["converged"])
        assert set(ev["criteria"]) >= {"min_distance", "structurally_valid", "relaxation_converged"}
        assert by_formula[record.formula].candidate_id == record.id
        assert by_formula[record.formula].energy_per_atom == pytest.approx(energy)
    assert run_summary(project, result.run_id)["n"] == 2  # the candidates verb's summary reads the run
    again = repeat_csp(project, result.run_id, device="cpu")  # same seed, same crystals
    assert [f.energy_per_atom for f in again.formulas] == pytest.approx(
        [f.energy_per_atom for f in result.formulas], nan_ok=True)


def test_cancel_midway_marks_the_run_cancelled(project):
    from crystal_studio.core.progress import CancelToken

    cancel = CancelToken()

    def stop_after_first_relaxation(event):
        if event.metrics:
            cancel.cancel()

    with pytest.raises(Cancelled):
        predict_structures(project, ["NaCl", "LiF"], progress=stop_after_first_relaxation, cancel=cancel, **TINY)
    [run] = model_store.list_runs(project, "optimization")
    assert run.status == "cancelled"
    assert candidate_store.list_candidates(project, run.id) == []


def test_bad_formula_is_an_error_naming_it_and_stores_nothing(project):
    with pytest.raises(CrystalStudioError, match=r"Li2O\$"):
        predict_structures(project, ["NaCl", "Li2O$"], **TINY)
    with pytest.raises(CrystalStudioError, match="empty"):
        predict_structures(project, ["  "], **TINY)
    assert model_store.list_runs(project) == []


def test_every_relaxation_failing_is_reported_per_formula(project, monkeypatch):
    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ChgnetOracle, "relax", broken)
    result = predict_structures(project, ["NaCl"], **TINY)
    [outcome] = result.formulas
    assert outcome.status == "failed" and "no random crystal could be relaxed" in outcome.reason
    assert "boom" in outcome.reason and outcome.n_generated == 2 and result.n_candidates == 0


def test_cli_json_and_from_samples(project):
    path = project.path
    run_id = model_store.create_run(project, "sampling", {"n": 20}, 0, "cpu", {})
    add_samples(project, run_id, [("NaCl2", 9, {"compositionally_valid": False}), ("LiF", 6, {"compositionally_valid": True}),
                                  ("NaCl", 5, {"compositionally_valid": True})], complete_run="sampled")
    assert formulas_from_samples(project, run_id, 5) == ["LiF", "NaCl"]

    code, doc, _ = cli("csp", path, "--from-samples", run_id, "--top", 1, "-f", "Xx2O", "--trials", 1,
                       "--relax-steps", 3, "--device", "cpu", "--json")
    assert code == 3  # partial success: Xx2O failed
    assert set(doc) >= {"run_id", "method", "n_candidates", "formulas"} and doc["method"] == "csp_random"
    assert [f["formula"] for f in doc["formulas"]] == ["Xx2O", "LiF"] and doc["n_candidates"] == 1
    for f in doc["formulas"]:
        assert set(f) >= {"formula", "status", "energy_per_atom", "candidate_id", "reason"}
    failed, ok = doc["formulas"]
    assert failed["status"] == "failed" and failed["candidate_id"] is None and failed["reason"]
    assert ok["status"] == "ok" and math.isfinite(ok["energy_per_atom"])
    stored = model_store.get_run(project, doc["run_id"]).parameters
    assert stored["source"] == {"sampling_run": run_id, "top": 1}

    code, listed, _ = cli("candidates", path, "--run", doc["run_id"], "--json")
    assert code == 0 and [c["id"] for c in listed["candidates"]] == [ok["candidate_id"]]
    assert listed["candidates"][0]["formula"] == "LiF"

    with pytest.raises(CrystalStudioError, match="--formula"):  # in this process the error itself comes out
        cli("csp", path)


def test_cli_bad_formula_exits_2_naming_it(project):
    result = run_cli("csp", project.path, "-f", "NaCl", "-f", "Li2O$", "--json", timeout=120)
    assert result.returncode == 2 and "Li2O$" in result.stderr
    assert result.stdout == ""
