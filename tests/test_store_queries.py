"""Structure queries (Project.page / count / ids) against a plain Python reference.

A few hundred synthetic structures in two datasets, with properties that are missing, NULL, or tied,
are filtered and sorted in Python the way the SQL is meant to (ties by id, NULL or missing property
values last); every optimized query path (property ranges driven from the property index or probed
per row, property-sorted pages in both directions, column-sorted pages, the covering filter index)
must return the same rows, in the same order, and the same counts.
"""

from __future__ import annotations

import functools
import itertools
import random

import pytest

from crystal_studio.core import structures as cs
from crystal_studio.core.io import ParsedRecord
from crystal_studio.store.project import SORTABLE_COLUMNS, Project, StructureQuery

ELEMENTS = ["O", "F", "Ti", "Sr", "Na", "Cl", "Li", "Fe", "U", "Pb"]  # U and Pb: the high element mask


def _records(rng: random.Random, n: int, dataset_tag: str) -> list[ParsedRecord]:
    records = []
    for i in range(n):
        elements = sorted(rng.sample(ELEMENTS, rng.randint(1, 3)))
        formula = "".join(f"{el}{rng.choice(['', '2', '3'])}" for el in elements)
        props: dict[str, float | None] = {}
        roll = rng.random()
        if roll < 0.5:
            props["band_gap"] = rng.choice([0.0, 0.0, 1.5, 2.0, 2.5, 3.0, 4.25])  # many ties
        elif roll < 0.6:
            props["band_gap"] = None  # stored as NULL
        elif roll < 0.85:
            props["band_gap"] = round(rng.uniform(0, 6), 3)
        # else: no band_gap row at all
        if rng.random() < 0.8:
            props["formation_energy_per_atom"] = rng.choice([-1.0, round(rng.uniform(-4, 1), 2)])
        if rng.random() < 0.05:
            props["rare"] = rng.choice([1.0, 2.0])
        info = cs.StructureInfo(
            formula=formula, reduced_formula=formula, elements=elements, nsites=rng.randint(1, 12),
            spacegroup_number=rng.choice([225, 225, 221, 1, None]), spacegroup_symbol=None,
            volume=rng.choice([10.0, 20.0, round(rng.uniform(5, 50), 1)]), density=round(rng.uniform(1, 9), 2),
            min_distance=1.5, valid=rng.random() < 0.8, flags=[])
        records.append(ParsedRecord(source="synthetic", name=f"{dataset_tag}-{i % 37}", structure_json="{}",
                                    info=info, properties=props))
    return records


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    project = Project.create(tmp_path_factory.mktemp("queries") / "q.sqlite")
    rng = random.Random(15)
    project.add_records("a", _records(rng, 260, "a"))
    project.add_records("b", _records(rng, 140, "b"))
    rows = project.page(StructureQuery(), limit=10_000, with_properties=False)
    dataset_of = {r["id"]: r["dataset"] for r in rows}
    masks = dict(((sid, (lo, hi)) for sid, lo, hi in
                  project.db.execute("SELECT id, el_mask_lo, el_mask_hi FROM structures")))
    props: dict[int, dict[str, float | None]] = {}
    for sid, name, value in project.db.execute("SELECT structure_id, name, value FROM properties"):
        props.setdefault(sid, {})[name] = value
    yield project, rows, dataset_of, masks, props
    project.close()


def _reference(rows, props, q: StructureQuery) -> list[int]:
    """Ids matching ``q`` in its sort order, computed in Python."""
    out = []
    for r in rows:
        p = props.get(r["id"], {})
        if q.dataset is not None and r["dataset"] != q.dataset:
            continue
        if q.formula and q.formula.lower() not in r["reduced_formula"].lower():  # SQL LIKE: ASCII case-insensitive
            continue
        els = set(r["elements"])
        if q.elements_all and not set(q.elements_all) <= els:
            continue
        if q.elements_any and not set(q.elements_any) & els:
            continue
        if q.elements_none and set(q.elements_none) & els:
            continue
        if q.nsites_min is not None and r["nsites"] < q.nsites_min:
            continue
        if q.nsites_max is not None and r["nsites"] > q.nsites_max:
            continue
        if q.spacegroup is not None and r["spacegroup_number"] != q.spacegroup:
            continue
        if q.valid_only and not r["valid"]:
            continue
        if q.ids is not None and r["id"] not in q.ids:
            continue
        if q.reduced_formulas is not None and r["reduced_formula"] not in q.reduced_formulas:
            continue
        ok = True
        for name, (lo, hi) in q.property_ranges.items():
            if name not in p:
                ok = False
            elif lo is not None or hi is not None:
                v = p[name]
                ok = ok and v is not None and (lo is None or v >= lo) and (hi is None or v <= hi)
        if ok:
            out.append(r)
    sign = -1 if q.descending else 1
    if q.sort in SORTABLE_COLUMNS:
        def compare(a, b):  # SQLite: NULL is the smallest value; ties by id ascending
            va, vb = a[q.sort], b[q.sort]
            if va != vb:
                smaller = vb is not None and (va is None or va < vb)
                return (-1 if smaller else 1) * sign
            return a["id"] - b["id"]

        return [r["id"] for r in sorted(out, key=functools.cmp_to_key(compare))]

    def key(r):  # a property: rows without it (or with NULL) last, in id order
        v = props.get(r["id"], {}).get(q.sort)
        return (v is None, sign * v if v is not None else 0, r["id"])

    return [r["id"] for r in sorted(out, key=key)]


