"""The optimization job: spec + models → optimizer steps → evaluated candidates in the store.

Every method (SMOACS, the baselines, and later latent-space methods) runs through
:func:`run_optimization`, so the CLI and the GUI record runs the same way: parameters, seed, device
and versions in ``runs``, per-step metrics in ``run_metrics``, evaluated candidates in ``candidates``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.options import apply_options, describe_options
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.design.evaluation import (
    evaluate_structure,
    lattice_problem,
    mark_unique_and_novel,
    rejudged,
    summarize,
)
from crystal_studio.design.methods import MethodRequest, get_method
from crystal_studio.design.optimizers.base import Optimizer, StepReport
from crystal_studio.design.spec import DesignSpec
from crystal_studio.ml.domain import candidate_flags, structure_elements, volumes_per_atom
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project, StructureQuery

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
    loaded = [load_predictor(project, mid, device, differentiable=True) for mid in model_ids]
    records = [r for r, _ in loaded]
    predictors = [p for _, p in loaded]
    return records, (predictors[0] if len(predictors) == 1 else PredictorSet(predictors))


def method_config(method: str, settings: dict | None = None):
    """The settings of ``method`` with ``settings`` (name → value or text) applied and checked; None for
    a method without settings. Raises SpecError/CrystalStudioError naming a bad setting."""
    cls = get_method(method).config_class()
    if cls is None:
        if settings:
            raise CrystalStudioError(f"{method} has no settings (got {', '.join(settings)})")
        return None
    return apply_options(cls(), settings, method)


def method_settings(method: str) -> list[dict]:
    """Every option of ``method``: name, type, default, help, unit, minimum, maximum, choices."""
    return describe_options(get_method(method).config_class())


def load_generator(project: Project, method: str, generator_model: int | None, device):
    """(record, crystal VAE) for a method that needs a generator, (None, None) otherwise; a clear error
    when the method needs one and none (or a model of another kind) is given."""
    from crystal_studio.ml.kinds import get_kind
    from crystal_studio.ml.predictor import load_state

    if "generator" not in get_method(method).needs:
        if generator_model is not None:
            raise CrystalStudioError(f"{method} does not use a generator model (drop --generator)")
        return None, None
    if generator_model is None:
        raise CrystalStudioError(f"{method} searches a crystal VAE's latent space: choose one with --generator "
                                 "MODEL_ID (see 'crystal-studio models')")
    record = model_store.get_model(project, generator_model)
    if record.kind != "crystal_vae":
        raise CrystalStudioError(f"model {generator_model} is a '{record.kind}' model; {method} needs a crystal_vae")
    where = f"model {generator_model}"
    model = get_kind(record.kind).load().rebuild(record.hyperparameters, record.targets,
                                                 load_state(record.checkpoint, where), where)
    return record, model.to(device)


def make_optimizer(method: str, spec: DesignSpec, predictor, project: Project, n_candidates: int, n_steps: int,
                   seed: int, device: str, dataset: str | None, settings: dict | None = None,
                   generator_model: int | None = None, executor=None) -> Optimizer:
    """The optimizer of ``method`` with its settings (name → value, see :func:`method_config`), for
    latent-space methods the crystal VAE ``generator_model``, and for methods that split their work
    into tasks (screen) the ``executor`` that runs them (default: here)."""
    info = get_method(method)
    config = method_config(method, settings)
    record, generator = load_generator(project, method, generator_model, device)
    request = MethodRequest(spec, predictor, project, n_candidates, n_steps, seed, device, dataset, generator, record,
                            executor)
    return info.load().build(request, config)


def judge_candidates(project: Project, judge_model: int, spec: DesignSpec, structures: list, docs: list[dict],
                     device) -> None:
    """Re-predict evaluated candidates with an independent ``judge_model`` and add its verdict to each
    candidate document as ``doc["judge"]`` (properties, spread, criteria, success); the structural and
    chemical checks are the candidate's own."""
    from crystal_studio.ml.predictor import load_predictor, predict_structures

    _, judge = load_predictor(project, judge_model, device)
    missing = [o.property for o in spec.objectives if o.property not in judge.targets]
    if missing:
        raise CrystalStudioError(f"judge model {judge_model} does not predict {', '.join(sorted(set(missing)))}")
    mean, std = predict_structures(judge, structures)
    for doc, m, d in zip(docs, mean, std, strict=True):
        properties = dict(zip(judge.targets, m.tolist(), strict=True))
        criteria = rejudged(doc["criteria"], spec, properties)
        doc["judge"] = {"model_id": judge_model, "properties": properties,
                        "property_std": dict(zip(judge.targets, d.tolist(), strict=True)), "criteria": criteria,
                        "success": all(criteria.values())}


