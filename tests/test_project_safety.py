"""Project-file safety (issue 17 item 3), through the public interfaces (the command line, Project.open,
the session lock): a corrupted file, a file that is not SQLite, a project from a newer schema, one
another running Crystal Studio has open, checkpoints that ask to run code, exports that would leave
the chosen folder, and the backup kept before a migration. Each case gives a clear message, exit 2
and no traceback, and changes nothing it was not asked to change.

Covered elsewhere and not repeated here: a damaged page inside an otherwise good project
(tests/test_hostile_store.py::test_nothing_is_written_into_a_damaged_project), garbage schema
versions, read-only files and file systems, full disks and locks held by a writer (same file), a run
state file that asks to run code (tests/test_ml_training.py), planted symlinks in an export folder
(tests/test_hostile.py::test_export_never_follows_a_planted_symlink).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from crystal_studio.core.errors import ProjectError
from crystal_studio.store import models as model_store
from crystal_studio.store import project as project_module
from crystal_studio.store.importer import import_paths
from crystal_studio.store.project import NewerSchemaError, Project, StructureQuery
from crystal_studio.store.schema import SCHEMA_VERSION
from crystal_studio.store.session import ProjectInUseError, claim_session, lock_path, session_holder
from tests.clitools import run_cli
from tests.conftest import GOOD

PACKAGE = Path(__file__).resolve().parents[1] / "crystal_studio"


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


# ------------------------------------------------------------------ corrupted and non-SQLite files


def test_a_truncated_project_is_reported_damaged_and_left_alone(stored):
    data = stored.read_bytes()
    stored.write_bytes(data[: len(data) // 2])  # a copy that stopped half-way
    before = digest(stored)
    for args in (("info", stored), ("import", stored, GOOD / "SrTiO3.cif", "--dataset", "more")):
        result = cli(*args)
        assert result.returncode == 2
        assert re.search(r"damaged|not a Crystal Studio project|malformed", result.stderr), result.stderr
    assert digest(stored) == before


@pytest.mark.parametrize("content", [b"PK\x03\x04 a zip file renamed", b"\x00" * 4096, os.urandom(10_000),
                                     b"SQLite format 3\x00" + b"\xff" * 200])
def test_a_file_that_is_not_a_project_is_refused_without_a_change(tmp_path, content):
    path = tmp_path / "sent-by-a-colleague.sqlite"
    path.write_bytes(content)
    for verb in ("info", "datasets", "models"):
        result = cli(verb, path)
        assert result.returncode == 2
        assert "not a Crystal Studio project" in result.stderr or "damaged" in result.stderr, result.stderr
    with pytest.raises(ProjectError):
        Project.open(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no -wal, -shm, .lock, backup


# ------------------------------------------------------------------ a project from a newer Crystal Studio


@pytest.fixture
def newer(stored) -> Path:
    with sqlite3.connect(stored) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.execute("CREATE TABLE future_feature (x)")  # what a newer schema might add
    conn.close()
    return stored


def test_a_newer_project_is_refused_with_the_versions_and_left_alone(newer):
    before = digest(newer)
    for args in (("info", newer), ("import", newer, GOOD / "SrTiO3.cif", "--dataset", "more")):
        result = cli(*args)
        assert result.returncode == 2
        assert (f"made by a newer Crystal Studio (schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}); update Crystal "
                "Studio to change it") in result.stderr
        assert "nothing was changed" in result.stderr
    with pytest.raises(NewerSchemaError) as info:
        Project.open(newer)
    assert info.value.version == SCHEMA_VERSION + 1
    assert digest(newer) == before


def test_a_newer_project_opens_read_only_and_every_write_is_refused(newer):
    before = digest(newer)
    project = Project.open(newer, read_only="made by a newer Crystal Studio")
    assert project.count(StructureQuery(dataset="good")) == 9
    assert [d.name for d in project.datasets()] == ["good"]
    assert project.structure(project.ids()[0]).num_sites > 0
    with pytest.raises(ProjectError, match=r"open read-only \(made by a newer Crystal Studio\); nothing was changed"):
        with project.transaction() as db:
            db.execute("DELETE FROM structures")
    with pytest.raises(ProjectError, match="read-only"):
        model_store.create_run(project, "train", {}, 0, "cpu", {})
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
        project.db.execute("DELETE FROM structures")  # even SQL that bypasses transaction()
    project.close()
    assert digest(newer) == before


# ------------------------------------------------------------------ opened by another running instance

HOLDER = textwrap.dedent("""
    import sys, time
    from crystal_studio.store.session import claim_session
    session = claim_session(sys.argv[1])
    print("held" if session.held else "not held", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def held_elsewhere(stored):
    """Another process (as another Crystal Studio window would) holding ``stored``'s session."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(stored)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield stored, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_project_open_in_another_instance_is_named_and_opens_read_only(held_elsewhere):
    stored, proc = held_elsewhere
    with pytest.raises(ProjectInUseError) as info:
        claim_session(stored)
    message = str(info.value)
    assert f"{stored}: the project is already open in another Crystal Studio (process {proc.pid} on " in message
    assert "open it read-only here, or close it there first" in message
    assert session_holder(stored)["pid"] == proc.pid
    before = digest(stored)
    project = Project.open(stored, read_only=info.value.reason)
    assert project.count() == 9
    with pytest.raises(ProjectError, match=rf"read-only \(already open in another Crystal Studio, process {proc.pid}"):
        import_paths(project, [GOOD / "SrTiO3.cif"], "more")
    project.close()
    assert digest(stored) == before


def test_a_killed_instance_leaves_no_stale_session(held_elsewhere):
    stored, proc = held_elsewhere
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the OS drops its lock
    proc.wait()
    session = claim_session(stored)
    assert session.held and json.loads(lock_path(stored).read_text())["pid"] == os.getpid()
    session.release()
    assert not lock_path(stored).exists()
    assert session_holder(stored) is None


def test_one_session_per_project_and_command_line_work_beside_it(stored, tmp_path):
    with claim_session(stored) as session:
        assert session.held
        with pytest.raises(ProjectInUseError):
            claim_session(stored)  # a second window of this very process too
        other = Project.create(tmp_path / "other.sqlite")
        with claim_session(other.path):  # another project is free
            pass
        result = cli("import", stored, GOOD / "SrTiO3.cif", "--dataset", "beside")  # scripts still work
        assert result.returncode == 0, result.stderr
    assert not lock_path(stored).exists()
    with claim_session(stored):
        pass


def test_a_folder_that_cannot_hold_the_lock_claims_nothing(stored, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only folder")

    monkeypatch.setattr("crystal_studio.store.session.os.open", refuse)
    session = claim_session(stored)
    assert not session.held
    session.release()


# ------------------------------------------------------------------ checkpoints and binary payloads


def test_no_module_unpickles_or_loads_checkpoints_unsafely():
    """Audit of the package: every torch.load is weights-only, nothing uses pickle, numpy loads no
    pickles, and no other deserializer that runs code (marshal, shelve, dill, joblib) is imported."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\((.*)$", text, re.MULTILINE):  # the call's line
            if "weights_only=True" not in match.group(1):
                problems.append(f"{path.name}: {match.group(0)}")
        for pattern in (r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|marshal|shelve)\b", r"allow_pickle\s*=\s*True",
                        r"\bpickle\.loads?\(", r"\bnp\.load\(", r"\bnumpy\.load\("):
            problems += [f"{path.name}: {m.group(0).strip()}" for m in re.finditer(pattern, text, re.MULTILINE)]
    assert problems == []


