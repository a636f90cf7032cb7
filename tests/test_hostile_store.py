"""Regression tests for the store defects of issue 20 (items 8 and 13), found by hostile testing: a
project file or disk in a bad state (read-only, full, locked, damaged, a garbage schema version, a
read-only file system) or a damaged model row gives a clear message, the right exit code and no
traceback, and nothing is written into a damaged file."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from crystal_studio.core.errors import ProjectError
from crystal_studio.store import models as model_store
from crystal_studio.store import project as project_module
from crystal_studio.store.importer import import_paths
from crystal_studio.store.project import Project
from tests.clitools import run_cli
from tests.conftest import GOOD

CIF = GOOD / "SrTiO3.cif"


cli = functools.partial(run_cli, timeout=120)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def stored(tmp_path) -> Path:
    """A closed project file with the good test structures in dataset 'good'."""
    project = Project.create(tmp_path / "p.sqlite")
    import_paths(project, [GOOD], "good")
    project.close()
    return project.path


# ------------------------------------------------------------------ item 8a: a read-only project file


@pytest.fixture
def read_only(stored):
    """``stored`` made read-only: chmod 444, or (as root, whom permissions do not stop) immutable."""
    if os.geteuid() != 0:
        stored.chmod(0o444)
        yield stored
        stored.chmod(0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", stored], capture_output=True).returncode:
        pytest.skip("running as root, where chmod does not stop writes, and 'chattr +i' is not available here")
    try:
        yield stored
    finally:
        subprocess.run(["chattr", "-i", stored], check=True)


def test_writing_a_read_only_project_says_so(read_only):
    before = digest(read_only)
    result = cli("import", read_only, CIF, "--dataset", "more")
    assert result.returncode == 2
    assert f"{read_only}: the project is read-only (the file is read-only); nothing was changed" in result.stderr
    assert cli("info", read_only).returncode == 0  # reading still works
    assert digest(read_only) == before


# ------------------------------------------------------------------ item 8b: a full disk


def fill_disk(project: Project) -> None:
    """Let this thread's connection to ``project`` grow the file no more (as on a full disk)."""
    pages = project.db.execute("PRAGMA page_count").fetchone()[0]
    project.db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_is_reported_not_hidden_by_a_failed_rollback(stored):
    project = Project.open(stored)
    fill_disk(project)
    with pytest.raises(ProjectError, match=r"the disk is full \(database or disk is full\); nothing was changed"):
        with project.transaction() as db:
            db["specs"].insert_all({"name": f"spec {i}", "document": "x" * 4000, "created": ""} for i in range(20))
    assert project.db["specs"].count == 0
    assert not project.db.conn.in_transaction


# ------------------------------------------------------------------ item 8c: a lock held by another process