FILTERS = {
    "none": {},
    "dataset": dict(dataset="a"),
    "oxides": dict(dataset="a", elements_all=["O"]),
    "any U/Pb": dict(elements_any=["U", "Pb"]),
    "no O/F, 4-10 sites": dict(dataset="a", elements_none=["O", "F"], nsites_min=4, nsites_max=10),
    "formula Ti": dict(dataset="a", formula="Ti"),
    "formula ti (case)": dict(formula="ti"),
    "spacegroup 225": dict(dataset="b", spacegroup=225),
    "valid": dict(dataset="a", valid_only=True),
    "gap 2-3": dict(dataset="a", property_ranges={"band_gap": (2.0, 3.0)}),
    "oxides, gap 2-3": dict(dataset="a", elements_all=["O"], property_ranges={"band_gap": (2.0, 3.0)}),
    "gap >= 2, no dataset": dict(property_ranges={"band_gap": (2.0, None)}),
    "has gap row (NULL too)": dict(dataset="a", property_ranges={"band_gap": (None, None)}),
    "sg 225, Ef <= -1": dict(dataset="a", spacegroup=225, property_ranges={"formation_energy_per_atom": (None, -1.0)}),
    "two ranges": dict(dataset="a", property_ranges={"band_gap": (0.0, 2.5), "formation_energy_per_atom": (-2.0, 0.0)}),
    "rare + Ti": dict(formula="Ti", property_ranges={"rare": (1.0, 1.0)}),
    "missing property": dict(dataset="a", property_ranges={"nonexistent": (0.0, 1.0)}),
    "ids": dict(ids=list(range(5, 120, 3)), property_ranges={"band_gap": (None, 2.0)}),
    "formulas": dict(dataset="a", reduced_formulas=["O", "Ti", "FO2", "LiO"]),
}
SORTS = [("id", False), ("id", True), ("reduced_formula", False), ("reduced_formula", True), ("nsites", False),
         ("spacegroup_number", True), ("volume", False), ("valid", True), ("band_gap", False), ("band_gap", True),
         ("formation_energy_per_atom", False), ("formation_energy_per_atom", True), ("rare", True),
         ("nonexistent", False)]


@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_count_and_ids_match_reference(synthetic, filter_name):
    project, rows, _, _, props = synthetic
    q = StructureQuery(**FILTERS[filter_name])
    expected = _reference(rows, props, q)
    assert project.count(q) == len(expected)
    assert project.ids(q) == sorted(expected)


@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_pages_match_reference_in_every_sort(synthetic, filter_name):
    project, rows, _, _, props = synthetic
    for sort, descending in SORTS:
        q = StructureQuery(**FILTERS[filter_name], sort=sort, descending=descending)
        expected = _reference(rows, props, q)
        whole = [r["id"] for r in project.page(q, limit=10_000, with_properties=False)]
        assert whole == expected, (filter_name, sort, descending)
        # pages at offsets that cut through tie groups and the boundary to the rows without the property
        for offset, limit in itertools.product((0, 1, 7, 50, 101, len(expected) - 3, len(expected) + 5), (1, 13, 100)):
            if offset < 0:
                continue
            got = [r["id"] for r in project.page(q, offset=offset, limit=limit, with_properties=False)]
            assert got == expected[offset:offset + limit], (filter_name, sort, descending, offset, limit)


def test_page_rows_carry_their_columns_and_properties(synthetic):
    project, rows, _, _, props = synthetic
    q = StructureQuery(dataset="a", sort="band_gap", descending=True, property_ranges={"band_gap": (1.0, None)})
    page = project.page(q, offset=3, limit=20)
    by_id = {r["id"]: r for r in rows}
    for row in page:
        assert {k: v for k, v in row.items() if k != "properties"} == \
            {k: v for k, v in by_id[row["id"]].items() if k != "properties"}
        assert row["properties"] == {k: v for k, v in props[row["id"]].items()}
    assert all(isinstance(r["elements"], list) and isinstance(r["valid"], bool) for r in page)


def test_reference_is_not_trivial(synthetic):
    """The synthetic data has what the comparisons are about: ties, NULLs, missing rows, both datasets."""
    project, rows, _, _, props = synthetic
    gaps = [p.get("band_gap", "missing") for p in props.values()]
    assert gaps.count(0.0) > 20 and gaps.count(None) > 10 and len(rows) - len(props) + gaps.count("missing") > 10
    assert project.count(StructureQuery(dataset="b")) == 140
    assert 0 < project.count(StructureQuery(**FILTERS["oxides, gap 2-3"])) < 60
