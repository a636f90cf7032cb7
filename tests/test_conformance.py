"""Every registered method and model kind honours the same contract, through the public API and the CLI:
it starts, reports progress events, stops when cancelled midway (the run is stored as cancelled), and a
finished run repeated from its stored parameters alone gives the same result. A method or kind added to
the registries is tested here without editing this file."""

from __future__ import annotations

import dataclasses
from contextlib import closing

import pytest

from crystal_studio.core.errors import Cancelled
from crystal_studio.core.paths import RESOURCES
from crystal_studio.core.progress import CancelToken
from crystal_studio.design.methods import METHODS
from crystal_studio.ml.kinds import KINDS
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from tests.clitools import invoke_cli as cli
from tests.conftest import generator_for
from tests.ml_synthetic import synthetic_crystals, write_csv

SPEC = RESOURCES / "specs" / "smoacs_perovskite_gap_2.5eV.json"
TARGETS = ["formation_energy_per_atom", "band_gap"]
TINY_TRAINING = {"epochs": 3, "ensemble": 2, "seed": 4, "batch_size": 8, "hidden": 12, "layers": 2, "cutoff": 4.5,
                 "n_gaussians": 12, "device": "cpu", "threads": 1}


class Recorder:
    """A progress callback that keeps every event and cancels the job at the ``cancel_at``-th one."""

    def __init__(self, cancel_at: int | None = None):
        self.events = []
        self.token = CancelToken()
        self.cancel_at = cancel_at

    def __call__(self, event) -> None:
        self.events.append(event)
        if self.cancel_at is not None and len(self.events) >= self.cancel_at:
            self.token.cancel()


# ------------------------------------------------------------------------------------------ methods


def _candidate_signature(project, run_id: int) -> list[tuple]:
    return [(c.formula, c.success, round(c.evaluation["properties"]["band_gap"], 5))
            for c in candidate_store.list_candidates(project, run_id)]


@pytest.mark.parametrize("method", list(METHODS))
def test_method_contract(design_project, method):
    from crystal_studio.design.job import repeat_optimization, run_optimization
    from crystal_studio.design.spec import load_spec

    project, model_id, vae_id = design_project
    generator = generator_for(method, vae_id)
    cancelled = Recorder(cancel_at=2)
    with pytest.raises(Cancelled):
        run_optimization(project, load_spec(SPEC), method, [model_id], 4, 4, seed=2, device="cpu", dataset="good",
                         progress=cancelled, cancel=cancelled.token, generator_model=generator)
    [stopped] = model_store.list_runs(project, "optimization")
    assert stopped.status == "cancelled" and candidate_store.list_candidates(project, stopped.id) == []

    seen = Recorder()
    first = run_optimization(project, load_spec(SPEC), method, [model_id], 4, 4, seed=2, device="cpu",
                             dataset="good", progress=seen, generator_model=generator)
    assert seen.events and seen.events[-1].total >= 1
    again = repeat_optimization(project, first.run_id, device="cpu")
    assert again.run_id != first.run_id and again.summary == first.summary
    assert _candidate_signature(project, again.run_id) == _candidate_signature(project, first.run_id)

    code, doc, output = cli("optimize", project.path, "--repeat", first.run_id, "--device", "cpu", "--json")
    assert code == 0, output
    assert doc["method"] == method and doc["summary"] == first.summary


def test_methods_json_lists_every_registered_method():
    code, doc, _ = cli("methods", "--json")
    assert code == 0
    assert [m["name"] for m in doc["methods"]] == list(METHODS)
    for entry in doc["methods"]:
        assert {"name", "title", "family", "needs", "options"} <= set(entry)
        assert all({"name", "type", "default", "help"} <= set(o) for o in entry["options"])


# ------------------------------------------------------------------------------------------ model kinds


@pytest.fixture(scope="module")
def training_project(tmp_path_factory):
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    root = tmp_path_factory.mktemp("conformance")
    project = Project.create(root / "p.sqlite")
    import_paths(project, [write_csv(root / "syn.csv", synthetic_crystals(24, seed=9))], "syn")
    project.close()
    return root / "p.sqlite"


def _numbers(metrics: dict) -> dict[tuple[str, str], float]:
    return {(group, key): value for group, values in metrics.items() for key, value in values.items()
            if isinstance(value, int | float)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_contract(training_project, kind, one_torch_thread):
    from crystal_studio.ml.kinds import PREDICTOR_KINDS, config_class, config_for
    from crystal_studio.ml.training import resume_training, train_model
    from crystal_studio.store.project import Project

    settable = {f.name for f in dataclasses.fields(config_class(kind))}
    tiny = {k: v for k, v in TINY_TRAINING.items() if k in settable}
    targets = TARGETS if kind in PREDICTOR_KINDS else []
    config = config_for(kind, targets, **tiny)
    with closing(Project.open(training_project)) as project:
        cancelled = Recorder(cancel_at=None)

        def cancel_after_first_epoch(event):
            cancelled(event)
            if event.metrics.get("val_loss") is not None:
                cancelled.token.cancel()

        with pytest.raises(Cancelled):
            train_model(project, "syn", config, f"{kind} interrupted", cancel_after_first_epoch, cancelled.token)
        run = model_store.list_runs(project, "train")[0]
        assert run.status == "cancelled" and run.parameters["config"]["kind"] == kind
        resumed = resume_training(project, run.id)
        assert model_store.get_run(project, run.id).status == "completed" and resumed.kind == kind

        stored = config_class(kind).from_dict(model_store.get_run(project, run.id).parameters["config"])
        repeated = train_model(project, "syn", stored, f"{kind} repeated")
        # an interrupted-and-resumed run ends where an uninterrupted one does
        assert _numbers(repeated.metrics) and _numbers(repeated.metrics) == pytest.approx(_numbers(resumed.metrics),
                                                                                          rel=1e-4)

    args = []
    for key, value in tiny.items():
        args += ["--set", f"{key}={value}"] if key == "n_gaussians" else [f"--{key.replace('_', '-')}", value]
    if targets:
        args += ["--targets", ",".join(targets)]
    code, doc, output = cli("train", training_project, "--dataset", "syn", "--model", kind, *args, "--json")
    assert code == 0, output
    assert doc["kind"] == kind
    assert _numbers(doc["metrics"]) == pytest.approx(_numbers(repeated.metrics), rel=1e-4)
