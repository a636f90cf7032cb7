"""Polymorph datasets: PyXtal random crystals relaxed by CHGNet, stored with their energies, resumable."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from typer.testing import CliRunner

from crystal_studio.cli import app
from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.core.progress import CancelToken
from crystal_studio.design.polymorphs import RUN_KIND, generate_polymorphs, stored_names, trial_name
from crystal_studio.store import models as model_store
from crystal_studio.store.project import StructureQuery

TINY = {"per_formula": 2, "relax_steps": 5, "max_atoms": 4, "device": "cpu"}


def rows(project, dataset="poly"):
    return {r["name"]: r for r in project.page(StructureQuery(dataset=dataset), limit=1000)}


def whole_trials(names: set[str]) -> None:
    """Every frame row has its trial's final row."""
    for name in names:
        if "/f" in name:
            assert name.rsplit("/f", 1)[0] in names


def test_rows_frames_resume_and_bad_formulas(project):
    events = []
    result = generate_polymorphs(project, ["NaCl", "Xx2O", "Al2O3"], "poly", frames=2, progress=events.append, **TINY)
    stored = rows(project)
    finals = {n: r for n, r in stored.items() if r["properties"]["relaxed"] == 1.0}
    assert set(finals) == {trial_name("NaCl", 0, 0), trial_name("NaCl", 0, 1)} == {"NaCl/s0/t0", "NaCl/s0/t1"}
    frames = set(stored) - set(finals)
    assert frames and all(r["properties"]["relaxed"] == 0.0 for n, r in stored.items() if n in frames)
    assert frames <= {f"NaCl/s0/t{t}/f{k}" for t in range(2) for k in range(2)}
    whole_trials(set(stored))
    for row in stored.values():
        props = row["properties"]
        assert row["reduced_formula"] == "NaCl" and row["nsites"] <= 4
        assert math.isfinite(props["energy_per_atom"]) and props["relax_converged"] in (0.0, 1.0)
    assert result.n_rows == len(stored) and result.n_relaxed == 2 and result.rate_per_min > 0

    by = {f.formula: f for f in result.formulas}
    assert by["NaCl"].status == "ok" and by["NaCl"].n_stored == len(stored) and by["NaCl"].n_relaxed == 2
    assert by["Xx2O"].status == "failed" and "unknown element Xx" in by["Xx2O"].reason
    assert by["Al2O3"].status == "failed" and "max-atoms" in by["Al2O3"].reason
    assert {f.formula for f in result.failed} == {"Xx2O", "Al2O3"}

    run = model_store.get_run(project, result.run_id)
    assert run.kind == RUN_KIND and run.status == "completed" and run.parameters["frames"] == 2
    assert any(e.run_id == result.run_id for e in events)
    assert any("structures/min" in e.message for e in events if e.metrics)
    assert len(model_store.run_metrics(project, result.run_id)["energy_per_atom"]) == 2

    again = generate_polymorphs(project, ["NaCl"], "poly", frames=2, **TINY)  # resume: nothing left to do
    assert again.n_rows == 0 and again.formulas[0].n_existing == 2 and again.formulas[0].status == "ok"
    assert rows(project).keys() == stored.keys()

    with pytest.raises(CrystalStudioError, match=r"Li2O\$"):  # not a formula: an error naming it, nothing stored
        generate_polymorphs(project, ["LiF", "Li2O$"], "other", **TINY)
    assert "other" not in project.dataset_names()


class CancelInside(CancelToken):
    """Once armed, cancels itself at the ``n``-th check: the job checks before a trial and the oracle at the
    start of a relaxation and after each FIRE step, so n = 3 lands inside the next relaxation."""

    def __init__(self):
        super().__init__()
        self.n: int | None = None

    def check(self) -> None:
        if self.n is not None:
            self.n -= 1
            if self.n <= 0:
                self.cancel()
        super().check()


def test_cancel_midway_keeps_whole_trials_and_a_rerun_completes(project):
    cancel = CancelInside()

    def arm_after_first_trial(event):
        if event.metrics:
            cancel.n = 3

    with pytest.raises(Cancelled) as raised:
        generate_polymorphs(project, ["LiF"], "poly", frames=3, progress=arm_after_first_trial, cancel=cancel, **TINY)
    assert any("optimize" in str(entry.path) for entry in raised.traceback)  # it stopped inside FIRE
    [run] = model_store.list_runs(project, RUN_KIND)
    assert run.status == "cancelled" and "again" in run.message
    first = stored_names(project, "poly")
    assert "LiF/s0/t0" in first and "LiF/s0/t1" not in first
    whole_trials(first)

    result = generate_polymorphs(project, ["LiF"], "poly", frames=3, **TINY)
    outcome = result.formulas[0]
    assert outcome.n_existing == 1 and outcome.n_relaxed == 1 and outcome.status == "ok"
    names = stored_names(project, "poly")
    assert names >= first and {"LiF/s0/t0", "LiF/s0/t1"} <= names
    assert len(names) == len(first) + result.n_rows
    whole_trials(names)
    assert Counter(n.split("/")[2] for n in names)["t1"] == 1 + outcome.n_frames


def test_cli_json(project):
    path = project.path
    project.close()
    result = CliRunner().invoke(app, ["polymorphs", str(path), "-f", "NaCl", "-f", "Xx2O", "--dataset", "poly",
                                      "--per-formula", "1", "--frames", "1", "--relax-steps", "3", "--max-atoms", "4",
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 3, result.output  # partial: Xx2O failed
    doc = json.loads(result.stdout)
    assert set(doc) >= {"run_id", "dataset", "formulas", "n_rows", "wall_s", "rate_per_min"}
    ok, failed = doc["formulas"]
    assert ok["formula"] == "NaCl" and ok["status"] == "ok" and ok["n_relaxed"] == 1
    assert failed["status"] == "failed" and "Xx" in failed["reason"]
    assert doc["n_rows"] == ok["n_stored"] >= 1 and "structures/min" in result.stderr

    again = CliRunner().invoke(app, ["polymorphs", str(path), "-f", "NaCl", "--dataset", "poly", "--per-formula", "1",
                                     "--relax-steps", "3", "--max-atoms", "4", "--device", "cpu", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["n_rows"] == 0

    missing = CliRunner().invoke(app, ["polymorphs", str(path), "-f", "NaCl"])
    assert isinstance(missing.exception, CrystalStudioError) and "--dataset" in str(missing.exception)