def test_a_project_locked_by_another_process_says_so(stored, monkeypatch):
    monkeypatch.setattr(project_module, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(stored, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        project = Project.open(stored)
        with pytest.raises(ProjectError, match=r"the project is locked by another process \(waited 0\.2 s\)"):
            model_store.create_run(project, "train", {}, 0, "cpu", {})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert model_store.list_runs(project) == []


# ------------------------------------------------------------------ item 8d: damaged pages


def damage_page(path: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with garbage."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()[0]
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xab" * page_size)


def test_nothing_is_written_into_a_damaged_project(stored):
    damage_page(stored, "specs")  # a table import never reads, so the import would not notice by itself
    before = digest(stored)
    result = cli("import", stored, CIF, "--dataset", "more")
    assert result.returncode == 2
    assert f"{stored}: the project file is damaged (" in result.stderr
    assert "nothing was written to it: restore it from a backup" in result.stderr
    info = cli("info", stored)  # its count of specs reads the damaged page
    assert info.returncode == 2
    assert "error: the project file is damaged (database disk image is malformed)" in info.stderr
    assert digest(stored) == before


# ------------------------------------------------------------------ item 8e: garbage schema versions


@pytest.mark.parametrize(("version", "message"), [
    (-5, "damaged project: its schema version is -5 (Crystal Studio writes 1 to "),
    (3, "damaged project: cannot update it from schema 3 to 4 (table \"formula_samples\" already exists); "
        "it stays at schema 3"),
])
def test_a_garbage_schema_version_is_a_clear_error(stored, version, message):
    with sqlite3.connect(stored) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    result = cli("info", stored)
    assert result.returncode == 2
    assert f"error: {stored}: {message}" in result.stderr


# ------------------------------------------------------------------ item 8f: a run on a full disk


def test_a_run_that_fills_the_disk_is_marked_failed_with_the_reason(project):
    run_id = model_store.create_run(project, "train", {}, 0, "cpu", {})
    fill_disk(project)
    with pytest.raises(ProjectError, match="the disk is full"):
        with model_store.guarded_run(project, run_id):
            for step in range(1000):  # as training records its metrics each epoch
                model_store.record_metrics(project, run_id, step, {f"metric {i}": 0.5 for i in range(50)})
    run = model_store.get_run(project, run_id)
    assert run.status == "failed"
    assert "the disk is full (database or disk is full)" in run.message


def test_a_run_state_that_does_not_fit_on_the_disk_leaves_no_temporary_file(project, monkeypatch):
    run_id = model_store.create_run(project, "train", {}, 0, "cpu", {})
    model_store.save_run_state(project, run_id, b"epoch 1")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ProjectError, match=r"run-\d+\.state: cannot save the run's state \(No space left on device\)"):
        with model_store.guarded_run(project, run_id):
            model_store.save_run_state(project, run_id, b"epoch 2")
    run = model_store.get_run(project, run_id)
    assert (run.status, "No space left on device" in run.message) == ("failed", True)
    state = model_store.run_state_path(project, run_id)
    assert sorted(p.name for p in state.parent.iterdir()) == [state.name]  # no run-N.tmp
    assert model_store.load_run_state(project, run_id) == b"epoch 1"


# ------------------------------------------------------------------ item 8g: a read-only file system


def read_only_mount(folder: Path) -> tuple[str, ...]:
    """A command prefix running the rest in a private mount namespace where ``folder`` is read-only
    (nothing outside sees it); skips the test where namespaces cannot be made."""
    prefix = ("unshare", "--mount", "--map-root-user", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"',
              str(folder))
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("cannot make a read-only mount here (needs unshare with user and mount namespaces)")
    return prefix


def test_a_read_only_file_system_is_reported_as_such(stored):
    folder = stored.parent
    prefix = read_only_mount(folder)
    opened = cli("info", stored, prefix=prefix)
    assert opened.returncode == 2
    assert f"{stored}: cannot open the project: it is on a read-only file system" in opened.stderr
    created = cli("new", folder / "q.sqlite", prefix=prefix)
    assert created.returncode == 2
    assert f"{folder / 'q.sqlite'}: cannot create the project: it is on a read-only file system" in created.stderr
    reader = Project.open(stored)
    reader.datasets()  # while it is open, the -wal and -shm files SQLite needs to read a project exist
    written = cli("import", stored, CIF, "--dataset", "more", prefix=prefix)
    reader.close()
    assert written.returncode == 2
    assert f"{stored}: the project is read-only (it is on a read-only file system)" in written.stderr
    assert "not a Crystal Studio project" not in opened.stderr + created.stderr + written.stderr


# ------------------------------------------------------------------ item 13: a damaged models row


def test_models_lists_the_readable_models_and_names_the_damaged_ones(stored):
    project = Project.open(stored)
    good = model_store.add_model(project, "good", "gnn", ["band_gap"], {"members": 3}, {}, {"band_gap": {"mae": 0.1}},
                                 b"weights")
    not_json = model_store.add_model(project, "not json", "gnn", ["band_gap"], {}, {}, {}, b"weights")
    too_many = model_store.add_model(project, "huge", "gnn", ["band_gap"], {"members": 1e7}, {}, {}, b"weights")
    too_many_int = model_store.add_model(project, "huge int", "gnn", ["band_gap"], {"members": 10**7}, {}, {}, b"w")
    with project.transaction() as db:
        db["models"].update(not_json, {"hyperparameters": "{not json"})
    project.close()

    result = cli("models", stored, "--json")
    assert result.returncode == 3
    assert [m["id"] for m in json.loads(result.stdout)["models"]] == [good]
    assert f"warning: model {not_json}: hyperparameters is not valid JSON (" in result.stderr
    assert f"warning: model {too_many}: hyperparameters: members is 10000000.0, not a whole number" in result.stderr
    table = cli("models", stored)
    assert table.returncode == 3 and "good" in table.stdout
    assert [m.id for m in model_store.list_models(project)] == [good]  # what the GUI lists
    with pytest.raises(ProjectError, match=f"model {not_json} cannot be read: hyperparameters is not valid JSON"):
        model_store.get_model(project, not_json)
    model_store.delete_model(project, not_json)  # a damaged model can still be removed
    assert model_store.read_models(project)[1] == [
        f"model {too_many}: hyperparameters: members is 10000000.0, not a whole number from 1 to 64",
        f"model {too_many_int}: hyperparameters: members is 10000000, not a whole number from 1 to 64"]
