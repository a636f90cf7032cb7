"""Renaming and deleting what a project holds: datasets, runs and candidates (models: store/models.py).

Every change is one transaction; a deletion can be previewed first (``*_deletion`` functions return the
same :class:`Deletion` without deleting anything), which is what the command line and the app's
confirmation dialogs show.

What goes with what:

- **A dataset** takes its structures, their property values and the decompositions of its hull with it.
  Models trained on it stay and predict as before (a checkpoint holds everything prediction needs); they
  keep the id of the dataset, which names none any more, so they list without a dataset, their test
  split is gone (no parity plot), novelty checks against it find nothing and latent-space searches that
  seed from its crystals say it is gone. Runs that name it stay as the record of what was done; a
  training run on it can no longer be resumed. Refused while a live run uses it.
- **Renaming a dataset** also renames it where runs name it (``dataset``, ``reference_dataset``), in
  its models' training record and in the source of its hull values, so its runs can still be repeated
  and resumed. Refused while a live run uses it (a polymorphs run writing into it would make a new one).
- **A run** takes its metrics, candidates, sampled formulas and resumable state with it. The models it
  trained stay (without their training curves and test split). Refused while the run is running in a
  live process (this one included: stop it first).
- **Candidates** are deleted by id, from any runs; a candidate's "name" is its note
  (:func:`crystal_studio.store.candidates.set_flag`).

Deleted ids are never given to new rows (:func:`crystal_studio.store.project.retire_ids`), so a run or
model that names a deleted record never comes to name another one.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field

from crystal_studio.core.errors import CrystalStudioError, NotFoundError
from crystal_studio.store.derived import hull_source
from crystal_studio.store.models import RunBusyError, clear_run_state, is_live, run_state_path
from crystal_studio.store.project import Project, retire_ids

NAME_MAX = 200
"""Longest dataset or run name, in characters."""

DATASET_KEYS = ("dataset", "reference_dataset")
"""Keys of a run's parameters that name a dataset."""

_WORDS = {"structures": "structure", "properties": "property value", "decompositions": "hull decomposition",
          "metrics": "metric value", "candidates": "candidate", "samples": "sampled formula",
          "state_files": "resumable state file"}


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _stay(items: list) -> str:
    return "stays" if len(items) == 1 else "stay"


@dataclass
class Deletion:
    """What deleting ``what`` removes (``removed``: rows per kind, e.g. ``{"structures": 9}``) and what
    stays (``kept``: one sentence each); ``deleted`` once done."""

    what: str
    removed: dict[str, int]
    kept: list[str] = field(default_factory=list)
    deleted: bool = False

    def removed_text(self) -> str:
        """'9 structures, 27 property values and 0 hull decompositions'."""
        parts = [_count(n, _WORDS.get(kind, kind)) for kind, n in self.removed.items()]
        return " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def summary(self) -> str:
        """One paragraph: what goes with it, then what stays."""
        text = f"{self.what}: {self.removed_text() or 'nothing else'}"
        return text + (". " + " ".join(self.kept) if self.kept else ".")

    def as_json(self) -> dict:
        return {"what": self.what, "deleted": self.deleted, "removed": dict(self.removed), "kept": list(self.kept)}


def check_name(name: str, what: str = "dataset", allow_empty: bool = False) -> str:
    """``name`` without surrounding spaces; CrystalStudioError when it is empty (unless ``allow_empty``),
    longer than :data:`NAME_MAX` or holds control characters (line breaks, tabs)."""
    name = name.strip()
    if not name and not allow_empty:
        raise CrystalStudioError(f"a {what} name cannot be empty")
    if len(name) > NAME_MAX:
        raise CrystalStudioError(f"a {what} name can have at most {NAME_MAX} characters (got {len(name)})")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        raise CrystalStudioError(f"a {what} name cannot hold control characters such as line breaks or tabs")
    return name


