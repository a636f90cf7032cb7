"""Trained models, runs (training or optimization) and their metrics in the project store.

Checkpoints are opaque bytes here: ``crystal_studio.ml`` serializes them (store/ never imports torch).
A run moves from ``running`` to ``completed``, ``cancelled``, ``failed`` or ``interrupted`` (its process
ended without saying: killed, or the machine went down); its metrics are rows of (step, name, value).
A running run records its owner (host and process id) and a heartbeat refreshed whenever it records
metrics: opening the project marks runs whose owner is gone ``interrupted``
(:func:`interrupt_stale_runs`), and a run another live process owns cannot be claimed again
(:func:`update_run` with ``status="running"``, as a resume does). The state a training run needs to
resume (model, optimizer, counters) lives in a file beside the project, ``PROJECT.sqlite-runs/run-ID.state``,
written atomically at each checkpoint and removed when the run completes.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crystal_studio.core.errors import Cancelled, CrystalStudioError, NotFoundError, ProjectError, Terminated
from crystal_studio.core.progress import ProgressCallback, ProgressEvent
from crystal_studio.store.project import Project, now, retire_ids, with_fresh_id

RUN_STATUSES = ("running", "completed", "cancelled", "failed", "interrupted")
RUN_KINDS = ("train", "optimization", "sampling", "polymorphs")
STALE_AFTER_S = 2 * 3600
"""A run owned by a process on another host is taken for dead when its heartbeat is older than this
(that process cannot be asked; a run on this host is dead as soon as its process is)."""


class RunBusyError(CrystalStudioError):
    """The run is being run by another live process."""


@dataclass
class ModelRecord:
    """One trained model; ``checkpoint`` holds the weights unless listed without them."""

    id: int
    name: str
    kind: str
    targets: list[str]
    hyperparameters: dict
    normalization: dict  # target -> {"mean", "std", "unit"}
    metrics: dict  # target -> {"mae", "rmse", "r2", "n"} on the test split
    dataset: str | None
    dataset_id: int | None
    run_id: int | None
    created: str
    checkpoint_bytes: int
    checkpoint: bytes | None = None

    def as_json(self) -> dict:
        """Everything but the checkpoint itself."""
        return {"id": self.id, "model_id": self.id, "name": self.name, "kind": self.kind, "targets": self.targets,
                "hyperparameters": self.hyperparameters, "normalization": self.normalization,
                "metrics": self.metrics, "dataset": self.dataset, "dataset_id": self.dataset_id,
                "run_id": self.run_id, "created": self.created, "checkpoint_bytes": self.checkpoint_bytes}


@dataclass
class RunRecord:
    """One training or optimization run, with everything needed to repeat it."""

    id: int
    kind: str
    status: str
    parameters: dict
    seed: int | None
    device: str
    versions: dict
    message: str
    started: str
    finished: str | None
    owner_host: str | None = None
    owner_pid: int | None = None
    heartbeat: str | None = None
    name: str = ""  # the user's label for the run (store/edit.py rename_run); empty: none

    def as_json(self, with_parameters: bool = True) -> dict:
        """Every field; without ``with_parameters`` leaving out the (possibly long) parameters and versions."""
        doc = {"id": self.id, "run_id": self.id, "name": self.name, "kind": self.kind, "status": self.status,
               "seed": self.seed, "device": self.device, "message": self.message, "started": self.started,
               "finished": self.finished, "owner_host": self.owner_host, "owner_pid": self.owner_pid,
               "heartbeat": self.heartbeat}
        if with_parameters:
            doc.update(parameters=self.parameters, versions=self.versions)
        return doc


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


def _this_process() -> dict:
    """Owner and heartbeat columns naming the calling process, now."""
    return {"owner_host": socket.gethostname(), "owner_pid": os.getpid(), "heartbeat": now()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _owner_alive(row: dict) -> bool:
    """Whether the process owning a ``running`` run row still exists: asked directly on this host
    (POSIX), judged by the heartbeat's age elsewhere; a row without an owner (written before owners
    were recorded) has none."""
    if row["owner_pid"] is None or row["heartbeat"] is None:
        return False
    if row["owner_host"] == socket.gethostname() and os.name == "posix":
        return _pid_alive(row["owner_pid"])
    age = datetime.now(UTC) - datetime.fromisoformat(row["heartbeat"])
    return age.total_seconds() < STALE_AFTER_S


def is_live(row: dict) -> bool:
    """Whether the ``runs`` row ``row`` is ``running`` in a process that still exists (this one too)."""
    return row["status"] == "running" and _owner_alive(row)


def _refuse_if_owned_elsewhere(row: dict) -> None:
    """RunBusyError when run ``row`` is running in another process that is still alive."""
    if (row["status"] == "running" and (row["owner_host"], row["owner_pid"]) != (socket.gethostname(), os.getpid())
            and _owner_alive(row)):
        raise RunBusyError(f"run {row['id']} is running in process {row['owner_pid']} on {row['owner_host']} "
                           f"(last heartbeat {row['heartbeat']}); wait for it to end or stop that process first")


def create_run(project: Project, kind: str, parameters: dict, seed: int | None, device: str, versions: dict) -> int:
    """Record a new run in status ``running``, owned by this process; returns its id."""
    with project.transaction() as db:
        return int(db["runs"].insert(with_fresh_id(db, "runs", {
            "kind": kind, "status": "running", "parameters": json.dumps(parameters), "seed": seed, "device": device,
            "versions": json.dumps(versions), "message": "", "started": now(), "finished": None,
            **_this_process()})).last_pk)


def announce_run(run_id: int, progress: ProgressCallback, what: str = "started") -> None:
    """Tell a job's listeners which stored run it works on (an event carrying ``run_id``)."""
    progress(ProgressEvent(0, 0, f"run {run_id} {what}", run_id=run_id))


