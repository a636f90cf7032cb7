"""The optimization job end to end: stored run, metrics and candidates; cancel; CLI verbs."""

from __future__ import annotations

import json

import pytest

from crystal_studio.core.errors import Cancelled
from crystal_studio.core.paths import RESOURCES
from crystal_studio.core.progress import CancelToken
from crystal_studio.design.job import run_optimization, run_summary
from crystal_studio.design.methods import METHODS
from crystal_studio.design.spec import load_spec
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from tests.clitools import run_cli as cli
from tests.conftest import generator_for

SPEC = RESOURCES / "specs" / "smoacs_perovskite_gap_2.5eV.json"


@pytest.mark.parametrize("method", list(METHODS))
def test_run_is_stored_with_metrics_and_evaluated_candidates(design_project, method):
    project, model_id, vae_id = design_project
    steps = []
    result = run_optimization(project, load_spec(SPEC), method, [model_id], n_candidates=4, n_steps=3, seed=1,
                              device="cpu", dataset="good", on_step=steps.append,
                              generator_model=generator_for(method, vae_id))
    assert 1 <= result.n_candidates <= 4 and steps  # latent methods return the distinct decodes they found
    run = model_store.get_run(project, result.run_id)
    assert run.status == "completed" and run.kind == "optimization" and run.seed == 1
    assert run.parameters["spec"]["name"].startswith("Perovskite") and run.versions
    metrics = model_store.run_metrics(project, result.run_id)
    assert len(metrics["loss/best"]) == len(steps)
    records = candidate_store.list_candidates(project, result.run_id)
    assert len(records) == result.n_candidates
    assert set(records[0].evaluation["criteria"]) == set(load_spec(SPEC).criteria_names())
    assert run_summary(project, result.run_id) == result.summary


def test_cancel_marks_the_run_cancelled(design_project):
    project, model_id, _ = design_project
    token = CancelToken()

    def stop_after_first(report):
        token.cancel()

    with pytest.raises(Cancelled):
        run_optimization(project, load_spec(SPEC), "smoacs", [model_id], 4, 10, device="cpu", cancel=token,
                         on_step=stop_after_first)
    [run] = model_store.list_runs(project, "optimization")
    assert run.status == "cancelled"
    assert candidate_store.list_candidates(project, run.id) == []


def test_cli_optimize_candidates_export(design_project, tmp_path):
    project, model_id, _ = design_project
    opt = cli("optimize", project.path, "--spec", SPEC, "--method", "smoacs", "--models", model_id,
              "--candidates", 3, "--steps", 2, "--seed", 0, "--device", "cpu", "--json")
    assert opt.returncode == 0, opt.stderr
    doc = json.loads(opt.stdout)
    assert doc["method"] == "smoacs" and doc["n_candidates"] == 3 and "success_rate" in doc["summary"]
    listed = json.loads(cli("candidates", project.path, "--run", doc["run_id"], "--json").stdout)
    assert len(listed["candidates"]) == 3 and {"id", "formula", "success", "criteria", "properties"} <= set(
        listed["candidates"][0])
    exported = cli("export", project.path, "--run", doc["run_id"], "--format", "poscar", "--out", tmp_path / "c")
    assert exported.returncode == 0 and len(list((tmp_path / "c").glob("*.vasp"))) == 3
    bad = cli("optimize", project.path, "--spec", RESOURCES / "specs" / "builtin_bulk_modulus_160GPa.json",
              "--models", model_id, "--candidates", 2, "--steps", 1)
    assert bad.returncode == 2 and "spec needs bulk_modulus" in bad.stderr