def run_optimization(project: Project, spec: DesignSpec, method: str, model_ids: list[int], n_candidates: int,
                     n_steps: int, seed: int = 0, device: str = "auto", dataset: str | None = None,
                     progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                     on_step: Callable[[StepReport], None] | None = None, settings: dict | None = None,
                     judge_model: int | None = None, generator_model: int | None = None,
                     executor=None) -> OptimizationResult:
    """Run ``method`` on ``spec`` with the stored models and store everything; see module docstring.

    ``dataset`` is screened by the 'screen' method and is the novelty reference (default: the first
    model's training dataset). ``settings`` are the method's options (name → value). A ``judge_model``
    re-predicts every final candidate: its verdict is stored per candidate and summarized under
    ``summary["judge"]``, beside the optimizing model's own. Latent-space methods search the crystal
    VAE ``generator_model``. A method that splits its work into tasks (screen) runs them on
    ``executor`` (:mod:`crystal_studio.core.tasks`; default here); the stored run is the same
    either way. Cancelling marks the run cancelled (its tasks too) and raises Cancelled.
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
    if judge_model is not None and judge_model in model_ids:
        raise CrystalStudioError(f"the judge (model {judge_model}) must not be one of the optimized models")
    if judge_model is not None:
        model_store.get_model(project, judge_model, with_checkpoint=False)  # fails early when it does not exist
    optimizer = make_optimizer(method, spec, predictor, project, n_candidates, n_steps, seed, torch_device, reference,
                               settings, generator_model, executor)
    parameters = {**optimizer.parameters(), "spec": spec.to_dict(), "models": model_ids, "reference_dataset": reference,
                  "settings": dict(settings or {}), "judge_model": judge_model, "generator_model": generator_model}
    run_id = model_store.create_run(project, "optimization", parameters, seed, str(torch_device), package_versions())
    pending: list[StepReport] = []
    model_store.announce_run(run_id, progress)
    steps = optimizer.steps()
    with model_store.guarded_run(project, run_id):
        try:
            for report in steps:
                cancel.check()
                pending.append(report)
                if len(pending) >= METRIC_FLUSH_STEPS or report.step == report.total:
                    _flush(project, run_id, pending)
                if on_step is not None:
                    on_step(report)
                progress(ProgressEvent(report.step, report.total, method, report.metrics))
            progress(ProgressEvent(n_steps, n_steps, "evaluating candidates"))
            proposals, rejected = [], Counter()
            for proposal in optimizer.candidates():
                problem = lattice_problem(proposal.structure)
                if problem is None:
                    proposals.append(proposal)
                else:
                    rejected[problem] += 1
            evaluations = []
            for proposal in proposals:
                cancel.check()
                evaluations.append(evaluate_structure(proposal.structure, spec, proposal.properties, proposal.property_std,
                                                      proposal.site_charges))
            structures = [p.structure for p in proposals]
            mark_unique_and_novel(structures, evaluations, _reference_structures(project, reference, evaluations))
            domains = candidate_flags([(r.hyperparameters, r.targets) for r in records],
                                      [p.property_std for p in proposals], structure_elements(structures),
                                      volumes_per_atom(structures))
            docs = []
            for proposal, evaluation, domain in zip(proposals, evaluations, domains, strict=True):
                doc = evaluation.as_json()
                doc["origin"] = proposal.origin
                if domain is not None:
                    doc["domain"] = domain  # out of the models' training domain? (ml/domain.py)
                docs.append(doc)
            if judge_model is not None:
                progress(ProgressEvent(n_steps, n_steps, f"judging candidates with model {judge_model}"))
                judge_candidates(project, judge_model, spec, structures, docs, torch_device)
            candidate_store.add_candidates(project, run_id, list(zip(structures, docs, strict=True)))
        finally:
            steps.close()  # an optimizer's tasks still queued or running stop with the run
            _flush(project, run_id, pending)  # steps done before a cancel or failure stay plotted
    summary = summarize_with_judge(docs, spec)
    message = f"{summary['success_rate']:.0%} of {len(evaluations)} candidates meet every criterion"
    flagged = sum(1 for doc in docs if (doc.get("domain") or {}).get("out_of_domain"))
    if any("domain" in doc for doc in docs):
        summary["out_of_domain"] = flagged
        if flagged:
            message += f"; {flagged} out of the models' training domain"
    if rejected:
        summary["rejected"] = dict(rejected)
        message += "; rejected " + ", ".join(f"{n} ({reason})" for reason, n in rejected.items())
    if optimizer.stop_reason:
        summary["stopped"] = optimizer.stop_reason
        message += f"; {optimizer.stop_reason}"
    model_store.update_run(project, run_id, status="completed", message=message)
    return OptimizationResult(run_id, method, len(evaluations), summary)


def repeat_optimization(project: Project, run_id: int, device: str = "auto", progress: ProgressCallback = no_progress,
                        cancel: CancelToken | None = None) -> OptimizationResult:
    """Run stored optimization ``run_id`` again as a new run, from its stored parameters alone (spec,
    method, models, settings, seed, sizes, datasets, judge); with the same device the candidates are the same."""
    from crystal_studio.design.spec import spec_from_dict

    run = model_store.get_run(project, run_id)
    if run.kind != "optimization":
        raise CrystalStudioError(f"run {run_id} is a '{run.kind}' run, not an optimization")
    p = run.parameters
    return run_optimization(project, spec_from_dict(p["spec"]), p["method"], list(p["models"]), p["n_candidates"],
                            p["n_steps"], p["seed"], device, p.get("dataset") or p.get("reference_dataset"), progress,
                            cancel, settings=p.get("settings") or {}, judge_model=p.get("judge_model"),
                            generator_model=p.get("generator_model"))


def _flush(project: Project, run_id: int, pending: list[StepReport]) -> None:
    if not pending:
        return
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
    """Summary of a stored run, recomputed from its candidates' stored checks; without spec criteria
    for a run that has no spec (crystals sampled from a crystal VAE)."""
    from crystal_studio.design.spec import spec_from_dict

    spec = model_store.get_run(project, run_id).parameters.get("spec")
    docs = [r.evaluation for r in candidate_store.list_candidates(project, run_id)]
    return summarize(docs) if spec is None else summarize_with_judge(docs, spec_from_dict(spec))


def summarize_with_judge(docs: list[dict], spec: DesignSpec) -> dict:
    """:func:`summarize` of the candidates, plus ``"judge"``: the same summary under the judge's
    properties when the candidates were judged."""
    summary = summarize(docs, spec)
    if docs and all("judge" in doc for doc in docs):
        judged = [{**doc, "criteria": doc["judge"]["criteria"], "success": doc["judge"]["success"]} for doc in docs]
        summary["judge"] = {"model_id": docs[0]["judge"]["model_id"], **summarize(judged, spec)}
    return summary
