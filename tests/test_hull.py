"""Energy above a dataset's own convex hull and decompositions (core/hull.py, store/derived.py)."""

from __future__ import annotations

import csv

import pytest
from pymatgen.core import Lattice, Structure

from crystal_studio.core.errors import Cancelled, InvalidRecordError, NotFoundError
from crystal_studio.core.hull import dataset_hull
from crystal_studio.core.io import read_structures
from crystal_studio.core.progress import CancelToken
from crystal_studio.core.properties import UNITS
from crystal_studio.store.derived import compute_dataset_hull, decompositions, hull_source
from crystal_studio.store.project import Project
from crystal_studio.store.schema import SCHEMA_VERSION
from tests.conftest import shared_file

# Li-O by hand (x = atom fraction of O; Li and O at 0 eV/atom; Li2O at x=1/3, -2.0 eV/atom).
# The Li2O-O tie line is E(x) = -3 (1 - x): -1.5 at Li2O2 (x=1/2), -1.0 at LiO2 (x=2/3).
# Li2O2 at -1.4 is 0.1 above it and splits into 3/4 Li2O + 1/4 O2 (atom fractions: (1-x)/(2/3));
# LiO2 at -0.8 is 0.2 above it, 1/2 Li2O + 1/2 O2. A second Li2O at -1.9 is 0.1 above the first;
# a Li polymorph at +0.05 is 0.05 above the Li reference.
# Li-Na-O: Na2O at -1.5 stable; LiNaO (= 1/2 Li2O + 1/2 Na2O) hull -1.75, at -1.0 it is 0.75 above.
LI_O = [
    ("li2o", "Li2O", -2.0),
    ("li2o2", "Li2O2", -1.4),
    ("lio2", "LiO2", -0.8),
    ("li2o-b", "Li4O2", -1.9),
    ("li", "Li2", 0.05),
    ("na2o", "Na2O", -1.5),
    ("linao", "LiNaO", -1.0),
    ("nacl", "NaCl", -2.1),
]


def _by_id(results):
    return {r.structure_id: r for r in results}


def test_hand_made_li_o_hull():
    res = _by_id(dataset_hull(LI_O))
    for sid in ("li2o", "na2o", "nacl"):
        r = res[sid]
        assert r.e_above_hull == 0.0 and r.stable
        assert r.n_components == 1
        assert r.decomposition == ((r.formula, 1.0),)
        assert r.decomposition_ids == (sid,)
    assert res["li2o2"].e_above_hull == pytest.approx(0.1, abs=1e-9)
    assert dict(res["li2o2"].decomposition) == pytest.approx({"Li2O": 0.75, "O2": 0.25})
    assert res["li2o2"].decomposition_ids == ("li2o", None)  # O2 is the elemental reference
    assert res["li2o2"].n_components == 2
    assert res["lio2"].e_above_hull == pytest.approx(0.2, abs=1e-9)
    assert dict(res["lio2"].decomposition) == pytest.approx({"Li2O": 0.5, "O2": 0.5})
    assert res["li"].e_above_hull == pytest.approx(0.05)
    assert res["li"].decomposition == (("Li", 1.0),) and res["li"].decomposition_ids == (None,)
    # ternary: the binaries of its subsystems span its hull
    assert res["linao"].e_above_hull == pytest.approx(0.75, abs=1e-9)
    assert dict(res["linao"].decomposition) == pytest.approx({"Li2O": 0.5, "Na2O": 0.5})
    assert res["linao"].chemical_system == "Li-Na-O"
    for r in res.values():
        assert r.e_above_hull >= 0
        assert sum(f for _, f in r.decomposition) == pytest.approx(1.0)
        assert r.n_components == len(r.decomposition)


