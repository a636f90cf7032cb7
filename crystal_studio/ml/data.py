"""Labelled training data from a project's store, and seeded splits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.ml.elements import unsupported_elements
from crystal_studio.store.project import Project, StructureQuery


@dataclass
class LabelledData:
    """Structures of a dataset with their target values; ``y[i, k]`` is NaN where target k is unknown."""

    ids: list[int]
    structures: list[Structure]
    y: np.ndarray  # (n, T), physical units
    skipped: Counter = field(default_factory=Counter)  # reason -> number of structures left out

    def subset(self, ids: list[int]) -> LabelledData:
        """The records with the given structure ids, in that order; CrystalStudioError if any is missing."""
        where = {sid: k for k, sid in enumerate(self.ids)}
        missing = [sid for sid in ids if sid not in where]
        if missing:
            raise CrystalStudioError(f"{len(missing)} structure(s) of the stored split are no longer in the dataset "
                                     f"(e.g. id {missing[0]})")
        rows = [where[sid] for sid in ids]
        return LabelledData(list(ids), [self.structures[k] for k in rows], self.y[rows])


def load_labelled(project: Project, dataset: str, targets: list[str], progress: ProgressCallback = no_progress,
                  cancel: CancelToken | None = None) -> LabelledData:
    """Every structure of ``dataset`` with a value for at least one of ``targets``.

    Left out (counted in ``skipped``): structures without any target value and structures with
    elements the models do not cover.
    """
    cancel = cancel or CancelToken()
    query = StructureQuery(dataset=dataset)
    total = project.count(query)
    ids, structures, rows = [], [], []
    skipped: Counter = Counter()
    for k, (row, structure) in enumerate(project.iter_structures(query)):
        if k % 500 == 0:
            cancel.check()
            progress(ProgressEvent(k, total, "reading structures"))
        values = [row["properties"].get(t, np.nan) for t in targets]
        if all(np.isnan(v) for v in values):
            skipped["no target value"] += 1
            continue
        _check_label_sizes(row["id"], dataset, targets, values)
        bad = unsupported_elements(row["elements"])
        if bad:
            skipped[f"element(s) not covered: {', '.join(bad)}"] += 1
            continue
        ids.append(row["id"])
        structures.append(structure)
        rows.append(values)
    y = np.array(rows, dtype=np.float64).reshape(len(rows), len(targets))
    return LabelledData(ids, structures, y, skipped)


LABEL_LIMIT = 1e30
"""Largest label magnitude a model trains on: far beyond any property in its canonical unit (the
float32 models overflow near 3e38), so a larger value is an entry error, not data."""


def _check_label_sizes(structure_id: int, dataset: str, targets: list[str], values: list[float]) -> None:
    for target, value in zip(targets, values, strict=True):
        if abs(value) > LABEL_LIMIT:
            raise CrystalStudioError(f"structure {structure_id} of '{dataset}': {target} = {value:.3g} is too large "
                                     f"to train on (|value| must be at most {LABEL_LIMIT:.0e}); fix or remove it")


def split_ids(ids: list[int], fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """A seeded random train/val/test split of ``ids``; every part gets at least one id.

    ``fractions`` are the train, validation and test shares (they need not sum to one exactly;
    train gets the remainder).
    """
    n = len(ids)
    if n < 3:
        raise CrystalStudioError(f"need at least 3 labelled structures to train (train/val/test), found {n}")
    _, f_val, f_test = fractions
    n_val = max(1, round(f_val * n))
    n_test = max(1, round(f_test * n))
    if n_val + n_test >= n:
        raise CrystalStudioError(f"split {fractions} leaves no training structures out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    chosen = [ids[k] for k in order]
    return {"train": chosen[n_val + n_test:], "val": chosen[:n_val], "test": chosen[n_val:n_val + n_test]}
