"""Formulas sampled by generative runs (composition VAE): one row per distinct formula of a run."""

from __future__ import annotations

import json
from dataclasses import dataclass

from crystal_studio.core.errors import NotFoundError
from crystal_studio.store.project import Project, now


@dataclass(frozen=True)
class FormulaSample:
    """A distinct formula of a sampling run: how often it was drawn and its checks
    (``compositionally_valid``, ``novel``, ``n_elements``, ``decomposition_class``)."""

    id: int
    run_id: int
    formula: str
    count: int
    checks: dict

    def as_json(self) -> dict:
        return {"id": self.id, "formula": self.formula, "count": self.count, **self.checks}


def add_samples(project: Project, run_id: int, samples: list[tuple[str, int, dict]],
                complete_run: str | None = None) -> None:
    """Store (formula, count, checks) rows of run ``run_id`` in one transaction; with ``complete_run``
    (a message) the run is marked completed in the same transaction."""
    with project.transaction() as db:
        db["formula_samples"].insert_all({"run_id": run_id, "formula": formula, "count": count,
                                          "checks": json.dumps(checks)} for formula, count, checks in samples)
        if complete_run is not None:
            db["runs"].update(run_id, {"status": "completed", "message": complete_run, "finished": now()})


def list_samples(project: Project, run_id: int) -> list[FormulaSample]:
    """The formulas of a sampling run, most often drawn first."""
    if not list(project.db.query("SELECT id FROM runs WHERE id = ?", [run_id])):
        raise NotFoundError(f"no run with id {run_id} in {project.path.name}")
    return [FormulaSample(r["id"], r["run_id"], r["formula"], r["count"], json.loads(r["checks"] or "{}"))
            for r in project.db.query("SELECT * FROM formula_samples WHERE run_id = ? ORDER BY count DESC, id",
                                      [run_id])]