@contextmanager
def guarded_run(project: Project, run_id: int, cancelled_message: Callable[[], str] | None = None):
    """The one place a run leaves ``running`` by an exception: Cancelled or Ctrl-C (KeyboardInterrupt)
    marks it ``cancelled`` (with ``cancelled_message()``, e.g. how to resume), any other exception ``failed``
    with its message; the exception propagates. Completing a run is the body's business (it should
    happen in the transaction that stores the run's results)."""
    try:
        yield
    except (Cancelled, KeyboardInterrupt) as exc:
        how = "by the user" if isinstance(exc, Cancelled) else "by SIGTERM" if isinstance(exc, Terminated) else "by Ctrl-C"
        _end_run(project, run_id, "cancelled", cancelled_message() if cancelled_message else f"cancelled {how}")
        raise
    except BaseException as exc:
        _end_run(project, run_id, "failed", (str(exc) or type(exc).__name__)[:500])
        raise


def _end_run(project: Project, run_id: int, status: str, message: str) -> None:
    """Give a run that ended by an exception its final status. When the project cannot take even that
    write (a full disk), the run is left as it is (the next open marks it interrupted), so the error that
    ended the run is the one reported."""
    with suppress(ProjectError):
        update_run(project, run_id, status=status, message=message)


def update_run(project: Project, run_id: int, status: str | None = None, message: str | None = None,
               device: str | None = None) -> None:
    """Change a run's status, message or device; a final status also sets ``finished``.

    Status ``running`` claims the run for this process (owner and heartbeat), atomically: RunBusyError
    while another live process runs it, so one run is never resumed twice at once.
    """
    changes: dict = {}
    if status is not None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        changes["status"] = status
        changes["finished"] = None if status == "running" else now()
    if message is not None:
        changes["message"] = message
    if device is not None:
        changes["device"] = device
    if changes:
        with project.transaction() as db:
            row = _run_row(project, run_id)
            if status == "running":
                _refuse_if_owned_elsewhere(row)
                changes.update(_this_process())
            db["runs"].update(run_id, changes)


def refuse_if_running(project: Project, run_id: int) -> None:
    """RunBusyError when run ``run_id`` is running in another live process (NotFoundError if there is
    no such run); a resume checks this before its preparations, :func:`update_run` again when it claims."""
    _refuse_if_owned_elsewhere(_run_row(project, run_id))


def interrupt_stale_runs(project: Project) -> list[int]:
    """Mark ``interrupted`` every ``running`` run whose owning process is gone, saying how to resume
    a training run; returns their ids. Writes nothing when there are none (or the file is read-only)."""
    stale = [row for row in project.db.query("SELECT * FROM runs WHERE status = 'running'") if not _owner_alive(row)]
    if not stale:
        return []
    try:
        with project.transaction() as db:
            for row in stale:
                owner = f"process {row['owner_pid']} on {row['owner_host']}" if row["owner_pid"] else "its process"
                hint = f"; resume with: crystal-studio train PROJECT --resume {row['id']}" if row["kind"] == "train" else ""
                db.execute("UPDATE runs SET status = 'interrupted', message = ?, finished = ? WHERE id = ? AND "
                           "status = 'running' AND owner_pid IS ? AND heartbeat IS ?",
                           [f"interrupted: {owner} ended without finishing it{hint}", now(), row["id"],
                            row["owner_pid"], row["heartbeat"]])
    except ProjectError:
        return []  # read-only, full, locked or damaged: the next writable open marks them
    return [row["id"] for row in stale]


