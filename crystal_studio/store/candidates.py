"""Candidates of runs (optimization, structure prediction, crystal sampling): structure, predictions,
checks, relaxation, user flags."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pymatgen.core import Structure

from crystal_studio.core import structures as cs
from crystal_studio.core.errors import NotFoundError
from crystal_studio.store.project import Project, now, with_fresh_id


@dataclass
class CandidateRecord:
    id: int
    run_id: int
    formula: str
    success: bool
    evaluation: dict  # CandidateEvaluation.as_json(): criteria, properties, validity, ...
    structure_json: str
    relaxed_structure_json: str | None
    oracle_energy_per_atom: float | None  # eV/atom after CHGNet relaxation
    flag: str
    notes: str

    @property
    def structure(self) -> Structure:
        return cs.from_json(self.structure_json)

    @property
    def relaxed_structure(self) -> Structure | None:
        return cs.from_json(self.relaxed_structure_json) if self.relaxed_structure_json else None

    @property
    def final_success(self) -> bool:
        """Whether the candidate counts as a success: after CHGNet relaxation when it was relaxed
        (predictors re-run on the relaxed structure), else as generated (:attr:`success`)."""
        relaxation = self.evaluation.get("relaxation")
        return bool(relaxation.get("success_after")) if relaxation else self.success

    def as_json(self) -> dict:
        doc = {"id": self.id, "run_id": self.run_id, "formula": self.formula, "success": self.success,
               "flag": self.flag, "notes": self.notes, "relaxed": self.relaxed_structure_json is not None,
               "oracle_energy_per_atom": self.oracle_energy_per_atom}
        doc.update({k: v for k, v in self.evaluation.items() if k not in doc})
        return doc


def add_candidates(project: Project, run_id: int, items: list[tuple[Structure, dict]],
                   relaxed_energies: list[float] | None = None, complete_run: str | None = None) -> list[int]:
    """Store (structure, evaluation JSON) pairs of a run in one transaction; returns their ids.

    ``relaxed_energies`` (CHGNet, eV/atom, one per item): the structures are already relaxed, so each
    is also stored as its own relaxed structure with its energy. With ``complete_run`` (a message) the
    run is marked completed in the same transaction, so a run is never completed without its candidates.
    """
    if relaxed_energies is not None and len(relaxed_energies) != len(items):
        raise ValueError(f"{len(relaxed_energies)} energies for {len(items)} candidates")
    ids = []
    with project.transaction() as db:
        for k, (structure, evaluation) in enumerate(items):
            row = {"run_id": run_id, "structure": cs.to_json(structure), "formula": evaluation["formula"],
                   "predicted": json.dumps(evaluation.get("properties", {})), "checks": json.dumps(evaluation),
                   "success": int(bool(evaluation.get("success"))), "flag": "", "notes": ""}
            if relaxed_energies is not None:
                row.update(relaxed_structure=row["structure"], oracle_energy_per_atom=relaxed_energies[k])
            if k == 0:
                row = with_fresh_id(db, "candidates", row)  # the rest follow it
            ids.append(int(db["candidates"].insert(row).last_pk))
        if complete_run is not None:
            db["runs"].update(run_id, {"status": "completed", "message": complete_run, "finished": now()})
    return ids


def candidate_counts(project: Project) -> dict[int, int]:
    """Run id → number of stored candidates, for every run that has any."""
    return {int(run_id): int(n) for run_id, n in
            project.db.execute("SELECT run_id, COUNT(*) FROM candidates GROUP BY run_id").fetchall()}


def _record(row: dict) -> CandidateRecord:
    return CandidateRecord(row["id"], row["run_id"], row["formula"], bool(row["success"]),
                           json.loads(row["checks"] or "{}"), row["structure"], row["relaxed_structure"],
                           row["oracle_energy_per_atom"], row["flag"] or "", row["notes"] or "")


def list_candidates(project: Project, run_id: int, only_success: bool = False) -> list[CandidateRecord]:
    """Candidates of a run in the order they were stored (best first)."""
    if not list(project.db.query("SELECT id FROM runs WHERE id = ?", [run_id])):
        raise NotFoundError(f"no run with id {run_id} in {project.path.name}")
    where = " AND success = 1" if only_success else ""
    return [_record(r) for r in project.db.query(f"SELECT * FROM candidates WHERE run_id = ?{where} ORDER BY id",
                                                 [run_id])]


def get_candidate(project: Project, candidate_id: int) -> CandidateRecord:
    rows = list(project.db.query("SELECT * FROM candidates WHERE id = ?", [candidate_id]))
    if not rows:
        raise NotFoundError(f"no candidate with id {candidate_id} in {project.path.name}")
    return _record(rows[0])


def set_relaxation(project: Project, candidate_id: int, relaxed: Structure, energy_per_atom: float,
                   relaxation: dict) -> None:
    """Store a candidate's relaxed structure and the relaxation summary (merged into its checks)."""
    record = get_candidate(project, candidate_id)
    evaluation = {**record.evaluation, "relaxation": relaxation}
    with project.transaction() as db:
        db["candidates"].update(candidate_id, {"relaxed_structure": cs.to_json(relaxed),
                                               "oracle_energy_per_atom": energy_per_atom,
                                               "checks": json.dumps(evaluation)})


def set_flag(project: Project, candidate_id: int, flag: str | None = None, notes: str | None = None) -> None:
    """Star/flag a candidate or change its notes."""
    changes = {k: v for k, v in (("flag", flag), ("notes", notes)) if v is not None}
    get_candidate(project, candidate_id)
    if changes:
        with project.transaction() as db:
            db["candidates"].update(candidate_id, changes)
