"""Dataset screening ('screen'): the dataset predicted chunk by chunk as executor tasks, ranked in
dataset order, gives the best structures under the spec's loss; a cancel stops it and marks the run.
(The same run on a Ray cluster is checked in test_ray.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crystal_studio.core.errors import Cancelled
from crystal_studio.core.progress import CancelToken, no_progress
from crystal_studio.core.tasks import ONE_CPU, LocalExecutor, TasksLost
from crystal_studio.design.job import run_optimization
from crystal_studio.design.optimizers.baselines import DatasetScreening
from crystal_studio.design.optimizers.objectives import ObjectiveLoss
from crystal_studio.design.spec import load_spec
from crystal_studio.ml.predictor import predict_structures
from crystal_studio.store import models as model_store
from crystal_studio.store.candidates import list_candidates
from crystal_studio.store.importer import import_paths
from crystal_studio.store.project import StructureQuery
from tests.clitools import run_cli
from tests.conftest import GOOD, save_tiny_predictor

SPEC = Path(__file__).resolve().parents[1] / "resources" / "specs" / "smoacs_perovskite_gap_2.5eV.json"


@pytest.fixture
def screened(project, one_torch_thread, monkeypatch):
    """The good structures as dataset 'good', a tiny untrained predictor, and chunks of 2 structures
    (so a screen has several steps): (project, model id, predictor)."""
    import_paths(project, [GOOD], "good")
    model_id, predictor = save_tiny_predictor(project)
    monkeypatch.setattr(DatasetScreening, "chunk", 2)
    return project, model_id, predictor


def test_screen_keeps_the_lowest_loss_structures_of_the_dataset(screened):
    project, model_id, predictor = screened
    spec = load_spec(SPEC)
    rows = list(project.iter_structures(StructureQuery(dataset="good", valid_only=True)))
    assert len(rows) >= 5, "the test needs several chunks"
    mean, std = predict_structures(predictor.eval(), [s for _, s in rows])
    loss = ObjectiveLoss(spec, predictor).total(torch.as_tensor(mean), torch.as_tensor(std)).numpy()
    best = [f"good structure {rows[k][0]['id']}" for k in np.argsort(loss, kind="stable")[:3]]

    result = run_optimization(project, spec, "screen", [model_id], n_candidates=3, n_steps=1, device="cpu",
                              dataset="good")
    run = model_store.get_run(project, result.run_id)
    assert run.status == "completed"
    assert [c.evaluation["origin"] for c in list_candidates(project, result.run_id)] == best
    steps = [s for s, in project.db.execute(
        "SELECT DISTINCT step FROM run_metrics WHERE run_id = ? ORDER BY step", [result.run_id])]
    assert steps == list(range(1, -(-len(rows) // 2) + 1))  # one step per chunk, in order


def test_cancel_during_a_screen_marks_the_run_cancelled(screened):
    project, model_id, _ = screened
    token = CancelToken()
    seen = []

    def progress(event):  # cancel after the second chunk's step
        seen.append(event)
        if event.metrics and event.step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        run_optimization(project, load_spec(SPEC), "screen", [model_id], n_candidates=3, n_steps=1, device="cpu",
                         dataset="good", progress=progress, cancel=token)
    [run] = model_store.list_runs(project, "optimization")
    assert run.status == "cancelled"
    assert list_candidates(project, run.id) == []
    assert max(e.step for e in seen if e.metrics) == 2


def test_executor_applies_to_screen_only(screened):
    project, model_id, _ = screened
    result = run_cli("optimize", project.path, "--spec", SPEC, "--models", model_id, "--method", "smoacs",
                     "--executor", "ray", timeout=120)
    assert result.returncode == 2
    assert "splits the work of method 'screen'" in result.stderr and "sweep --executor ray" in result.stderr


class LosingExecutor(LocalExecutor):
    """Runs tasks here but reports task 2 (the second chunk) lost for good, as Ray does after its retries."""

    def iterate(self, fn, items, shared=None, resources=ONE_CPU, cancel=None, progress=no_progress, notify=None,
                report=None):
        for index, result in super().iterate(fn, items, shared, resources, cancel, progress, notify, report):
            if index == 1:
                report.done -= 1
                report.failed[index] = "lost 3 times, last: WorkerCrashedError"
                continue
            yield index, result


def test_a_chunk_lost_for_good_fails_the_run_instead_of_ranking_part_of_the_dataset(screened):
    project, model_id, _ = screened
    with pytest.raises(TasksLost, match=r"structures 3–4 of dataset 'good'"):
        run_optimization(project, load_spec(SPEC), "screen", [model_id], n_candidates=3, n_steps=1, device="cpu",
                         dataset="good", executor=LosingExecutor())
    [run] = model_store.list_runs(project, "optimization")
    assert run.status == "failed" and "structures 3–4" in run.message
    assert list_candidates(project, run.id) == []