def _parameters(row: dict) -> dict:
    """A run row's parameters (empty when they are not a JSON object)."""
    try:
        value = json.loads(row["parameters"] or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _names_dataset(parameters: dict, dataset_id: int, name: str) -> bool:
    """Whether run parameters name the dataset: a training run by its id, any other run by name."""
    if "dataset_id" in parameters:
        return parameters["dataset_id"] == dataset_id or parameters.get("reference_dataset") == name
    return any(parameters.get(key) == name for key in DATASET_KEYS)


def _runs_naming(project: Project, dataset_id: int, name: str) -> list[dict]:
    return [row for row in project.db.query("SELECT * FROM runs ORDER BY id")
            if _names_dataset(_parameters(row), dataset_id, name)]


def _refuse_if_used(runs: list[dict], name: str, doing: str) -> None:
    live = [row for row in runs if is_live(row)]
    if live:
        row = live[0]
        raise RunBusyError(f"cannot {doing} dataset '{name}': run {row['id']} ({row['kind']}) is using it, running "
                           f"in process {row['owner_pid']} on {row['owner_host']}; wait for it to end or stop it first")


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------


def rename_dataset(project: Project, old: str, new: str) -> int:
    """Rename dataset ``old`` to ``new`` (see the module docstring for what follows it); returns how many
    runs' parameters now name it by its new name. Nothing happens when the names are equal; an empty
    name or one another dataset has is refused (NotFoundError when there is no ``old``)."""
    new = check_name(new)
    with project.transaction() as db:
        dataset_id = project.dataset_id(old)
        if new == old:
            return 0
        if db.execute("SELECT 1 FROM datasets WHERE name = ?", [new]).fetchone():
            raise CrystalStudioError(f"{project.path.name} has a dataset named '{new}' already; choose another name")
        runs = _runs_naming(project, dataset_id, old)
        _refuse_if_used(runs, old, "rename")
        db.execute("UPDATE datasets SET name = ? WHERE id = ?", [new, dataset_id])
        for row in runs:
            parameters = _parameters(row)
            for key in DATASET_KEYS:
                if parameters.get(key) == old:
                    parameters[key] = new
            db.execute("UPDATE runs SET parameters = ? WHERE id = ?", [json.dumps(parameters), row["id"]])
        for model_id, text in db.execute("SELECT id, hyperparameters FROM models WHERE dataset_id = ?", [dataset_id]):
            try:
                hyperparameters = json.loads(text or "{}")
            except (TypeError, ValueError):
                continue  # an unreadable row stays as it is (read_models names it)
            training = hyperparameters.get("training") if isinstance(hyperparameters, dict) else None
            if isinstance(training, dict) and training.get("dataset") == old:
                training["dataset"] = new
                db.execute("UPDATE models SET hyperparameters = ? WHERE id = ?", [json.dumps(hyperparameters), model_id])
        in_dataset = "structure_id IN (SELECT id FROM structures WHERE dataset_id = ?)"
        for table in ("properties", "decompositions"):
            db.execute(f"UPDATE {table} SET source = ? WHERE source = ? AND {in_dataset}",
                       [hull_source(new), hull_source(old), dataset_id])
    return len(runs)


def dataset_deletion(project: Project, name: str) -> Deletion:
    """What :func:`delete_dataset` would remove and leave (nothing is deleted)."""
    dataset_id = project.dataset_id(name)
    in_dataset = "structure_id IN (SELECT id FROM structures WHERE dataset_id = ?)"

    def count(sql: str, params: list) -> int:
        return int(project.db.execute(sql, params).fetchone()[0])

    removed = {
        "structures": count("SELECT COUNT(*) FROM structures WHERE dataset_id = ?", [dataset_id]),
        "properties": count(f"SELECT COUNT(*) FROM properties WHERE {in_dataset}", [dataset_id]),
        "decompositions": count(f"SELECT COUNT(*) FROM decompositions WHERE dataset_id = ? OR {in_dataset}",
                                [dataset_id, dataset_id]),
    }
    kept = []
    models = [r[0] for r in project.db.execute("SELECT id FROM models WHERE dataset_id = ? ORDER BY id", [dataset_id])]
    if models:
        kept.append(f"{_count(len(models), 'model')} trained on it ({', '.join(f'#{m}' for m in models)}) "
                    f"{_stay(models)} and predict as before, without a dataset or test split.")
    runs = _runs_naming(project, dataset_id, name)
    if runs:
        kept.append(f"{_count(len(runs), 'run')} naming it ({', '.join('#' + str(r['id']) for r in runs)}) "
                    f"{_stay(runs)} as a record; a training run on it can no longer be resumed.")
    return Deletion(f"dataset '{name}'", removed, kept)


def delete_dataset(project: Project, name: str) -> Deletion:
    """Delete dataset ``name`` with its structures, their properties and hull decompositions, in one
    transaction (see the module docstring for models and runs); returns what was deleted. RunBusyError
    while a live run uses it."""
    with project.transaction() as db:
        deletion = dataset_deletion(project, name)
        dataset_id = project.dataset_id(name)
        _refuse_if_used(_runs_naming(project, dataset_id, name), name, "delete")
        retire_ids(db, "datasets")
        retire_ids(db, "structures")
        in_dataset = "structure_id IN (SELECT id FROM structures WHERE dataset_id = ?)"
        db.execute(f"DELETE FROM decompositions WHERE dataset_id = ? OR {in_dataset}", [dataset_id, dataset_id])
        db.execute(f"DELETE FROM properties WHERE {in_dataset}", [dataset_id])
        db.execute("DELETE FROM structures WHERE dataset_id = ?", [dataset_id])
        db.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])
    deletion.deleted = True
    return deletion


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


