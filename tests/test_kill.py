"""Kill tests (issue 17, item 1): a real `crystal-studio` process is killed with SIGKILL at seeded random
moments during an import of thousands of crystals, a training run and an optimization run. Reopening
the project must find it intact (``integrity_check``), every committed record whole and readable, no
partial import, the interrupted run marked interrupted, and a resumed training run ending where an
uninterrupted one with the same seed ends."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from crystal_studio.core.structures import from_json
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project
from tests.ml_synthetic import synthetic_crystals, write_csv
from tests.test_runs import SPECS, TINY, cli, start, syn_project, wait_for_metrics  # noqa: F401 - fixture

IMPORT_SIZE = 3000


def read_only(path: Path) -> sqlite3.Connection:
    """The project file opened read-only, without the app (which would mark stale runs)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def kill_after(proc, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` unless it ended first; True when it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    return True


def assert_store_whole(path: Path) -> None:
    """Integrity ok, no orphaned rows, and every stored structure and candidate parses."""
    with closing(Project.open(path)) as project:
        db = project.db
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("SELECT count(*) FROM properties WHERE structure_id NOT IN "
                          "(SELECT id FROM structures)").fetchone()[0] == 0
        for (doc,) in db.execute("SELECT structure FROM structures UNION ALL SELECT structure FROM candidates"):
            assert len(from_json(doc)) > 0
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0] == 0


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("kill") / "big.csv", synthetic_crystals(IMPORT_SIZE, seed=11))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_killed_import_leaves_all_or_nothing(tmp_path, big_csv, seed):
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    assert cli("import", project, big_csv, "--dataset", "first").returncode == 0  # committed before the kill
    proc = start("import", project, big_csv, "--dataset", "second")
    killed = kill_after(proc, random.Random(seed).uniform(0.5, 6.0))
    assert_store_whole(project)
    with closing(read_only(project)) as conn:
        counts = dict(conn.execute("SELECT d.name, count(s.id) FROM datasets d LEFT JOIN structures s "
                                   "ON s.dataset_id = d.id GROUP BY d.id").fetchall())
    assert counts["first"] == IMPORT_SIZE
    assert counts.get("second", 0) in ((0, IMPORT_SIZE) if killed else (IMPORT_SIZE,)), counts


def final_val_loss(path: Path, run_id: int) -> list[float]:
    with closing(Project.open(path)) as project:
        return [value for _, value in model_store.run_metrics(project, run_id)["val_loss"]]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_a_training_run_killed_anywhere_resumes_to_the_uninterrupted_result(tmp_path, syn_project, seed):
    args = ("--dataset", "syn", "--epochs", "150", "--seed", "7", *TINY)
    reference = Path(shutil.copy(syn_project, tmp_path / "reference.sqlite"))
    done = cli("train", reference, *args, "--json")
    assert done.returncode == 0, done.stderr
    reference_curve = final_val_loss(reference, json.loads(done.stdout)["run_id"])

    victim = Path(shutil.copy(syn_project, tmp_path / "victim.sqlite"))
    proc = start("train", victim, *args)
    run_id = wait_for_metrics(victim, "train", proc)
    assert kill_after(proc, random.Random(seed).uniform(0.0, 1.5)), "the run ended before the kill"
    assert_store_whole(victim)
    with closing(Project.open(victim)) as project:
        assert model_store.get_run(project, run_id).status == "interrupted"
    resumed = cli("train", victim, "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert final_val_loss(victim, run_id) == pytest.approx(reference_curve, rel=1e-4, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6])
def test_a_killed_optimization_keeps_its_metrics_and_is_marked_interrupted(tmp_path, syn_project, seed):
    spec = json.loads((SPECS / "smoacs_perovskite_gap_2.5eV.json").read_text())
    spec["objectives"] = [o for o in spec["objectives"] if o["property"] == "band_gap"]
    spec_path = tmp_path / "gap.json"
    spec_path.write_text(json.dumps(spec))
    project = Path(shutil.copy(syn_project, tmp_path / "p.sqlite"))
    proc = start("optimize", project, "--spec", spec_path, "--models", "1", "--method", "smoacs",
                 "--candidates", "8", "--steps", "1000000", "--device", "cpu")
    run_id = wait_for_metrics(project, "optimization", proc)
    assert kill_after(proc, random.Random(seed).uniform(0.0, 2.0))
    assert_store_whole(project)
    with closing(Project.open(project)) as p:
        run = model_store.get_run(p, run_id)
        metrics = model_store.run_metrics(p, run_id)
    assert run.status == "interrupted" and "ended" in run.message
    for name, points in metrics.items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), name  # each step once, in order: no half-written step
