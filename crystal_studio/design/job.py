"""The optimization job: spec + models → optimizer steps → evaluated candidates in the store.

Every method (SMOACS, the baselines, and later latent-space methods) runs through
:func:`run_optimization`, so the CLI and the GUI record runs the same way: parameters, seed, device
and versions in ``runs``, per-step metrics in ``run_metrics``, evaluated candidates in ``candidates``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.design.evaluation import evaluate_structure, mark_unique_and_novel, summarize
from crystal_studio.design.optimizers.base import Optimizer, StepReport
from crystal_studio.design.spec import DesignSpec
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project, StructureQuery

METHODS = ("smoacs", "random", "screen")
METRIC_FLUSH_STEPS = 10


@dataclass
class OptimizationResult:
    run_id: int
    method: str
    n_candidates: int
    summary: dict

    def as_json(self) -> dict:
        return {"run_id": self.run_id, "method": self.method, "n_candidates": self.n_candidates,
                "summary": self.summary}


def load_predictors(project: Project, model_ids: list[int], device: str):
    """The stored predictors as one (a PredictorSet when several), and their records."""
    from crystal_studio.design.optimizers.objectives import PredictorSet
    from crystal_studio.ml.predictor import load_predictor

    if not model_ids:
        raise CrystalStudioError("choose at least one model (see 'crystal-studio models')")
    loaded = [load_predictor(project, mid, device) for mid in model_ids]
    records = [r for r, _ in loaded]
    predictors = [p for _, p in loaded]
    return records, (predictors[0] if len(predictors) == 1 else PredictorSet(predictors))


def make_optimizer(method: str, spec: DesignSpec, predictor, project: Project, n_candidates: int, n_steps: int,
                   seed: int, device: str, dataset: str | None) -> Optimizer:
    if method == "smoacs":
        from crystal_studio.design.optimizers.smoacs import SmoacsOptimizer

        return SmoacsOptimizer(spec, predictor, n_candidates, n_steps, seed, device)
    if method == "random":
        from crystal_studio.design.optimizers.baselines import RandomSearch

        return RandomSearch(spec, predictor, n_candidates, n_steps, seed, device)
    if method == "screen":
        from crystal_studio.design.optimizers.baselines import DatasetScreening

        if not dataset:
            raise CrystalStudioError("screening needs a dataset (--dataset NAME)")
        return DatasetScreening(spec, predictor, project, dataset, n_candidates, seed, device)
    raise CrystalStudioError(f"unknown method '{method}' (choose {', '.join(METHODS)})")


def run_optimization(project: Project, spec: DesignSpec, method: str, model_ids: list[int], n_candidates: int,
                     n_steps: int, seed: int = 0, device: str = "auto", dataset: str | None = None,
                     progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                     on_step: Callable[[StepReport], None] | None = None) -> OptimizationResult:
    """Run ``method`` on ``spec`` with the stored models and store everything; see module docstring.

    ``dataset`` is screened by the 'screen' method and is the novelty reference (default: the first
    model's training dataset). Cancelling marks the run cancelled and raises Cancelled.
    """
    import torch

    from crystal_studio.ml.runtime import package_versions, resolve_device

    cancel = cancel or CancelToken()
    if n_candidates < 1 or n_steps < 1:
        raise CrystalStudioError("--candidates and --steps must be at least 1")
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    records, predictor = load_predictors(project, model_ids, torch_device)
    reference = dataset or records[0].dataset
    optimizer = make_optimizer(method, spec, predictor, project, n_candidates, n_steps, seed, torch_device, reference)
    parameters = {**optimizer.parameters(), "spec": spec.to_dict(), "models": model_ids, "reference_dataset": reference}
    run_id = model_store.create_run(project, "optimization", parameters, seed, str(torch_device), package_versions())
    pending: list[StepReport] = []
    try:
        for report in optimizer.steps():
            cancel.check()
            pending.append(report)
            if len(pending) >= METRIC_FLUSH_STEPS or report.step == report.total:
                _flush(project, run_id, pending)
            if on_step is not None:
                on_step(report)
            progress(ProgressEvent(report.step, report.total, method, report.metrics))
        progress(ProgressEvent(n_steps, n_steps, "evaluating candidates"))
        proposals = optimizer.candidates()
        evaluations = []
        for proposal in proposals:
            cancel.check()
            evaluations.append(evaluate_structure(proposal.structure, spec, proposal.properties, proposal.property_std))
        structures = [p.structure for p in proposals]
        mark_unique_and_novel(structures, evaluations, _reference_structures(project, reference, evaluations))
        docs = []
        for proposal, evaluation in zip(proposals, evaluations, strict=True):
            doc = evaluation.as_json()
            doc["origin"] = proposal.origin
            docs.append(doc)
        candidate_store.add_candidates(project, run_id, list(zip(structures, docs, strict=True)))
    except Cancelled:
        _flush(project, run_id, pending)
        model_store.update_run(project, run_id, status="cancelled", message="cancelled by the user")
        raise
    except BaseException as exc:
        model_store.update_run(project, run_id, status="failed", message=str(exc)[:500])
        raise
    summary = summarize(docs, spec)
    model_store.update_run(project, run_id, status="completed",
                           message=f"{summary['success_rate']:.0%} of {len(evaluations)} candidates meet every criterion")
    return OptimizationResult(run_id, method, len(evaluations), summary)


def _flush(project: Project, run_id: int, pending: list[StepReport]) -> None:
    with project.transaction() as db:
        db["run_metrics"].insert_all({"run_id": run_id, "step": r.step, "name": name, "value": float(value)}
                                     for r in pending for name, value in r.metrics.items())
    pending.clear()


def _reference_structures(project: Project, dataset: str | None, evaluations) -> list:
    """Structures of ``dataset`` sharing a reduced formula with a candidate (novelty reference)."""
    if not dataset or dataset not in project.dataset_names():
        return []
    formulas = sorted({e.formula for e in evaluations})
    structures = []
    for start in range(0, len(formulas), 500):
        query = StructureQuery(dataset=dataset, reduced_formulas=formulas[start:start + 500])
        structures += [s for _, s in project.iter_structures(query)]
    return structures


def run_summary(project: Project, run_id: int) -> dict:
    """Summary of a stored run, recomputed from its candidates' stored checks."""
    from crystal_studio.design.spec import spec_from_dict

    spec = spec_from_dict(model_store.get_run(project, run_id).parameters["spec"])
    return summarize([r.evaluation for r in candidate_store.list_candidates(project, run_id)], spec)