def test_duplicate_composition_lowest_is_on_the_hull():
    res = _by_id(dataset_hull(LI_O))
    dup = res["li2o-b"]  # Li4O2 reduces to Li2O
    assert dup.formula == "Li2O"
    assert dup.e_above_hull == pytest.approx(0.1)
    assert dup.decomposition == (("Li2O", 1.0),) and dup.decomposition_ids == ("li2o",)
    assert dup.n_components == 1
    # an exact tie: the first is the hull phase, the second sits on it at 0
    tie = _by_id(dataset_hull([("a", "Li2O", -2.0), ("b", "Li2O", -2.0)]))
    assert tie["a"].e_above_hull == 0.0 and tie["b"].e_above_hull == 0.0
    assert tie["b"].decomposition_ids == ("a",)


def test_results_keep_input_order_and_element_entries_below_zero():
    res = dataset_hull([("o", "O", -0.1), ("li2o", "Li2O", -2.0), ("li", "Li", 0.0)])
    assert [r.structure_id for r in res] == ["o", "li2o", "li"]
    # an element below its 0 eV/atom reference becomes the reference; the dataset's Li at 0 beats the
    # added reference on the tie
    assert res[0].stable and res[0].decomposition_ids == ("o",)
    assert res[2].stable and res[2].decomposition_ids == ("li",)
    assert dataset_hull([]) == []


def test_bad_input_is_a_user_error():
    with pytest.raises(InvalidRecordError, match="bad1.*not a composition"):
        dataset_hull([("bad1", "Qq2O", -1.0)])
    with pytest.raises(InvalidRecordError, match="bad2.*not a finite number"):
        dataset_hull([("bad2", "Li2O", float("nan"))])


def test_progress_and_cancel():
    events = []
    dataset_hull(LI_O, progress=events.append)
    assert events[0].step == 0 and events[-1].step == events[-1].total == 2  # Li-Na-O, Cl-Na
    token = CancelToken()

    def cancel_after_first(event):
        events.append(event)
        token.cancel()

    with pytest.raises(Cancelled):
        dataset_hull(LI_O, progress=cancel_after_first, cancel=token)


# ------------------------------------------------------------------------------------------ store


def _cif(formula: str) -> str:
    """A plausible-looking cell for any formula (only the composition matters here)."""
    from pymatgen.core import Composition

    species = [el for el, n in Composition(formula).items() for _ in range(int(n))]
    side = 3.0 * len(species)
    coords = [[i / len(species), 0.5 * (i % 2), 0.25 * (i % 3)] for i in range(len(species))]
    return Structure(Lattice.cubic(side), species, coords).to(fmt="cif")


@pytest.fixture
def li_o_project(project, tmp_path):
    path = tmp_path / "lio.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "cif", "formation_energy_per_atom", "e_above_hull"])
        for sid, formula, energy in LI_O:
            writer.writerow([sid, _cif(formula), energy, "0.5" if sid == "nacl" else ""])
        writer.writerow(["noenergy", _cif("LiCl"), "", ""])
    records, issues = read_structures([path])
    assert not issues
    project.add_records("lio", records)
    return project


def _ids(project):
    return {r["name"]: r["id"] for r in project.page(limit=100, with_properties=False)}


def _hull_rows(project):
    return project.db.execute("SELECT structure_id, name, value, source FROM properties "
                              "WHERE name IN ('e_above_hull', 'decomposition_components')").fetchall()


