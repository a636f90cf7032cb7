"""Importing into a project: reports, atomicity, cancellation, parallel parsing, the built-in project."""

from __future__ import annotations

import pytest

from crystal_studio.core.errors import Cancelled
from crystal_studio.core.io import ImportOptions, iter_raw_records
from crystal_studio.core.progress import CancelToken
from crystal_studio.store import importer
from crystal_studio.store.importer import import_paths, parse_records
from crystal_studio.store.project import StructureQuery
from tests.conftest import BROKEN, GOOD, shared_file


def test_import_report_and_exit_codes(project):
    ok = import_paths(project, [GOOD], "good")
    assert (ok.imported, ok.skipped, ok.exit_code) == (9, 0, 0)
    partial = import_paths(project, [BROKEN], "broken")
    assert partial.exit_code == 3
    assert partial.imported == 3 and partial.flagged == 1  # close atoms + two good CSV rows
    nothing = import_paths(project, [BROKEN / "garbage.cif"], "empty")
    assert nothing.exit_code == 2 and nothing.imported == 0
    assert "empty" not in project.dataset_names()  # no dataset is created for nothing


def test_flagged_structures_are_stored_invalid(project):
    import_paths(project, [BROKEN / "close_atoms.cif"], "x")
    [row] = project.page(StructureQuery(dataset="x"))
    assert row["valid"] is False and "apart" in row["flags"][0]
    assert project.count(StructureQuery(dataset="x", valid_only=True)) == 0


def test_cancel_leaves_the_project_unchanged(project):
    import_paths(project, [GOOD], "good")
    before = (project.count(), project.dataset_names())
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event)
        if event.message.startswith("writing"):
            token.cancel()  # cancel at the last moment: inside the write transaction

    with pytest.raises(Cancelled):
        import_paths(project, [GOOD], "second", progress=progress, cancel=token)
    assert (project.count(), project.dataset_names()) == before
    assert seen


def test_parallel_parsing_gives_the_same_records_in_order(monkeypatch):
    raws = [r for r in iter_raw_records([GOOD]) if not isinstance(r, str)] * 3
    serial = parse_records(raws, ImportOptions(), workers=1)
    monkeypatch.setattr(importer, "PARALLEL_THRESHOLD", 1)
    monkeypatch.setattr(importer, "CHUNK_SIZE", 4)
    parallel = parse_records(raws, ImportOptions(), workers=2)
    assert [r.structure_json for r in serial] == [r.structure_json for r in parallel]
    assert [r.source for r in serial] == [r.source for r in parallel]


def test_perov5_imports_every_row_with_properties(project):
    report = import_paths(project, [shared_file("perov_5.csv.gz")], "perov")
    assert report.exit_code == 0 and report.imported == 3787
    [summary] = project.datasets()
    assert set(summary.properties) == {"heat_of_formation_all", "heat_of_formation_ref", "band_gap_direct",
                                       "band_gap_indirect"}
    assert all(p["count"] == 3787 for p in summary.properties.values())
    oxides = project.count(StructureQuery(dataset="perov", elements_all=["O"],
                                          property_ranges={"band_gap_indirect": (2.0, 3.0)}))
    assert 0 < oxides < 3787


def test_builtin_project_is_created_once_with_metadata(tmp_path, monkeypatch):
    from crystal_studio.store import builtin

    if not builtin.BUILTIN_DATA.exists():
        pytest.skip("built-in dataset not generated yet")
    monkeypatch.setenv("CRYSTAL_STUDIO_HOME", str(tmp_path / "home"))
    project = builtin.ensure_builtin_project()
    [summary] = project.datasets()
    assert summary.name == "builtin" and summary.count >= 2000
    assert "CHGNet" in summary.metadata["label_source"]
    assert {"formation_energy_per_atom", "bulk_modulus", "energy_per_atom", "volume_per_atom", "density",
            "tolerance_factor", "magnetic_moment"} <= set(summary.properties)
    again = builtin.ensure_builtin_project()
    assert again.count() == summary.count


def test_text_in_a_canonical_numeric_column_rejects_the_row(project, tmp_path):
    from pymatgen.core import Lattice, Structure

    cif = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")
    path = tmp_path / "one.csv"
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "cif", "band_gap", "note"])
        writer.writerow(["a", cif, "not-a-number", "free text stays metadata"])
    report = import_paths(project, [path], "bad")
    assert report.exit_code == 2 and report.imported == 0
    [issue] = report.issues
    assert "row 1" in issue.source and "'band_gap'" in issue.reason and "not-a-number" in issue.reason