def _run(row: dict) -> RunRecord:
    return RunRecord(row["id"], row["kind"], row["status"], json.loads(row["parameters"] or "{}"), row["seed"],
                     row["device"] or "", json.loads(row["versions"] or "{}"), row["message"] or "",
                     row["started"] or "", row["finished"], row["owner_host"], row["owner_pid"], row["heartbeat"],
                     row.get("name") or "")


def _run_row(project: Project, run_id: int) -> dict:
    rows = list(project.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    if not rows:
        raise NotFoundError(f"no run with id {run_id} in {project.path.name}")
    return rows[0]


def get_run(project: Project, run_id: int) -> RunRecord:
    """The run with id ``run_id``; NotFoundError if there is none."""
    return _run(_run_row(project, run_id))


def list_runs(project: Project, kind: str | None = None) -> list[RunRecord]:
    """All runs (of ``kind`` when given), newest first."""
    where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
    return [_run(r) for r in project.db.query(f"SELECT * FROM runs {where} ORDER BY id DESC", params)]


def record_metrics(project: Project, run_id: int, step: int, metrics: dict[str, float]) -> None:
    """Store the values of ``metrics`` at ``step`` of a run and refresh its heartbeat (one transaction)."""
    rows = [{"run_id": run_id, "step": step, "name": name, "value": float(value)} for name, value in metrics.items()]
    with project.transaction() as db:
        db["run_metrics"].insert_all(rows)
        db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", [now(), run_id])


def run_metrics(project: Project, run_id: int) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run: name -> [(step, value), ...] in step order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for step, name, value in project.db.execute(
            "SELECT step, name, value FROM run_metrics WHERE run_id = ? ORDER BY step, rowid", [run_id]):
        out.setdefault(name, []).append((step, value))
    return out


def delete_metrics_after(project: Project, run_id: int, step: int) -> None:
    """Drop a run's metrics recorded after ``step`` (work lost by an interrupted run that resumes)."""
    with project.transaction() as db:
        db.execute("DELETE FROM run_metrics WHERE run_id = ? AND step > ?", [run_id, step])


# --------------------------------------------------------------------------------------------------
# Resumable run state (a file beside the project)
# --------------------------------------------------------------------------------------------------


def run_state_path(project: Project, run_id: int) -> Path:
    """Where the resumable state of run ``run_id`` is kept."""
    return project.path.with_name(project.path.name + "-runs") / f"run-{run_id}.state"


def save_run_state(project: Project, run_id: int, blob: bytes) -> None:
    """Atomically replace the resumable state of a run; ProjectError (the previous state kept, no
    temporary file left) when it cannot be written, e.g. on a full disk."""
    path = run_state_path(project, run_id)
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ProjectError(f"{path}: cannot save the run's state ({exc.strerror or exc})") from None


def load_run_state(project: Project, run_id: int) -> bytes | None:
    """The last saved state of a run, or None if it never saved one (or it completed)."""
    path = run_state_path(project, run_id)
    return path.read_bytes() if path.is_file() else None


def clear_run_state(project: Project, run_id: int) -> None:
    """Remove a run's resumable state (and the folder when it becomes empty)."""
    path = run_state_path(project, run_id)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # other runs still have state there, or it never existed


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

_MODEL_COLUMNS = ("m.id, m.name, m.kind, m.targets, m.hyperparameters, m.normalization, m.metrics, m.dataset_id, "
                  "m.run_id, m.created, LENGTH(m.checkpoint) AS checkpoint_bytes, d.name AS dataset")


def _json_column(row: dict, column: str, kind: type):
    """The JSON in ``column`` of a model row, which must be a ``kind`` (list or dict; empty when NULL);
    ValueError naming the column otherwise."""
    if not row[column]:
        return kind()
    try:
        value = json.loads(row[column])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{column} is not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise ValueError(f"{column} is not a JSON {'list' if kind is list else 'object'}")
    return value


MAX_ENSEMBLE_MEMBERS = 64  # members of one predictor ensemble; more is a damaged row, not a model


def _model(row: dict, checkpoint: bytes | None = None) -> ModelRecord:
    """The record of a model row; ValueError saying what is wrong with a row that cannot be one."""
    hyperparameters = _json_column(row, "hyperparameters", dict)
    members = hyperparameters.get("members", 1)
    if type(members) is not int or not 1 <= members <= MAX_ENSEMBLE_MEMBERS:
        raise ValueError(f"hyperparameters: members is {members!r}, not a whole number from 1 to {MAX_ENSEMBLE_MEMBERS}")
    metrics = _json_column(row, "metrics", dict)
    if not all(isinstance(value, dict) for value in metrics.values()):
        raise ValueError("metrics is not a JSON object of one object per target")
    return ModelRecord(row["id"], row["name"] or "", row["kind"], _json_column(row, "targets", list),
                       hyperparameters, _json_column(row, "normalization", dict), metrics, row["dataset"],
                       row["dataset_id"], row["run_id"], row["created"] or "", row["checkpoint_bytes"] or 0, checkpoint)


def add_model(project: Project, name: str, kind: str, targets: list[str], hyperparameters: dict,
              normalization: dict, metrics: dict, checkpoint: bytes, dataset_id: int | None = None,
              run_id: int | None = None, complete_run: str | None = None) -> int:
    """Store a trained model; returns its id.

    With ``complete_run`` (a message), run ``run_id`` is marked completed in the same transaction, so
    a run is never completed without its model nor a model stored for an unfinished run.
    """
    with project.transaction() as db:
        model_id = int(db["models"].insert(with_fresh_id(db, "models", {
            "name": name, "kind": kind, "targets": json.dumps(targets), "hyperparameters": json.dumps(hyperparameters),
            "normalization": json.dumps(normalization), "metrics": json.dumps(metrics), "checkpoint": checkpoint,
            "dataset_id": dataset_id, "run_id": run_id, "created": now()})).last_pk)
        if complete_run is not None and run_id is not None:
            db["runs"].update(run_id, {"status": "completed", "message": complete_run, "finished": now()})
    return model_id


def get_model(project: Project, model_id: int, with_checkpoint: bool = True) -> ModelRecord:
    """The model with id ``model_id``; NotFoundError naming the available ids if there is none,
    ProjectError saying what is wrong with its row if it cannot be read."""
    rows = list(project.db.query(
        f"SELECT {_MODEL_COLUMNS} FROM models m LEFT JOIN datasets d ON d.id = m.dataset_id WHERE m.id = ?",
        [model_id]))
    if not rows:
        raise _unknown_model(project, model_id)
    blob = None
    if with_checkpoint:
        blob = project.db.execute("SELECT checkpoint FROM models WHERE id = ?", [model_id]).fetchone()[0]
    try:
        return _model(rows[0], blob)
    except ValueError as exc:
        raise ProjectError(f"{project.path}: model {model_id} cannot be read: {exc}") from None


def _unknown_model(project: Project, model_id: int) -> NotFoundError:
    """The error for a model id that names no model, listing the ids there are."""
    have = [str(r[0]) for r in project.db.execute("SELECT id FROM models ORDER BY id")]
    return NotFoundError(f"no model with id {model_id} in {project.path.name} "
                         f"(have: {', '.join(have) or 'none; train one with crystal-studio train'})")


def _require_model(project: Project, model_id: int) -> None:
    """NotFoundError when there is no model ``model_id`` (its row is not read)."""
    if project.db.execute("SELECT 1 FROM models WHERE id = ?", [model_id]).fetchone() is None:
        raise _unknown_model(project, model_id)


def read_models(project: Project) -> tuple[list[ModelRecord], list[str]]:
    """Every readable model without its checkpoint, oldest first, and a line per model row that cannot
    be read, naming it and what is wrong ("model 7: hyperparameters is not valid JSON (...)")."""
    records, unreadable = [], []
    for row in project.db.query(
            f"SELECT {_MODEL_COLUMNS} FROM models m LEFT JOIN datasets d ON d.id = m.dataset_id ORDER BY m.id"):
        try:
            records.append(_model(row))
        except ValueError as exc:
            unreadable.append(f"model {row['id']}: {exc}")
    return records, unreadable


def list_models(project: Project) -> list[ModelRecord]:
    """Every readable model without its checkpoint, oldest first (see :func:`read_models`)."""
    return read_models(project)[0]


def rename_model(project: Project, model_id: int, name: str) -> None:
    _require_model(project, model_id)
    with project.transaction() as db:
        db["models"].update(model_id, {"name": name})


def delete_model(project: Project, model_id: int) -> None:
    """Delete a model, readable or not (its id is never given to another model: runs name models by id)."""
    _require_model(project, model_id)
    with project.transaction() as db:
        retire_ids(db, "models")
        db["models"].delete(model_id)
