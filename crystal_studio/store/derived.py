"""Properties derived from a whole dataset: energy above the dataset's own convex hull.

:func:`compute_dataset_hull` reads a dataset's formation energies, builds the hulls
(:func:`crystal_studio.core.hull.dataset_hull`) and stores, in one transaction, per structure:

- property ``e_above_hull`` (eV/atom) with source ``"dataset hull: <dataset name>"`` — relative to this
  dataset's hull, not to Materials Project's;
- property ``decomposition_components`` (number of decomposition products, 1 when stable);
- a row of the ``decompositions`` table: the same energy, the count, and the products as JSON
  ``[{"formula", "fraction", "structure_id"}]`` (atom fractions summing to 1; ``structure_id`` is the
  product's structure in this dataset, ``null`` for an element at its 0 eV/atom reference).

Running it again replaces every value the previous run stored for that dataset. An ``e_above_hull``
that came with the data (source ``import``, e.g. OQMD's own hull distance) is kept unless
``replace_imported``; the dataset-hull value is then still in ``decompositions``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from crystal_studio.core.progress import CancelToken, ProgressCallback, no_progress
from crystal_studio.store.project import Project, now

if TYPE_CHECKING:  # pymatgen's phase diagram costs ~0.8 s to import: only when a hull is built
    from crystal_studio.core.hull import HullResult

ENERGY_PROPERTY = "formation_energy_per_atom"  # eV/atom
HULL_PROPERTIES = ("e_above_hull", "decomposition_components")
SOURCE_PREFIX = "dataset hull: "


def hull_source(dataset: str) -> str:
    """The ``source`` text of properties derived from ``dataset``'s own hull."""
    return SOURCE_PREFIX + dataset


@dataclass(frozen=True)
class HullSummary:
    """What one :func:`compute_dataset_hull` run did.

    ``entries``: structures with a finite formation energy (all got a decomposition); ``stable``: those on
    the hull; ``chemical_systems``: distinct element sets among them; ``skipped``: structures of the
    dataset without a usable formation energy; ``kept_imported``: structures whose imported
    ``e_above_hull`` was left in place; ``seconds``: wall time of the whole run.
    """

    dataset: str
    entries: int
    stable: int
    chemical_systems: int
    skipped: int
    kept_imported: int
    seconds: float

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StoredDecomposition:
    """One ``decompositions`` row: energy above the dataset hull (eV/atom) and its products."""

    structure_id: int
    e_above_hull: float
    n_components: int
    products: list[dict]  # [{"formula": str, "fraction": float, "structure_id": int | None}]
    source: str


def compute_dataset_hull(project: Project, dataset: str, progress: ProgressCallback = no_progress,
                         cancel: CancelToken | None = None, replace_imported: bool = False) -> HullSummary:
    """Energy above ``dataset``'s own hull and decomposition for each of its structures, stored.

    Args:
        project: an open project.
        dataset: name of one of its datasets (NotFoundError if there is none).
        progress, cancel: as for every long operation; a cancelled run stores nothing.
        replace_imported: also overwrite an ``e_above_hull`` that was imported with the data.

    Returns:
        A :class:`HullSummary`.
    """
    started = time.perf_counter()
    dataset_id = project.dataset_id(dataset)
    rows = project.db.execute(
        "SELECT s.id, s.formula, p.value FROM structures s LEFT JOIN properties p "
        "ON p.structure_id = s.id AND p.name = ? WHERE s.dataset_id = ? ORDER BY s.id",
        [ENERGY_PROPERTY, dataset_id]).fetchall()
    usable = [(sid, formula, value) for sid, formula, value in rows
              if value is not None and math.isfinite(value) and formula]
    from crystal_studio.core.hull import dataset_hull

    results = dataset_hull(usable, progress=progress, cancel=cancel)
    (cancel or CancelToken()).check()
    source = hull_source(dataset)
    stamp = now()
    with project.transaction() as db:
        in_dataset = "SELECT id FROM structures WHERE dataset_id = ?"
        db.execute(
            f"DELETE FROM properties WHERE name IN ({','.join('?' * len(HULL_PROPERTIES))}) "
            f"AND source LIKE ? AND structure_id IN ({in_dataset})",
            [*HULL_PROPERTIES, SOURCE_PREFIX + "%", dataset_id])
        db["decompositions"].delete_where("dataset_id = ?", [dataset_id])
        if replace_imported:
            db.execute(f"DELETE FROM properties WHERE name IN ({','.join('?' * len(HULL_PROPERTIES))}) "
                       f"AND structure_id IN ({in_dataset})", [*HULL_PROPERTIES, dataset_id])
        kept = {sid for (sid,) in db.execute(
            f"SELECT structure_id FROM properties WHERE name = 'e_above_hull' AND structure_id IN ({in_dataset})",
            [dataset_id])}
        db.conn.executemany(
            "INSERT OR IGNORE INTO properties (structure_id, name, value, source) VALUES (?,?,?,?)",
            [row for r in results for row in ((r.structure_id, "e_above_hull", r.e_above_hull, source),
                                              (r.structure_id, "decomposition_components", float(r.n_components),
                                               source))])
        db["decompositions"].insert_all(
            ({"structure_id": r.structure_id, "dataset_id": dataset_id, "e_above_hull": r.e_above_hull,
              "n_components": r.n_components, "products": json.dumps(_products(r)), "source": source,
              "created": stamp} for r in results),
            batch_size=1000)
    return HullSummary(dataset=dataset, entries=len(results), stable=sum(r.stable for r in results),
                       chemical_systems=len({r.chemical_system for r in results}), skipped=len(rows) - len(usable),
                       kept_imported=len(kept & {r.structure_id for r in results}),
                       seconds=time.perf_counter() - started)


def _products(result: HullResult) -> list[dict]:
    return [{"formula": formula, "fraction": fraction, "structure_id": sid}
            for (formula, fraction), sid in zip(result.decomposition, result.decomposition_ids, strict=True)]


def decompositions(project: Project, dataset: str) -> dict[int, StoredDecomposition]:
    """The stored dataset-hull decompositions of ``dataset``'s structures, by structure id."""
    dataset_id = project.dataset_id(dataset)
    return {
        row["structure_id"]: StoredDecomposition(row["structure_id"], row["e_above_hull"], row["n_components"],
                                                 json.loads(row["products"]), row["source"])
        for row in project.db.query(
            "SELECT structure_id, e_above_hull, n_components, products, source FROM decompositions "
            "WHERE dataset_id = ? ORDER BY structure_id", [dataset_id])
    }