def _run_row(project: Project, run_id: int) -> dict:
    rows = list(project.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    if not rows:
        have = [str(r[0]) for r in project.db.execute("SELECT id FROM runs ORDER BY id")]
        raise NotFoundError(f"no run with id {run_id} in {project.path.name} (have: {', '.join(have) or 'none'})")
    return rows[0]


def rename_run(project: Project, run_id: int, name: str) -> None:
    """Give run ``run_id`` a name (shown beside its number); an empty name removes it."""
    name = check_name(name, "run", allow_empty=True)
    with project.transaction() as db:
        _run_row(project, run_id)
        db.execute("UPDATE runs SET name = ? WHERE id = ?", [name, run_id])


def run_deletion(project: Project, run_id: int) -> Deletion:
    """What :func:`delete_run` would remove and leave (nothing is deleted)."""
    row = _run_row(project, run_id)

    def count(table: str) -> int:
        return int(project.db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", [run_id]).fetchone()[0])

    removed = {"metrics": count("run_metrics"), "candidates": count("candidates"), "samples": count("formula_samples")}
    if run_state_path(project, run_id).is_file():
        removed["state_files"] = 1
    models = [r[0] for r in project.db.execute("SELECT id FROM models WHERE run_id = ? ORDER BY id", [run_id])]
    kept = []
    if models:
        kept.append(f"{_count(len(models), 'model')} it trained ({', '.join(f'#{m}' for m in models)}) "
                    f"{_stay(models)}, without training curves or test split.")
    label = f"run {run_id} ({row['kind']}, {row['status']}" + (f", “{row['name']}”)" if row.get("name") else ")")
    return Deletion(label, removed, kept)


def delete_run(project: Project, run_id: int) -> Deletion:
    """Delete run ``run_id`` with its metrics, candidates, sampled formulas and resumable state (the
    models it trained stay); returns what was deleted. RunBusyError while it runs in a live process."""
    with project.transaction() as db:
        deletion = run_deletion(project, run_id)
        row = _run_row(project, run_id)
        if is_live(row):
            raise RunBusyError(f"run {run_id} is running in process {row['owner_pid']} on {row['owner_host']}; "
                               "stop it (or wait for it to end) before deleting it")
        retire_ids(db, "runs")
        retire_ids(db, "candidates")
        for table in ("run_metrics", "candidates", "formula_samples"):
            db.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        db.execute("DELETE FROM runs WHERE id = ?", [run_id])
    if run_state_path(project, run_id).is_file():
        clear_run_state(project, run_id)
    deletion.deleted = True
    return deletion


# --------------------------------------------------------------------------------------------------
# Models (deleted by crystal_studio.store.models.delete_model)
# --------------------------------------------------------------------------------------------------


def _uses_model(parameters: dict, model_id: int) -> bool:
    models = parameters.get("models")
    return ((isinstance(models, list) and model_id in models)
            or any(parameters.get(key) == model_id for key in ("judge_model", "generator_model", "model_id")))


def model_deletion(project: Project, model_id: int) -> Deletion:
    """What deleting model ``model_id`` leaves (its row is all that goes; NotFoundError if there is none)."""
    row = project.db.execute("SELECT name, kind, run_id FROM models WHERE id = ?", [model_id]).fetchone()
    if row is None:
        have = [str(r[0]) for r in project.db.execute("SELECT id FROM models ORDER BY id")]
        raise NotFoundError(f"no model with id {model_id} in {project.path.name} (have: {', '.join(have) or 'none'})")
    name, kind, run_id = row
    kept = []
    if run_id is not None and project.db.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone():
        kept.append(f"Its training run #{run_id} and its curves stay.")
    users = [r["id"] for r in project.db.query("SELECT id, parameters FROM runs ORDER BY id")
             if r["id"] != run_id and _uses_model(_parameters(r), model_id)]
    if users:
        kept.append(f"{_count(len(users), 'run')} that used it ({', '.join(f'#{u}' for u in users)}) "
                    f"{_stay(users)} with {'its' if len(users) == 1 else 'their'} candidates but can no longer be "
                    "repeated.")
    return Deletion(f"model {model_id} ({kind}" + (f", “{name}”)" if name else ")"), {}, kept)


# --------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------


def _chunks(ids: list[int], size: int = 900):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def candidates_deletion(project: Project, ids: list[int]) -> Deletion:
    """What :func:`delete_candidates` would remove (nothing is deleted); NotFoundError naming the ids
    that are no candidates."""
    wanted = sorted(set(ids))
    if not wanted:
        raise CrystalStudioError("no candidates given")
    runs: dict[int, int] = {}
    found: set[int] = set()
    for chunk in _chunks(wanted):
        for candidate_id, run_id in project.db.execute(
                f"SELECT id, run_id FROM candidates WHERE id IN ({','.join('?' * len(chunk))})", chunk):
            found.add(candidate_id)
            runs[run_id] = runs.get(run_id, 0) + 1
    missing = [i for i in wanted if i not in found]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise NotFoundError(f"no candidate with id {shown} in {project.path.name}; nothing was deleted")
    of = ", ".join(f"#{r}" for r in sorted(runs))
    return Deletion(f"{_count(len(wanted), 'candidate')} of run{'' if len(runs) == 1 else 's'} {of}",
                    {"candidates": len(wanted)})


def delete_candidates(project: Project, ids: list[int]) -> Deletion:
    """Delete the candidates ``ids`` (all or none: NotFoundError when one is not a candidate)."""
    with project.transaction() as db:
        deletion = candidates_deletion(project, ids)
        retire_ids(db, "candidates")
        for chunk in _chunks(sorted(set(ids))):
            db.execute(f"DELETE FROM candidates WHERE id IN ({','.join('?' * len(chunk))})", chunk)
    deletion.deleted = True
    return deletion
