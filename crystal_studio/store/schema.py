"""Project schema and its forward-only migrations.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[n]`` takes a database at version
n-1 to version n; opening an older project applies the missing steps in one transaction each.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlite_utils

from crystal_studio.core.structures import element_mask


def _v1(db: sqlite_utils.Database) -> None:
    """Initial schema."""
    db["datasets"].create(
        {"id": int, "name": str, "source": str, "description": str, "metadata": str, "created": str},
        pk="id", not_null={"name"})
    db["datasets"].create_index(["name"], unique=True)
    db["structures"].create(
        {"id": int, "dataset_id": int, "name": str, "source": str, "formula": str, "reduced_formula": str,
         "elements": str, "nsites": int, "spacegroup_number": int, "spacegroup_symbol": str, "volume": float,
         "density": float, "valid": int, "flags": str, "meta": str, "structure": str},
        pk="id", foreign_keys=[("dataset_id", "datasets", "id")])
    db["structures"].create_index(["dataset_id", "reduced_formula"])
    db["properties"].create(
        {"structure_id": int, "name": str, "value": float, "source": str},
        pk=("structure_id", "name"), foreign_keys=[("structure_id", "structures", "id")])
    db["models"].create(
        {"id": int, "name": str, "kind": str, "targets": str, "hyperparameters": str, "normalization": str,
         "metrics": str, "checkpoint": bytes, "dataset_id": int, "run_id": int, "created": str},
        pk="id")
    db["runs"].create(
        {"id": int, "kind": str, "status": str, "parameters": str, "seed": int, "device": str, "versions": str,
         "message": str, "started": str, "finished": str},
        pk="id")
    db["run_metrics"].create(
        {"run_id": int, "step": int, "name": str, "value": float},
        foreign_keys=[("run_id", "runs", "id")])
    db["run_metrics"].create_index(["run_id", "name", "step"])
    db["specs"].create({"id": int, "name": str, "document": str, "created": str}, pk="id")
    db["candidates"].create(
        {"id": int, "run_id": int, "structure": str, "formula": str, "predicted": str, "checks": str,
         "success": int, "relaxed_structure": str, "oracle_energy_per_atom": float, "flag": str, "notes": str},
        pk="id", foreign_keys=[("run_id", "runs", "id")])


def _v2(db: sqlite_utils.Database) -> None:
    """Element bit masks on structures (fast contains-all/any/none filters), the minimum interatomic
    distance, and a (name, value) index on properties for range filters and sorting."""
    structures = db["structures"]
    structures.add_column("el_mask_lo", int)
    structures.add_column("el_mask_hi", int)
    structures.add_column("min_distance", float)
    rows = db.execute("SELECT id, elements FROM structures").fetchall()
    db.conn.executemany(
        "UPDATE structures SET el_mask_lo = ?, el_mask_hi = ? WHERE id = ?",
        [(*element_mask(json.loads(elements)), sid) for sid, elements in rows])
    db["properties"].create_index(["name", "value"])
    structures.create_index(["dataset_id", "nsites"])
    structures.create_index(["dataset_id", "spacegroup_number"])


def _v3(db: sqlite_utils.Database) -> None:
    """Decompositions relative to a dataset's own convex hull (store/derived.py): one row per structure
    with its energy above that hull (eV/atom), number of products, and the products as JSON
    (``[{"formula", "fraction", "structure_id"}]``, atom fractions summing to 1)."""
    db["decompositions"].create(
        {"structure_id": int, "dataset_id": int, "e_above_hull": float, "n_components": int, "products": str,
         "source": str, "created": str},
        pk="structure_id",
        foreign_keys=[("structure_id", "structures", "id"), ("dataset_id", "datasets", "id")])
    db["decompositions"].create_index(["dataset_id"])


def _v4(db: sqlite_utils.Database) -> None:
    """Formulas sampled by a generative run (store/samples.py): one row per distinct decoded formula
    with how often it was drawn and its checks as JSON."""
    db["formula_samples"].create(
        {"id": int, "run_id": int, "formula": str, "count": int, "checks": str},
        pk="id", foreign_keys=[("run_id", "runs", "id")])
    db["formula_samples"].create_index(["run_id"])


def _v5(db: sqlite_utils.Database) -> None:
    """Who runs a run: the owning process (host name, process id) and its heartbeat (UTC ISO time,
    refreshed as the run records metrics), so a run whose process died is recognized (store/models.py)."""
    runs = db["runs"]
    runs.add_column("owner_host", str)
    runs.add_column("owner_pid", int)
    runs.add_column("heartbeat", str)


def _v6(db: sqlite_utils.Database) -> None:
    """Run names (a label the user gives a run; empty: none) and id floors: the highest id ever deleted
    from a table, so that a new row never takes an id that runs and models may still name (a training
    run's split names structures, an optimization its models; see store/project.py ``retire_ids``)."""
    db["runs"].add_column("name", str)
    db["id_floors"].create({"name": str, "floor": int}, pk="name")


def _v7(db: sqlite_utils.Database) -> None:
    """Indexes for the lists a long-lived project grows: a run's candidates (the Candidates panel and
    ``candidates --run``) and runs by kind, newest first (the run lists)."""
    db["candidates"].create_index(["run_id"], if_not_exists=True)
    db["runs"].create_index(["kind", "id"], if_not_exists=True)


def _v8(db: sqlite_utils.Database) -> None:
    """Covering indexes for the GUI's filtered pages (issue 15): property ranges read structure ids from
    (name, value, structure_id) without a table lookup, and the element-mask/site/space-group/formula
    filters are evaluated on a (dataset_id, id, ...) index instead of structure rows whose masks lie
    after the structure JSON (overflow pages)."""
    db["properties"].create_index(["name", "value", "structure_id"], if_not_exists=True)
    db["structures"].create_index(["dataset_id", "id", "el_mask_lo", "el_mask_hi", "nsites", "spacegroup_number",
                                   "valid", "reduced_formula"], index_name="idx_structures_filters",
                                  if_not_exists=True)


def _v9(db: sqlite_utils.Database) -> None:
    """A covering index in formula order (issue 15): a dataset's page sorted by formula walks it and stops
    after the page, with the element/site/space-group filters read from the index, instead of sorting
    every match ("no O/F, 4–10 sites, sorted by formula" at 100k: page 28 → 2 ms)."""
    db["structures"].create_index(["dataset_id", "reduced_formula", "id", "el_mask_lo", "el_mask_hi", "nsites",
                                   "spacegroup_number", "valid"], index_name="idx_structures_formula_order",
                                  if_not_exists=True)


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6,
                                                                  7: _v7, 8: _v8, 9: _v9}
SCHEMA_VERSION = max(MIGRATIONS)
