"""Project store: schema and migrations, queries, transactions and use from several threads."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from crystal_studio.core.errors import NotFoundError, ProjectError
from crystal_studio.core.io import read_structures
from crystal_studio.store.project import Project, StructureQuery
from crystal_studio.store.schema import SCHEMA_VERSION
from tests.conftest import GOOD


@pytest.fixture
def filled(project):
    records, _ = read_structures([GOOD])
    project.add_records("good", records)
    return project


def test_new_project_is_wal_at_current_schema(project):
    assert project.schema_version == SCHEMA_VERSION
    assert project.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"datasets", "structures", "properties", "models", "runs", "run_metrics", "specs",
            "candidates"} <= set(project.db.table_names())


def test_create_refuses_existing_and_open_refuses_garbage(tmp_path, project):
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(project.path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ProjectError, match="not a Crystal Studio project"):
        Project.open(junk)
    with pytest.raises(ProjectError, match="no such project"):
        Project.open(tmp_path / "missing.sqlite")


def test_newer_schema_is_refused(project):
    project.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ProjectError, match="newer Crystal Studio"):
        Project.open(project.path)


def test_v1_project_migrates_and_keeps_its_data(tmp_path):
    """A project written by schema v1 opens after the v2 migration, with element filters working
    on the old rows."""
    path = tmp_path / "old.sqlite"
    old = Project(path)
    old.migrate(target=1)
    with old.transaction() as db:
        ds = db["datasets"].insert({"name": "legacy", "metadata": "{}"}).last_pk
        db["structures"].insert({"dataset_id": ds, "reduced_formula": "NaCl", "formula": "Na1 Cl1",
                                 "elements": '["Na", "Cl"]', "nsites": 2, "valid": 1, "flags": "[]",
                                 "meta": "{}", "structure": "{}"})
    old.close()
    assert Project(path).schema_version == 1
    project = Project.open(path)
    assert project.schema_version == SCHEMA_VERSION
    assert project.count(StructureQuery(elements_all=["Na", "Cl"])) == 1
    assert project.count(StructureQuery(elements_none=["Cl"])) == 0
    assert project.datasets()[0].name == "legacy"


def test_queries_filter_sort_and_page(filled):
    q = StructureQuery(dataset="good")
    assert filled.count(q) == 9
    assert filled.count(StructureQuery(elements_all=["Cl"])) == 5
    assert filled.count(StructureQuery(elements_all=["Na", "Cl"])) == 3
    assert filled.count(StructureQuery(elements_any=["Ga", "Sr"])) == 2
    assert filled.count(StructureQuery(elements_none=["Cl", "O"])) == 3
    assert filled.count(StructureQuery(formula="TiO")) == 1
    assert filled.count(StructureQuery(nsites_min=5, nsites_max=5)) == 1
    assert filled.count(StructureQuery(spacegroup=221)) == 7
    assert filled.count(StructureQuery(property_ranges={"band_gap": (1.0, 4.5)})) == 3
    assert filled.count(StructureQuery(property_ranges={"band_gap": (None, 1.3)})) == 1
    # with an indexed filter the property range is probed per row (EXISTS): same answers
    assert filled.count(StructureQuery(spacegroup=221, property_ranges={"band_gap": (1.0, 4.5)})) == 3
    assert filled.count(StructureQuery(spacegroup=225, property_ranges={"band_gap": (1.0, 4.5)})) == 0
    by_gap = filled.page(StructureQuery(sort="band_gap", descending=True), limit=4)
    assert [r["properties"].get("band_gap") for r in by_gap] == [5.0, 4.0, 1.5, 1.25]
    by_sites = filled.page(StructureQuery(sort="nsites"), offset=7, limit=5)
    assert [r["nsites"] for r in by_sites] == [5, 8]
    assert filled.count(StructureQuery(formula="100%_")) == 0  # LIKE wildcards are literal


def test_dataset_summary_has_property_stats(filled):
    [summary] = filled.datasets()
    assert summary.count == 9
    assert summary.properties["band_gap"] == {"count": 4, "min": 1.25, "max": 5.0}


def test_unknown_dataset_is_a_clear_error(filled):
    with pytest.raises(NotFoundError, match="no dataset named 'nope'.*have: good"):
        filled.count(StructureQuery(dataset="nope"))


def test_failed_transaction_writes_nothing(filled):
    before = filled.count()
    records, _ = read_structures([GOOD])
    with pytest.raises(RuntimeError):
        with filled.transaction() as db:
            filled.insert_records(db, "other", records)
            raise RuntimeError("boom")
    assert filled.count() == before
    assert filled.dataset_names() == ["good"]


def test_writer_and_reader_threads_never_see_database_locked(filled):
    records, _ = read_structures([GOOD])
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer():
        try:
            for _ in range(30):
                filled.add_records("stream", records)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def reader():
        try:
            while not stop.is_set():
                n = filled.count(StructureQuery(elements_all=["Cl"]))
                assert n % 5 == 0  # whole imports only: never half a transaction
                filled.page(StructureQuery(sort="band_gap"), limit=20)
        except BaseException as exc:
            errors.append(exc)
        finally:
            filled.close()

    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert filled.count(StructureQuery(dataset="stream")) == 270


def test_second_connection_in_another_process_style(filled):
    """A plain sqlite3 connection sees committed data (WAL readers)."""
    conn = sqlite3.connect(filled.path)
    assert conn.execute("SELECT COUNT(*) FROM structures").fetchone()[0] == 9
    conn.close()
