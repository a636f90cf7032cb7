"""Runs other than optimizations (crystal-VAE sampling, structure prediction without models): their
candidates are summarized, listed and relaxed, and each is stored and completed in one transaction."""

from __future__ import annotations

import contextlib
import json

import pytest
from typer.testing import CliRunner

from crystal_studio.cli import app
from crystal_studio.design.job import run_summary
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project


@pytest.fixture
def commits(monkeypatch) -> list[tuple[int, str]]:
    """(candidates stored, status of the newest run) as each write transaction is about to commit."""
    original = Project.transaction
    seen: list[tuple[int, str]] = []

    @contextlib.contextmanager
    def spying(self):
        with original(self) as db:
            yield db
            row = db.execute("SELECT (SELECT COUNT(*) FROM candidates), status FROM runs ORDER BY id DESC").fetchone()
            if row is not None:
                seen.append(tuple(row))

    monkeypatch.setattr(Project, "transaction", spying)
    return seen


def first_with_candidates(commits: list[tuple[int, str]]) -> str:
    """The run status committed together with the first candidates."""
    return next(status for n, status in commits if n > 0)


@pytest.fixture
def sampled(design_project, commits):
    """(project, run id) of 16 crystals sampled from the tiny crystal VAE, the commits while sampling."""
    from crystal_studio.design.sampling import sample_model

    project, _, vae_id = design_project
    result = sample_model(project, vae_id, 16, seed=1, device="cpu")
    return project, result.run_id, list(commits)


def test_crystal_sampling_stores_candidates_and_completes_in_one_transaction(sampled):
    project, run_id, commits = sampled
    run = model_store.get_run(project, run_id)
    assert run.kind == "sampling" and run.status == "completed" and "structurally valid" in run.message
    assert candidate_store.list_candidates(project, run_id)
    assert first_with_candidates(commits) == "completed"


def test_candidates_of_a_sampling_run_are_summarized_without_spec_criteria(sampled):
    project, run_id, _ = sampled
    records = candidate_store.list_candidates(project, run_id)
    summary = run_summary(project, run_id)
    assert summary["n"] == len(records) and summary["criteria"] == {}
    assert summary["valid_rate"] == pytest.approx(sum(r.evaluation["valid"] for r in records) / len(records))
    assert 0 <= summary["novel_rate"] <= summary["unique_rate"] <= 1

    runner = CliRunner()
    done = runner.invoke(app, ["candidates", str(project.path), "--run", str(run_id), "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["summary"] == summary and len(doc["candidates"]) == len(records)
    table = runner.invoke(app, ["candidates", str(project.path), "--run", str(run_id)])
    assert table.exit_code == 0, table.output
    assert f"run {run_id} (sampling): {len(records)} candidates" in table.stdout
    assert "structurally_valid" in table.stdout


def test_relaxing_sampled_crystals_rechecks_structural_validity(sampled):
    from crystal_studio.design.relaxation import relax_candidates

    project, run_id, _ = sampled
    record = next(r for r in candidate_store.list_candidates(project, run_id) if r.evaluation["valid"])
    events = []
    [result] = relax_candidates(project, run_id, candidate_ids=[record.id], device="cpu", max_steps=2,
                                progress=events.append)
    assert result["properties"] == {}  # no predictor models: nothing re-predicted
    # progress at the start and after every FIRE step, in steps out of max_steps per candidate, with the largest force
    assert [(e.step, e.total) for e in events] == [(k, 2) for k in range(result["steps"] + 1)] + [(2, 2)]
    assert "FIRE step 0, max force" in events[0].message and events[-1].message == f"relaxed {record.formula}"
    assert set(result["criteria"]) == {"structurally_valid", "compositionally_valid"}
    assert result["criteria"]["compositionally_valid"] == record.evaluation["criteria"]["compositionally_valid"]
    assert candidate_store.get_candidate(project, record.id).relaxed_structure is not None


def test_add_candidates_completes_the_run_with_them_or_not_at_all(project):
    from pymatgen.core import Lattice, Structure

    run_id = model_store.create_run(project, "sampling", {}, 0, "cpu", {})
    structure = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    with pytest.raises(KeyError):  # the second evaluation has no formula
        candidate_store.add_candidates(project, run_id, [(structure, {"formula": "Po"}), (structure, {})],
                                       complete_run="done")
    assert candidate_store.list_candidates(project, run_id) == []
    assert model_store.get_run(project, run_id).status == "running"
    with pytest.raises(ValueError, match="1 energies for 2 candidates"):
        candidate_store.add_candidates(project, run_id, [(structure, {"formula": "Po"})] * 2, relaxed_energies=[-1.0])
    [cid] = candidate_store.add_candidates(project, run_id, [(structure, {"formula": "Po"})],
                                           relaxed_energies=[-1.5], complete_run="done")
    run = model_store.get_run(project, run_id)
    assert (run.status, run.message) == ("completed", "done") and run.finished
    record = candidate_store.get_candidate(project, cid)
    assert record.oracle_energy_per_atom == -1.5 and record.relaxed_structure == structure


def test_structure_prediction_without_models_completes_with_its_candidates_and_relaxes(project, commits):
    from crystal_studio.design.csp import predict_structures
    from crystal_studio.design.relaxation import relax_candidates

    result = predict_structures(project, ["NaCl"], trials=1, max_atoms=2, relax_steps=3, device="cpu")
    assert first_with_candidates(commits) == "completed"
    [record] = candidate_store.list_candidates(project, result.run_id)
    assert record.relaxed_structure is not None
    assert record.oracle_energy_per_atom == pytest.approx(record.evaluation["relaxation"]["energy_per_atom"])
    assert model_store.get_run(project, result.run_id).parameters["models"] == []

    [relaxed] = relax_candidates(project, result.run_id, device="cpu", max_steps=2)
    assert relaxed["id"] == record.id and relaxed["properties"] == {}
    assert "min_distance" in relaxed["criteria"] and relaxed["steps"] <= 2
    assert candidate_store.get_candidate(project, record.id).evaluation["relaxation"]["steps"] == relaxed["steps"]
