"""Sweeps: every (spec, method, seed) of a grid optimized as its own stored run, then one comparison.

Each cell of the grid is a task of an executor (:mod:`crystal_studio.core.tasks`):

- locally, the cells run one after another through :func:`~crystal_studio.design.job.run_optimization`
  on the project itself, exactly as ``crystal-studio optimize`` runs them;
- on Ray, the project is sent once as a snapshot (its models, datasets and reference structures);
  each task runs the same :func:`run_optimization` on a private scratch copy of it and returns the
  finished run (parameters, seed, device, versions, times, metrics, candidates), which the driver
  stores in the project in one transaction. Only the driver writes the project.

The same seeds on the same device give the same candidates either way. The comparison is
:func:`crystal_studio.design.comparison.compare_runs` of the sweep's runs (success under the
optimized models and under the judge, unique rate, wall time), also in the GUI's "compare runs" view.
"""

from __future__ import annotations

from dataclasses import dataclass

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.tasks import (
    Executor,
    LocalExecutor,
    Shared,
    TaskContext,
    TaskReport,
    TaskResources,
    task_resources,
)
from crystal_studio.design.spec import DesignSpec, spec_from_dict
from crystal_studio.ml import runtime
from crystal_studio.store.project import Project


@dataclass
class SweepResult:
    """The runs of a sweep in grid order (spec, method, seed), their comparison and the task report."""

    cells: list[dict]  # {"spec", "method", "seed", "run_id"} (run_id None: the cell's task stayed lost)
    comparison: list  # RunComparison of the stored runs, in grid order
    report: TaskReport

    @property
    def lost(self) -> list[dict]:
        return [c for c in self.cells if c["run_id"] is None]

    def as_json(self) -> dict:
        labels = [f"{c['spec']}/{c['method']}/seed {c['seed']}" for c in self.cells]
        return {"runs": self.cells, "comparison": [c.as_json() for c in self.comparison],
                "tasks": self.report.as_json(labels)}


def sweep_grid(specs: list[DesignSpec], methods: list[str], seeds: list[int]) -> list[dict]:
    """The cells of a sweep, specs outermost, then methods, then seeds."""
    return [{"spec": spec.to_dict(), "method": method, "seed": seed}
            for spec in specs for method in methods for seed in seeds]


def run_sweep(project: Project, specs: list[DesignSpec], methods: list[str], seeds: list[int], model_ids: list[int],
              n_candidates: int, n_steps: int, device: str = "auto", judge_model: int | None = None,
              dataset: str | None = None, generator_model: int | None = None, executor: Executor | None = None,
              progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> SweepResult:
    """Optimize every (spec, method, seed) with ``model_ids`` (judged by ``judge_model`` when given),
    each stored as a run; see the module docstring. Cancelling stops the sweep: finished runs stay
    stored (a local run cut short is marked cancelled, as ``optimize`` does)."""
    from crystal_studio.design.comparison import compare_runs
    from crystal_studio.design.methods import get_method
    from crystal_studio.store import models as model_store

    executor = executor or LocalExecutor()
    cancel = cancel or CancelToken()
    if not specs or not methods or not seeds:
        raise CrystalStudioError("a sweep needs at least one spec, one method and one seed")
    for method in methods:
        get_method(method)  # an unknown method fails before anything runs
    for mid in [*model_ids, *([judge_model] if judge_model is not None else [])]:
        model_store.get_model(project, mid, with_checkpoint=False)
    if judge_model is not None and judge_model in model_ids:
        raise CrystalStudioError(f"the judge (model {judge_model}) must not be one of the optimized models")
    cells = sweep_grid(specs, methods, seeds)
    task_device = runtime.task_device(executor, device)
    common = {"models": list(model_ids), "n_candidates": n_candidates, "n_steps": n_steps, "device": task_device,
              "judge_model": judge_model, "dataset": dataset, "generator_model": generator_model}
    if executor.remote:
        from crystal_studio.store.transfer import snapshot_bytes

        shared = executor.share({"snapshot": snapshot_bytes(project), "common": common})
        resources = task_resources(executor, task_device)
    else:
        shared = executor.share({"project": project, "common": common})
        resources = TaskResources()
    run_ids: dict[int, int] = {}

    def stored(index: int, result: dict) -> None:
        if "run" in result:
            from crystal_studio.store.transfer import import_run

            run_ids[index] = import_run(project, result["run"])
        else:
            run_ids[index] = result["run_id"]
        cell = cells[index]
        progress(ProgressEvent(len(run_ids), len(cells), f"run {run_ids[index]}: {cell['method']} seed {cell['seed']} "
                                                          f"on {cell['spec'].get('name', 'spec')}"))

    def notify(message: str) -> None:
        progress(ProgressEvent(len(run_ids), len(cells), message))

    def within(event: ProgressEvent) -> None:  # a local cell's own steps, as the message of the sweep's bar
        if event.run_id is None and event.total:
            progress(ProgressEvent(len(run_ids), len(cells), f"{event.message} {event.step}/{event.total}"))

    progress(ProgressEvent(0, len(cells), f"{len(cells)} optimizations on {executor.name}"))
    try:
        report = executor.run(optimization_task, cells, shared, resources, stored, cancel, within, notify)
    finally:
        shared.release()
    out = [{"spec": c["spec"].get("name", ""), "method": c["method"], "seed": c["seed"], "run_id": run_ids.get(i)}
           for i, c in enumerate(cells)]
    by_id = {r.run_id: r for r in compare_runs(project, list(run_ids.values()))}
    return SweepResult(out, [by_id[run_ids[i]] for i in sorted(run_ids) if run_ids[i] in by_id], report)


def optimization_task(shared: Shared, cell: dict, context: TaskContext) -> dict:
    """One cell of a sweep (a task): :func:`run_optimization` of the cell on the project (local) or on
    a scratch copy of its snapshot (remote), returning the run id or the exported run."""
    from crystal_studio.design.job import run_optimization

    payload = shared.get()
    common = payload["common"]
    if "project" in payload:
        project = payload["project"]
    else:
        from crystal_studio.store.transfer import open_scratch

        project = shared.derived("scratch", lambda: open_scratch(payload["snapshot"]))
    result = run_optimization(project, spec_from_dict(cell["spec"]), cell["method"], common["models"],
                              common["n_candidates"], common["n_steps"], cell["seed"], common["device"],
                              common["dataset"], context.progress, context.cancel, judge_model=common["judge_model"],
                              generator_model=common["generator_model"])
    if "project" in payload:
        return {"run_id": result.run_id}
    from crystal_studio.store.transfer import export_run

    return {"run": export_run(project, result.run_id)}