def test_a_model_whose_checkpoint_asks_to_run_code_is_refused_and_nothing_runs(stored, tmp_path):
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    torch.save({"weights": Payload()}, buffer)
    project = Project.open(stored)
    hyper = {"model": {"n_targets": 1}, "members": 1, "training": {}}
    model_id = model_store.add_model(project, "evil", "gnn", ["band_gap"], hyper, {"mean": [0], "std": [1]}, {},
                                     buffer.getvalue())
    project.close()
    result = cli("predict", stored, "--model", model_id, GOOD / "SrTiO3.cif")
    assert result.returncode == 2
    assert f"model {model_id}: not a readable weights-only checkpoint (it asks to run code (" in result.stderr
    assert "refused" in result.stderr and "weights_only" not in result.stderr
    assert not marker.exists()


def test_a_model_file_that_asks_to_run_code_is_refused_on_import(stored, tmp_path):
    import torch

    from crystal_studio.core.errors import CrystalStudioError
    from crystal_studio.ml.predictor import import_model_file

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "shared.model"
    torch.save({"format": "crystal-studio-model", "meta": "{}", "state_dict": Payload()}, path)
    with pytest.raises(CrystalStudioError, match="asks to run code"):
        import_model_file(Project.open(stored), path)
    assert not marker.exists()


# ------------------------------------------------------------------ exports stay inside the chosen folder


@pytest.fixture
def hostile_names(stored) -> Path:
    """``stored`` edited as a hostile colleague could: names that try to climb out of an export folder."""
    with sqlite3.connect(stored) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM structures ORDER BY id")]
        names = ["../../escaped", "/tmp/absolute", "..", "a/../../b", "..\\..\\win", "\x00nul", ".hidden",
                 "C:\\evil", "~/home"]
        for sid, name in zip(ids, names, strict=False):
            conn.execute("UPDATE structures SET reduced_formula = ? WHERE id = ?", [name, sid])
    conn.close()
    return stored


