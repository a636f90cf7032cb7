"""Relax candidates with CHGNet and check whether their success survives relaxation.

The job runs on an executor (:mod:`crystal_studio.core.tasks`): one task per candidate, a pure
function of the candidate (structure as a dict, its designed site charges and stored criteria) and of
what every task shares (the run's predictor and judge weights, the spec, the relaxation settings),
sent once. Results come back to the driver, which alone stores them, one candidate at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.structures import min_periodic_distance
from crystal_studio.core.tasks import (
    Executor,
    LocalExecutor,
    Shared,
    TaskContext,
    TaskReport,
    TasksLost,
    task_resources,
)
from crystal_studio.design.evaluation import evaluate_structure, rejudged, structurally_valid
from crystal_studio.design.spec import spec_from_dict
from crystal_studio.ml import runtime
from crystal_studio.oracles.chgnet_oracle import chgnet_threads
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project


@dataclass
class RelaxResult:
    """Per-candidate summaries (in the run's candidate order) of the relaxations that finished, and
    what became of the tasks (retried and lost ones, see :class:`~crystal_studio.core.tasks.TaskReport`)."""

    results: list[dict]
    report: TaskReport
    lost: list[dict]  # {"id", "formula", "reason"} of candidates whose task stayed lost


def relax_candidates(project: Project, run_id: int, only_success: bool = False, candidate_ids: list[int] | None = None,
                     device: str = "auto", fmax: float = 0.05, max_steps: int = 300,
                     progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                     executor: Executor | None = None) -> list[dict]:
    """Relax a run's candidates (cell free, ``fmax`` eV/Å), store each relaxed structure with its CHGNet
    energy (eV/atom), RMSD and largest displacement (Å), and the run's predictors' properties and
    criteria re-evaluated on the relaxed structure (with the candidate's designed site charges), and
    the judge's too when the run was judged. Returns one summary dict per candidate.

    A run without predictor models (structure prediction without models, crystal sampling) is not
    re-predicted: its properties after relaxation are empty. A run without a spec (crystal sampling)
    keeps its stored criteria with structural validity re-checked (relaxation leaves the composition).

    ``executor`` (default local) runs the relaxations; when some of its tasks stay lost, the finished
    ones are stored and :class:`~crystal_studio.core.tasks.TasksLost` names the rest."""
    outcome = relax_run(project, run_id, only_success, candidate_ids, device, fmax, max_steps, progress, cancel, executor)
    if outcome.lost:
        raise TasksLost(lost_message(outcome), outcome.report)
    return outcome.results


def lost_message(outcome: RelaxResult) -> str:
    names = ", ".join(f"{c['id']} ({c['formula']})" for c in outcome.lost)
    return (f"{len(outcome.lost)} of {outcome.report.total} relaxations were lost with their workers and not stored: "
            f"candidates {names}; the other {len(outcome.results)} were stored")


def relax_run(project: Project, run_id: int, only_success: bool = False, candidate_ids: list[int] | None = None,
              device: str = "auto", fmax: float = 0.05, max_steps: int = 300,
              progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
              executor: Executor | None = None) -> RelaxResult:
    """:func:`relax_candidates`, reporting lost tasks in the result instead of raising."""
    executor = executor or LocalExecutor()
    cancel = cancel or CancelToken()
    run = model_store.get_run(project, run_id)
    records = candidate_store.list_candidates(project, run_id, only_success)
    if candidate_ids is not None:
        wanted = set(candidate_ids)
        records = [r for r in records if r.id in wanted]
    task_device = runtime.task_device(executor, device)
    model_ids = run.parameters.get("models") or []
    judge_id = run.parameters.get("judge_model")
    payload = {"spec": run.parameters.get("spec"), "device": task_device, "fmax": fmax, "max_steps": max_steps,
               "models": [_model_parts(project, mid) for mid in model_ids],
               "judge": _model_parts(project, judge_id) if judge_id is not None else None}
    items = [{"id": r.id, "formula": r.formula, "structure": r.structure.as_dict(),
              "charges": r.evaluation.get("site_charges"), "criteria": r.evaluation.get("criteria", {})}
             for r in records]
    shared = executor.share(payload)
    total_steps = len(records) * max_steps
    done: dict[int, dict] = {}

    def stored(index: int, result: dict) -> None:
        from pymatgen.core import Structure

        record = records[index]
        summary = result["summary"]
        candidate_store.set_relaxation(project, record.id, Structure.from_dict(result["final"]),
                                       summary["energy_per_atom"], summary)
        done[index] = {"id": record.id, "formula": record.formula, "success_before": record.success, **summary}
        position = (index + 1) if not executor.remote else len(done)
        progress(ProgressEvent(position * max_steps, total_steps,
                               f"relaxed {record.formula}" + (f" ({len(done)}/{len(records)})" if executor.remote else "")))

    def notify(message: str) -> None:
        progress(ProgressEvent(len(done) * max_steps, total_steps, message))

    try:
        report = executor.run(relax_task, items, shared, task_resources(executor, task_device), stored, cancel,
                              progress, notify)
    finally:
        shared.release()
    lost = [{"id": records[i].id, "formula": records[i].formula, "reason": why} for i, why in sorted(report.failed.items())]
    return RelaxResult([done[i] for i in sorted(done)], report, lost)


def _model_parts(project: Project, model_id: int) -> dict:
    """What a task needs to rebuild stored model ``model_id``: kind, hyperparameters, targets, weights."""
    record = model_store.get_model(project, model_id)
    return {"id": model_id, "kind": record.kind, "hyperparameters": record.hyperparameters,
            "targets": list(record.targets), "checkpoint": record.checkpoint}


def _rebuild(parts: dict, device):
    from crystal_studio.ml.kinds import get_kind
    from crystal_studio.ml.predictor import load_state

    where = f"model {parts['id']}"
    model = get_kind(parts["kind"]).load().rebuild(parts["hyperparameters"], parts["targets"],
                                                   load_state(parts["checkpoint"], where), where)
    return model.to(device).eval()


def _relax_models(payload: dict):
    """(predictor or None, judge or None, torch device) of a relaxation job, built from its payload."""
    from crystal_studio.design.optimizers.objectives import PredictorSet
    from crystal_studio.ml.runtime import resolve_device

    device = resolve_device(payload["device"])
    predictors = [_rebuild(parts, device) for parts in payload["models"]]
    predictor = None if not predictors else predictors[0] if len(predictors) == 1 else PredictorSet(predictors)
    judge = _rebuild(payload["judge"], device) if payload["judge"] is not None else None
    return predictor, judge, device


def relax_task(shared: Shared, item: dict, context: TaskContext) -> dict:
    """Relax one candidate (a task: a pure function of its inputs) and re-evaluate it; returns the
    relaxed structure (as a dict) and the summary to store."""
    from pymatgen.core import Structure

    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

    payload = shared.get()
    predictor, judge, device = shared.derived("relax-models", lambda: _relax_models(payload))
    spec = spec_from_dict(payload["spec"]) if payload["spec"] else None
    max_steps, index, total = payload["max_steps"], context.index, context.total
    structure = Structure.from_dict(item["structure"])
    oracle = ChgnetOracle(str(device))

    def on_step(_k: int, steps: int, force: float) -> None:
        context.progress(ProgressEvent(index * max_steps + min(steps, max_steps), total * max_steps,
                                       f"relaxing {item['formula']} ({index + 1}/{total}): FIRE step {steps}, "
                                       f"max force {force:.3f} eV/Å"))

    with chgnet_threads(device):
        [relaxation] = oracle.relax([structure], fmax=payload["fmax"], max_steps=max_steps, cancel=context.cancel,
                                    on_step=on_step)
        final = relaxation.final
        props, stds = _predicted(predictor, final) if predictor is not None else ({}, {})
        if spec is None:
            criteria = {**item["criteria"],
                        "structurally_valid": structurally_valid(min_periodic_distance(final), final.volume)}
        else:
            criteria = evaluate_structure(final, spec, props, stds, item["charges"]).criteria
        displacement = _displacements(relaxation.initial, final)
        summary = {
            "converged": relaxation.converged, "steps": relaxation.steps,
            "energy_per_atom": relaxation.energy_per_atom, "max_force": relaxation.max_force,
            "rmsd": float(np.sqrt(np.mean(displacement ** 2))), "max_displacement": float(displacement.max()),
            "volume_change": final.volume / relaxation.initial.volume - 1.0,
            "properties": props, "criteria": criteria, "success_after": all(criteria.values()),
        }
        if judge is not None:
            judge_props, _ = _predicted(judge, final)
            judged = rejudged(criteria, spec, judge_props)
            summary["judge_after"] = {"model_id": payload["judge"]["id"], "properties": judge_props,
                                      "criteria": judged, "success": all(judged.values())}
    return {"final": final.as_dict(), "summary": summary}


def _predicted(predictor, structure) -> tuple[dict[str, float], dict[str, float]]:
    """(mean, spread) of ``predictor`` for one structure, by target name."""
    from crystal_studio.ml.predictor import predict_structures

    mean, std = predict_structures(predictor, [structure])
    return (dict(zip(predictor.targets, mean[0].tolist(), strict=True)),
            dict(zip(predictor.targets, std[0].tolist(), strict=True)))


def _displacements(initial, final) -> np.ndarray:
    """Per-site displacement (Å) in the final cell, fractional differences wrapped to the nearest image."""
    diff = final.frac_coords - initial.frac_coords
    diff -= np.round(diff)
    return np.linalg.norm(final.lattice.get_cartesian_coords(diff), axis=1)
