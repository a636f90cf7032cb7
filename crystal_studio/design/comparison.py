"""Optimization runs side by side: the numbers a user compares methods by, from the stored runs.

:func:`compare_runs` reads each run's candidates once and reports, per run, the success rate under the
optimized models and under the independent judge, both as generated and after CHGNet relaxation (over
the relaxed candidates only), the unique rate and the wall time. Runs are grouped by their spec, since
success rates of different targets do not compare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from crystal_studio.design.job import run_summary
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project


@dataclass
class RunComparison:
    """One optimization run's headline numbers (rates in [0, 1]; None where they do not apply)."""

    run_id: int
    method: str
    spec_name: str
    spec_key: str  # the spec as canonical JSON: runs with equal keys optimized the same target
    status: str
    n_candidates: int
    success_own: float | None  # as generated, judged by the models it optimized against
    success_judge: float | None  # as generated, judged by an independent model (None: not judged)
    relaxed: int  # candidates relaxed with CHGNet
    success_own_relaxed: float | None  # of the relaxed candidates, after relaxation
    success_judge_relaxed: float | None
    unique_rate: float | None
    seconds: float | None  # wall time from start to finish

    def as_json(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "spec_key"}


def compare_runs(project: Project, run_ids: list[int] | None = None) -> list[RunComparison]:
    """The comparison of optimization runs ``run_ids`` (default: all of them), newest first."""
    wanted = None if run_ids is None else set(run_ids)
    runs = [r for r in model_store.list_runs(project, "optimization") if wanted is None or r.id in wanted]
    out = []
    for run in runs:
        spec = run.parameters.get("spec") or {}
        summary = run_summary(project, run.id)
        relaxations = [r.evaluation["relaxation"] for r in candidate_store.list_candidates(project, run.id)
                       if r.evaluation.get("relaxation")]
        judged_after = [r["judge_after"]["success"] for r in relaxations if "judge_after" in r]
        out.append(RunComparison(
            run_id=run.id, method=str(run.parameters.get("method", "?")), spec_name=str(spec.get("name", "")),
            spec_key=json.dumps(spec, sort_keys=True), status=run.status, n_candidates=int(summary.get("n", 0)),
            success_own=summary.get("success_rate"),
            success_judge=summary["judge"]["success_rate"] if "judge" in summary else None,
            relaxed=len(relaxations),
            success_own_relaxed=_rate([bool(r.get("success_after")) for r in relaxations]),
            success_judge_relaxed=_rate(judged_after),
            unique_rate=summary.get("unique_rate"), seconds=_seconds(run.started, run.finished)))
    return out


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _seconds(started: str, finished: str | None) -> float | None:
    """Seconds between two stored ISO timestamps (None while the run has not finished)."""
    if not started or not finished:
        return None
    try:
        return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    except ValueError:
        return None