@pytest.mark.parametrize("target", ["folder", "zip"])
def test_exports_never_write_outside_the_chosen_folder(hostile_names, tmp_path, target):
    out = tmp_path / "exports" / ("out.zip" if target == "zip" else "out")
    before = set(tmp_path.rglob("*"))
    result = cli("export", hostile_names, "--dataset", "good", "--format", "cif", "--out", out)
    assert result.returncode == 0, result.stderr
    created = set(tmp_path.rglob("*")) - before
    assert out in created and all(p in (out.parent, out) or out in p.parents for p in created), created
    assert not list(Path("/tmp").glob("absolute*.cif"))
    if target == "folder":
        assert all(p.parent == out and p.is_file() and not p.is_symlink() for p in out.iterdir())
        names = [p.name for p in out.iterdir()]
    else:
        with zipfile.ZipFile(out) as archive:
            names = archive.namelist()
    assert len(names) == 9
    assert all(Path(n).name == n and "\\" not in n and not n.startswith((".", "~")) and n != ".." for n in names), names


def test_candidate_exports_stay_inside_the_folder_too(stored, tmp_path):
    from crystal_studio.store.candidates import add_candidates
    from crystal_studio.store.exporting import export_candidates

    project = Project.open(stored)
    structure = project.structure(project.ids()[0])
    run_id = model_store.create_run(project, "optimization", {}, 0, "cpu", {})
    add_candidates(project, run_id, [(structure, {"formula": "../../../escaped", "success": True}),
                                     (structure, {"formula": "/etc/passwd", "success": True})])
    out = tmp_path / "c"
    written = export_candidates(project, run_id, out, "poscar")
    assert len(written) == 2 and all(p.parent == out for p in written)
    assert {p.name for p in tmp_path.iterdir()} <= {"c", "p.sqlite", "p.sqlite-shm", "p.sqlite-wal"}
    project.close()


# ------------------------------------------------------------------ a backup before every migration


@pytest.fixture
def old_project(tmp_path) -> Path:
    """A closed project at schema 5 (before run names and id floors) holding one dataset."""
    path = tmp_path / "old.sqlite"
    old = Project(path)
    old.migrate(target=5)
    import_paths(old, [GOOD], "legacy")
    old.close()
    return path


def test_a_migration_keeps_a_copy_of_the_old_file_beside_it(old_project):
    result = cli("info", old_project, "--json")
    assert result.returncode == 0, result.stderr
    backup = old_project.with_name("old.sqlite.schema5-backup.sqlite")
    assert f"updated {old_project} to schema {SCHEMA_VERSION}; the file as it was is kept as {backup}" in result.stderr
    assert json.loads(result.stdout)["schema_version"] == SCHEMA_VERSION
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM structures").fetchone()[0] == 9
        assert "id_floors" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    again = cli("info", old_project)  # already current: no second backup, no note
    assert again.returncode == 0 and "updated" not in again.stderr
    assert sorted(p.name for p in old_project.parent.glob("*backup*")) == [backup.name]


def test_a_backup_never_overwrites_an_earlier_one(old_project):
    first = old_project.with_name("old.sqlite.schema5-backup.sqlite")
    first.write_bytes(b"an earlier backup the user kept")
    project = Project.open(old_project)
    assert project.migration_backup == old_project.with_name("old.sqlite.schema5-backup-2.sqlite")
    assert first.read_bytes() == b"an earlier backup the user kept"
    project.close()


def test_no_migration_without_a_backup(old_project, monkeypatch):
    before = digest(old_project)
    monkeypatch.setattr(project_module, "backup_path", lambda path, version: path.parent / "gone" / "b.sqlite")
    with pytest.raises(ProjectError, match=rf"cannot back up the project before updating it from schema 5 to "
                                           rf"{SCHEMA_VERSION} .*; nothing was changed"):
        Project.open(old_project)
    assert digest(old_project) == before
    assert Project(old_project).schema_version == 5
    assert not list(old_project.parent.glob("*.part"))


# ------------------------------------------------------------------ the window opens a held project read-only


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the main window's VTK view needs an X display (xvfb-run)")
def test_a_second_window_shows_a_held_project_read_only(held_elsewhere, qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from crystal_studio.gui.main_window import MainWindow

    stored, proc = held_elsewhere
    window = MainWindow(stored, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.project is not None, timeout=20000)
    assert window.windowTitle() == "Crystal Studio — p (read-only)"
    assert window.project.read_only.startswith(f"already open in another Crystal Studio, process {proc.pid}")
    assert "Opened read-only" in window.statusBar().currentMessage()
    window.close()
    proc.kill()
    proc.wait()
    mine = MainWindow(stored, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(mine)
    mine.show()
    qtbot.waitUntil(lambda: mine.project is not None, timeout=20000)
    assert mine.windowTitle() == "Crystal Studio — p" and mine.project.read_only is None
    assert session_holder(stored)["pid"] == os.getpid()  # this window holds it now
    mine.close()
    assert session_holder(stored) is None
