"""Relax candidates with CHGNet and check whether their success survives relaxation."""

from __future__ import annotations

import numpy as np

from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.structures import min_periodic_distance
from crystal_studio.design.evaluation import evaluate_structure, rejudged, structurally_valid
from crystal_studio.design.spec import spec_from_dict
from crystal_studio.oracles.chgnet_oracle import chgnet_threads
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project


def relax_candidates(project: Project, run_id: int, only_success: bool = False, candidate_ids: list[int] | None = None,
                     device: str = "auto", fmax: float = 0.05, max_steps: int = 300,
                     progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> list[dict]:
    """Relax a run's candidates (cell free, ``fmax`` eV/Å), store each relaxed structure with its CHGNet
    energy (eV/atom), RMSD and largest displacement (Å), and the run's predictors' properties and
    criteria re-evaluated on the relaxed structure (with the candidate's designed site charges), and
    the judge's too when the run was judged. Returns one summary dict per candidate.

    A run without predictor models (structure prediction without models, crystal sampling) is not
    re-predicted: its properties after relaxation are empty. A run without a spec (crystal sampling)
    keeps its stored criteria with structural validity re-checked (relaxation leaves the composition)."""
    from crystal_studio.design.job import load_predictors
    from crystal_studio.ml.predictor import load_predictor
    from crystal_studio.ml.runtime import resolve_device
    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

    cancel = cancel or CancelToken()
    run = model_store.get_run(project, run_id)
    spec = spec_from_dict(run.parameters["spec"]) if "spec" in run.parameters else None
    records = candidate_store.list_candidates(project, run_id, only_success)
    if candidate_ids is not None:
        wanted = set(candidate_ids)
        records = [r for r in records if r.id in wanted]
    torch_device = resolve_device(device)
    model_ids = run.parameters.get("models")
    predictor = load_predictors(project, model_ids, torch_device)[1] if model_ids else None
    judge_id = run.parameters.get("judge_model")
    judge = load_predictor(project, judge_id, torch_device)[1] if judge_id is not None else None
    oracle = ChgnetOracle(str(torch_device))
    out = []
    with chgnet_threads(torch_device):
        for index, record in enumerate(records):
            cancel.check()

            def on_step(_k: int, steps: int, force: float, index=index, formula=record.formula) -> None:
                progress(ProgressEvent(index * max_steps + min(steps, max_steps), len(records) * max_steps,
                                       f"relaxing {formula} ({index + 1}/{len(records)}): FIRE step {steps}, "
                                       f"max force {force:.3f} eV/Å"))

            [relaxation] = oracle.relax([record.structure], fmax=fmax, max_steps=max_steps, cancel=cancel, on_step=on_step)
            final = relaxation.final
            charges = record.evaluation.get("site_charges")
            props, stds = _predicted(predictor, final) if predictor is not None else ({}, {})
            if spec is None:
                criteria = {**record.evaluation.get("criteria", {}),
                            "structurally_valid": structurally_valid(min_periodic_distance(final), final.volume)}
            else:
                criteria = evaluate_structure(final, spec, props, stds, charges).criteria
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
                summary["judge_after"] = {"model_id": judge_id, "properties": judge_props, "criteria": judged,
                                          "success": all(judged.values())}
            candidate_store.set_relaxation(project, record.id, final, relaxation.energy_per_atom, summary)
            progress(ProgressEvent((index + 1) * max_steps, len(records) * max_steps, f"relaxed {record.formula}"))
            out.append({"id": record.id, "formula": record.formula, "success_before": record.success, **summary})
    return out


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