def test_store_round_trip_and_rerun_replaces(li_o_project):
    project = li_o_project
    summary = compute_dataset_hull(project, "lio")
    assert (summary.entries, summary.stable, summary.skipped, summary.kept_imported) == (8, 3, 1, 1)
    assert summary.chemical_systems == 5  # Li, Li-O, Na-O, Li-Na-O, Cl-Na
    assert summary.seconds >= 0
    ids = _ids(project)
    props = project.properties_of(list(ids.values()))
    assert props[ids["li2o2"]]["e_above_hull"] == pytest.approx(0.1)
    assert props[ids["li2o2"]]["decomposition_components"] == 2
    assert props[ids["li2o"]]["e_above_hull"] == 0.0
    assert props[ids["li2o"]]["decomposition_components"] == 1
    assert "e_above_hull" not in props.get(ids["noenergy"], {})
    sources = {(sid, name): src for sid, name, _, src in _hull_rows(project)}
    assert sources[(ids["li2o2"], "e_above_hull")] == hull_source("lio") == "dataset hull: lio"
    assert sources[(ids["nacl"], "e_above_hull")] == "import"  # imported value kept ...
    assert props[ids["nacl"]]["e_above_hull"] == 0.5
    stored = decompositions(project, "lio")
    assert stored[ids["nacl"]].e_above_hull == 0.0  # ... the dataset-hull one is in decompositions
    assert set(stored) == {ids[sid] for sid, _, _ in LI_O}
    d = stored[ids["li2o2"]]
    assert d.n_components == 2 and d.source == "dataset hull: lio"
    assert {p["formula"]: p["fraction"] for p in d.products} == pytest.approx({"Li2O": 0.75, "O2": 0.25})
    assert {p["formula"]: p["structure_id"] for p in d.products} == {"Li2O": ids["li2o"], "O2": None}
    assert UNITS["e_above_hull"] == "eV/atom" and UNITS["decomposition_components"] == ""

    # re-run after a change: values replaced, never duplicated
    before = len(_hull_rows(project))
    with project.transaction() as db:
        db["properties"].update((ids["li2o2"], "formation_energy_per_atom"), {"value": -1.45})
    compute_dataset_hull(project, "lio")
    assert len(_hull_rows(project)) == before
    assert project.db["decompositions"].count == len(LI_O)
    assert project.properties_of([ids["li2o2"]])[ids["li2o2"]]["e_above_hull"] == pytest.approx(0.05)

    # replacing the imported value on request
    summary = compute_dataset_hull(project, "lio", replace_imported=True)
    assert summary.kept_imported == 0
    assert project.properties_of([ids["nacl"]])[ids["nacl"]]["e_above_hull"] == 0.0
    assert len(_hull_rows(project)) == before


def test_store_cancel_writes_nothing_and_unknown_dataset(li_o_project):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        compute_dataset_hull(li_o_project, "lio", cancel=token)
    assert li_o_project.db["decompositions"].count == 0
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        compute_dataset_hull(li_o_project, "nope")


def test_v2_project_migrates_to_decompositions_table(tmp_path):
    old = Project(tmp_path / "v2.sqlite")
    old.migrate(target=2)
    old.close()
    project = Project.open(tmp_path / "v2.sqlite")
    assert project.schema_version == SCHEMA_VERSION >= 3
    assert "decompositions" in project.db.table_names()


# ------------------------------------------------------------------------------------------ real data


def test_mp_devset_stable_entries_are_on_the_dataset_hull(project):
    """MP's own hull is built from many more entries than these 200, so an entry on MP's hull must be on
    this dataset's hull too (the converse need not hold)."""
    records, _ = read_structures([shared_file("mp_devset_matsciml.csv.gz")])
    project.add_records("mp", records)
    summary = compute_dataset_hull(project, "mp")
    assert summary.entries == len(records) == 200
    props = project.properties_of(project.ids())
    on_mp_hull = [p for p in props.values() if p.get("is_stable") == 1.0]
    off_mp_hull = [p for p in props.values() if p.get("is_stable") == 0.0]
    assert len(on_mp_hull) >= 10 and len(off_mp_hull) >= 10
    stable_agree = sum(p["e_above_hull"] < 1e-6 for p in on_mp_hull) / len(on_mp_hull)
    assert stable_agree >= 0.9
    assert all(p["e_above_hull"] >= 0 for p in props.values())
    mean_on = sum(p["e_above_hull"] for p in on_mp_hull) / len(on_mp_hull)
    mean_off = sum(p["e_above_hull"] for p in off_mp_hull) / len(off_mp_hull)
    assert mean_off > mean_on
    assert summary.stable >= len(on_mp_hull) * stable_agree
