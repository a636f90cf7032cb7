"""Moving a project's contents between processes and machines without a second writer.

- :func:`snapshot_bytes` is a consistent copy of a project file (SQLite's online backup), sent to
  remote tasks once; :func:`open_scratch` makes it a private, throw-away project on the worker, which
  tasks may read and write as they like: it is never the user's project.
- :func:`export_run` / :func:`import_run` carry one finished run (its row, per-step metrics and
  candidates) from a scratch copy back to the real project, written by the driver in one transaction.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from crystal_studio.store.project import Project, with_fresh_id

_SCRATCH = "cs-scratch-"
_RUN_LOCAL = ("id", "owner_host", "owner_pid", "heartbeat")  # run columns that belong to the copy, not the run


def snapshot_bytes(project: Project) -> bytes:
    """A consistent copy of ``project`` (committed state only) as the bytes of an SQLite file."""
    folder = Path(tempfile.mkdtemp(prefix="cs-snapshot-"))
    try:
        target = folder / "snapshot.sqlite"
        dest = sqlite3.connect(target)
        try:
            project.db.conn.backup(dest)
        finally:
            dest.close()
        return target.read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def open_scratch(data: bytes) -> Project:
    """A private project made of snapshot ``data`` in a temporary folder, removed when the process
    ends; folders left by processes that died without cleaning up (killed workers) are removed here."""
    _remove_orphans()
    folder = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "scratch.sqlite"
    path.write_bytes(data)
    return Project.open(path, migrate=False)


def _remove_orphans() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{_SCRATCH}*-*"):
        try:
            pid = int(folder.name[len(_SCRATCH):].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's live process
            continue


def export_run(project: Project, run_id: int) -> dict:
    """Run ``run_id`` with its metrics and candidates, as plain rows (no ids)."""
    [run] = list(project.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    metrics = [{k: v for k, v in row.items() if k != "run_id"}
               for row in project.db.query("SELECT * FROM run_metrics WHERE run_id = ? ORDER BY rowid", [run_id])]
    candidates = [{k: v for k, v in row.items() if k not in ("id", "run_id")}
                  for row in project.db.query("SELECT * FROM candidates WHERE run_id = ? ORDER BY id", [run_id])]
    return {"run": {k: v for k, v in run.items() if k not in _RUN_LOCAL}, "metrics": metrics, "candidates": candidates}


def import_run(project: Project, doc: dict) -> int:
    """Store a run exported by :func:`export_run` (status, times and parameters as they were) with its
    metrics and candidates, all in one transaction; returns its new id."""
    with project.transaction() as db:
        run_id = int(db["runs"].insert(with_fresh_id(db, "runs", dict(doc["run"]))).last_pk)
        db["run_metrics"].insert_all({**row, "run_id": run_id} for row in doc["metrics"])
        for k, row in enumerate(doc["candidates"]):
            row = {**row, "run_id": run_id}
            db["candidates"].insert(with_fresh_id(db, "candidates", row) if k == 0 else row)
    return run_id
