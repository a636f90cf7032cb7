"""Renaming and deleting datasets, runs, models and candidates (store/edit.py), and the `rename` and
`delete` verbs run as a user runs them (exit codes, JSON, the refusal without --yes)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from crystal_studio.core.errors import CrystalStudioError, NotFoundError
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import edit
from crystal_studio.store import models as model_store
from crystal_studio.store.importer import import_paths
from crystal_studio.store.project import Project, StructureQuery
from tests.clitools import run_cli as cli
from tests.conftest import GOOD


@pytest.fixture
def good(project):
    """The test project with tests/data/good as dataset 'good' and its hull."""
    from crystal_studio.store.derived import compute_dataset_hull

    import_paths(project, [GOOD], "good")
    compute_dataset_hull(project, "good")
    return project


def _finished_run(project, kind="optimization", parameters=None, status="completed") -> int:
    run_id = model_store.create_run(project, kind, parameters or {}, 0, "cpu", {})
    model_store.update_run(project, run_id, status=status, message="done")
    return run_id


def _candidates(project, run_id: int, n: int = 3) -> list[int]:
    structures = [s for _, s in project.iter_structures(StructureQuery(dataset="good"))][:n]
    return candidate_store.add_candidates(
        project, run_id, [(s, {"formula": s.composition.reduced_formula, "success": True}) for s in structures])


def _model(project, dataset: str | None = "good", run_id: int | None = None) -> int:
    return model_store.add_model(project, "m", "gnn", ["band_gap"], {"training": {"dataset": dataset}}, {}, {}, b"x",
                                 dataset_id=project.dataset_id(dataset) if dataset else None, run_id=run_id)


# ------------------------------------------------------------------ datasets


def test_rename_dataset_refuses_empty_or_taken_names_and_follows_runs_models_and_hull(good):
    import_paths(good, [GOOD / "SrTiO3.cif"], "other")
    ds_id = good.dataset_id("good")
    train = _finished_run(good, "train", {"dataset": "good", "dataset_id": ds_id, "name": "m"})
    opt = _finished_run(good, parameters={"reference_dataset": "good", "method": "smoacs"})
    unrelated = _finished_run(good, parameters={"reference_dataset": "other"})
    model_id = _model(good, run_id=train)
    for bad, message in (("", "cannot be empty"), ("   ", "cannot be empty"), ("other", "already"),
                         ("two\nlines", "control characters"), ("x" * 201, "at most 200")):
        with pytest.raises(CrystalStudioError, match=message):
            edit.rename_dataset(good, "good", bad)
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        edit.rename_dataset(good, "nope", "x")
    assert edit.rename_dataset(good, "good", "good") == 0
    assert good.dataset_names() == ["good", "other"]

    assert edit.rename_dataset(good, "good", "  better  ") == 2
    assert good.dataset_names() == ["better", "other"] and good.dataset_id("better") == ds_id
    assert model_store.get_run(good, train).parameters["dataset"] == "better"
    assert model_store.get_run(good, opt).parameters["reference_dataset"] == "better"
    assert model_store.get_run(good, unrelated).parameters["reference_dataset"] == "other"
    record = model_store.get_model(good, model_id, with_checkpoint=False)
    assert record.dataset == "better" and record.hyperparameters["training"]["dataset"] == "better"
    sources = {r[0] for r in good.db.execute("SELECT DISTINCT source FROM properties WHERE name = 'e_above_hull'")}
    assert sources == {"dataset hull: better"}
    assert good.count(StructureQuery(dataset="better")) == 9


def test_rename_and_delete_are_refused_while_a_live_run_uses_the_dataset(good):
    run_id = model_store.create_run(good, "polymorphs", {"dataset": "good"}, 0, "cpu", {})  # running, in this process
    with pytest.raises(model_store.RunBusyError, match=f"run {run_id} .*is using it"):
        edit.rename_dataset(good, "good", "better")
    with pytest.raises(model_store.RunBusyError, match="cannot delete dataset 'good'"):
        edit.delete_dataset(good, "good")
    with pytest.raises(model_store.RunBusyError, match="stop it"):
        edit.delete_run(good, run_id)
    assert good.dataset_names() == ["good"] and good.count() == 9
    model_store.update_run(good, run_id, status="cancelled")
    edit.rename_dataset(good, "good", "better")


def test_delete_dataset_takes_its_rows_keeps_models_that_still_predict_and_never_reuses_ids(good, one_torch_thread):
    import torch

    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, load_predictor, predict_structures, save_predictor

    ds_id = good.dataset_id("good")
    structures = [s for _, s in good.iter_structures(StructureQuery(dataset="good"))]
    top_structure = max(good.ids())
    torch.manual_seed(0)
    predictor = CrystalPredictor(GNNConfig(n_targets=1, hidden=8, layers=1, n_gaussians=8), ["band_gap"], members=1)
    predictor.set_normalization([1.0], [1.0])
    model_id = save_predictor(good, predictor, "tiny", metrics={}, dataset_id=ds_id)
    train = _finished_run(good, "train", {"dataset": "good", "dataset_id": ds_id, "split": {"test": good.ids()[:2]}})
    before_mean, _ = predict_structures(load_predictor(good, model_id)[1], structures)

    plan = edit.dataset_deletion(good, "good")
    assert plan.removed == {"structures": 9, "properties": 19, "decompositions": 5} and not plan.deleted
    assert f"1 model trained on it (#{model_id}) stays" in plan.summary() and f"#{train}" in plan.summary()
    assert good.count() == 9  # a preview deletes nothing

    done = edit.delete_dataset(good, "good")
    assert done.deleted and done.removed == plan.removed
    assert good.dataset_names() == [] and good.count() == 0
    for table in ("structures", "properties", "decompositions"):
        assert good.db[table].count == 0
    assert good.info()["counts"]["datasets"] == 0
    record = [m for m in model_store.list_models(good) if m.id == model_id][0]
    assert record.dataset is None and record.dataset_id == ds_id
    assert model_store.get_run(good, train).parameters["dataset"] == "good"  # the record of what was done
    after_mean, _ = predict_structures(load_predictor(good, model_id)[1], structures)
    assert torch.allclose(torch.as_tensor(before_mean), torch.as_tensor(after_mean))

    import_paths(good, [GOOD], "good")  # the same name again: new ids for the dataset and every structure
    assert good.dataset_id("good") > ds_id and min(good.ids()) > top_structure
    assert [m.dataset for m in model_store.list_models(good) if m.id == model_id] == [None]


def test_novelty_against_a_deleted_dataset_finds_nothing(good):
    from crystal_studio.design.job import _reference_structures
    from crystal_studio.design.sampling import _dataset_formulas

    edit.delete_dataset(good, "good")
    assert _reference_structures(good, "good", []) == []
    assert _dataset_formulas(good, None) == set()


# ------------------------------------------------------------------ runs


def test_rename_run_sets_and_clears_its_name(good):
    run_id = _finished_run(good)
    edit.rename_run(good, run_id, "  first try  ")
    assert model_store.get_run(good, run_id).name == "first try"
    assert model_store.list_runs(good)[0].as_json()["name"] == "first try"
    with pytest.raises(CrystalStudioError, match="control characters"):
        edit.rename_run(good, run_id, "a\tb")
    edit.rename_run(good, run_id, "")
    assert model_store.get_run(good, run_id).name == ""
    with pytest.raises(NotFoundError, match=f"no run with id 99 .*have: {run_id}"):
        edit.rename_run(good, 99, "x")


def test_delete_run_takes_metrics_candidates_samples_and_state_and_keeps_its_model(good):
    from crystal_studio.store.samples import add_samples, list_samples

    other = _finished_run(good)
    kept_candidates = _candidates(good, other, 2)
    run_id = _finished_run(good, "train", {"dataset": "good"}, status="cancelled")
    model_store.record_metrics(good, run_id, 1, {"loss": 1.0, "val_loss": 2.0})
    ids = _candidates(good, run_id, 3)
    add_samples(good, run_id, [("NaCl", 4, {}), ("KBr", 1, {})])
    model_store.save_run_state(good, run_id, b"state")
    model_id = _model(good, run_id=run_id)

    plan = edit.run_deletion(good, run_id)
    assert plan.removed == {"metrics": 2, "candidates": 3, "samples": 2, "state_files": 1}
    assert plan.what == f"run {run_id} (train, cancelled)" and f"#{model_id}" in plan.summary()
    edit.delete_run(good, run_id)
    with pytest.raises(NotFoundError):
        model_store.get_run(good, run_id)
    assert model_store.run_metrics(good, run_id) == {}
    assert good.db.execute("SELECT COUNT(*) FROM candidates WHERE id IN (?,?,?)", ids).fetchone()[0] == 0
    assert good.db["formula_samples"].count == 0
    assert not model_store.run_state_path(good, run_id).exists()
    assert [c.id for c in candidate_store.list_candidates(good, other)] == kept_candidates
    assert model_store.get_model(good, model_id, with_checkpoint=False).run_id == run_id  # names no run now
    assert [r.id for r in model_store.list_runs(good)] == [other]
    with pytest.raises(NotFoundError):
        list_samples(good, run_id)

    new_run = _finished_run(good)
    assert new_run > run_id  # a deleted run's id is never given again (models and runs name runs by id)
    assert min(_candidates(good, new_run, 1)) > max(ids)


def test_a_running_run_whose_process_died_can_be_deleted(good):
    run_id = model_store.create_run(good, "optimization", {}, 0, "cpu", {})
    with good.transaction() as db:
        db.execute("UPDATE runs SET owner_pid = ?, owner_host = ? WHERE id = ?",
                   [2**22 + 12345, __import__("socket").gethostname(), run_id])
    edit.delete_run(good, run_id)
    assert model_store.list_runs(good) == []


# ------------------------------------------------------------------ candidates and models


def test_delete_candidates_is_all_or_nothing_and_notes_are_labels(good):
    run_a, run_b = _finished_run(good), _finished_run(good)
    a, b = _candidates(good, run_a, 3), _candidates(good, run_b, 2)
    with pytest.raises(NotFoundError, match="no candidate with id 999"):
        edit.delete_candidates(good, [a[0], 999])
    with pytest.raises(CrystalStudioError, match="no candidates given"):
        edit.candidates_deletion(good, [])
    assert good.db["candidates"].count == 5
    plan = edit.candidates_deletion(good, [a[0], b[1], a[0]])
    assert plan.what == f"2 candidates of runs #{run_a}, #{run_b}" and plan.removed == {"candidates": 2}
    edit.delete_candidates(good, [a[0], b[1]])
    assert [c.id for c in candidate_store.list_candidates(good, run_a)] == a[1:]
    assert [c.id for c in candidate_store.list_candidates(good, run_b)] == b[:1]
    candidate_store.set_flag(good, a[1], notes="promising")
    assert candidate_store.get_candidate(good, a[1]).notes == "promising"


def test_a_deleted_models_id_is_never_given_again(good):
    first = _model(good)
    opt = _finished_run(good, parameters={"models": [first], "judge_model": None})
    plan = edit.model_deletion(good, first)
    assert f"#{opt}" in plan.summary() and "can no longer be repeated" in plan.summary()
    model_store.delete_model(good, first)
    assert _model(good) > first


def test_an_older_project_migrates_to_run_names_and_id_floors(tmp_path):
    path = tmp_path / "v5.sqlite"
    old = Project(path)
    old.migrate(target=5)
    with old.transaction() as db:
        db["runs"].insert({"kind": "train", "status": "completed", "parameters": "{}", "started": "x"})
    old.close()
    project = Project.open(path)
    assert model_store.list_runs(project)[0].name == ""
    edit.delete_run(project, 1)
    assert _finished_run(project) == 2
    project.close()


# ------------------------------------------------------------------ the command line


def test_cli_rename_and_delete(good):
    run_id = _finished_run(good, parameters={"reference_dataset": "good", "method": "smoacs"})
    ids = _candidates(good, run_id, 3)
    path = good.path
    good.close()

    renamed = cli("rename", path, "--dataset", "good", "better", "--json")
    assert renamed.returncode == 0, renamed.stderr
    assert json.loads(renamed.stdout) == {"renamed": "dataset", "old": "good", "new": "better", "runs_updated": 1}
    taken = cli("rename", path, "--dataset", "better", "better ", "--run", str(run_id), "x")
    assert taken.returncode == 2 and "exactly one of --dataset, --run, --model, --candidate" in taken.stderr
    assert cli("rename", path, "--run", run_id, "first try").returncode == 0
    assert cli("rename", path, "--candidate", ids[0], "keep this").returncode == 0

    refused = cli("delete", path, "--dataset", "better")  # stdin is not a terminal and there is no --yes
    assert refused.returncode == 2 and refused.stdout == ""
    assert "not deleted (pass --yes" in refused.stderr and "9 structures, 19 property values" in refused.stderr
    dry = cli("delete", path, "--candidates", f"{ids[0]},{ids[1]}", "--dry-run", "--json")
    assert dry.returncode == 0
    assert json.loads(dry.stdout) == {"what": f"2 candidates of run #{run_id}", "deleted": False,
                                      "removed": {"candidates": 2}, "kept": [], "dry_run": True}
    gone = cli("delete", path, "--candidates", f"{ids[0]},{ids[1]}", "--yes", "--json")
    assert gone.returncode == 0 and json.loads(gone.stdout)["deleted"] is True
    missing = cli("delete", path, "--candidates", str(ids[0]), "--yes")
    assert missing.returncode == 2 and f"no candidate with id {ids[0]}" in missing.stderr
    deleted = cli("delete", path, "--dataset", "better", "-y", "--json")
    assert deleted.returncode == 0
    assert json.loads(deleted.stdout)["removed"] == {"structures": 9, "properties": 19, "decompositions": 5}

    project = Project.open(path)
    try:
        assert project.dataset_names() == []
        run = model_store.get_run(project, run_id)
        assert run.name == "first try" and run.parameters["reference_dataset"] == "better"
        assert [(c.id, c.notes) for c in candidate_store.list_candidates(project, run_id)] == [(ids[2], "")]
    finally:
        project.close()
    run_gone = cli("delete", path, "--run", run_id, "--yes")
    assert run_gone.returncode == 0 and f"deleted run {run_id} (optimization, completed, “first try”)" in run_gone.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    conn.close()
