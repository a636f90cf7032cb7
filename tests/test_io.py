"""Crystal I/O: every reader, the writers' round trips, the fast CIF path, and the broken corpus."""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crystal_studio.core import structures as cs
from crystal_studio.core.io import (
    ImportOptions,
    fast_cif_structure,
    read_structure,
    read_structures,
    structure_text,
    write_structure_files,
)
from tests.conftest import BROKEN, GOOD, shared_file


def _by_name(records):
    return {r.name: r for r in records}


def test_reads_every_good_format():
    records, issues = read_structures([GOOD])
    assert issues == []
    names = _by_name(records)
    assert names["SrTiO3"].info.reduced_formula == "SrTiO3"
    assert names["SrTiO3"].info.spacegroup_number == 221
    assert names["SrTiO3"].info.nsites == 5  # symmetry operators expanded the O site
    assert names["GaN_hex"].info.spacegroup_symbol == "P6_3mc"
    assert {"two_blocks:NaCl", "two_blocks:CsCl"} <= names.keys()
    assert names["two_blocks:NaCl"].info.nsites == 8  # F m -3 m conventional cell
    assert names["frames:2"].properties == {"band_gap": 5.0, "formation_energy_per_atom": -2.1}


def test_csv_maps_column_names_and_keeps_text_columns():
    records, issues = read_structures([GOOD / "props.csv"])
    assert not issues
    first = _by_name(records)["m-1"]
    assert first.properties == {"band_gap": 1.5, "formation_energy_per_atom": -1.2}
    assert first.meta == {"note": "first"}
    assert "band_gap" not in _by_name(records)["m-2"].properties  # empty cell = missing, not an error


def test_gzip_and_zip_are_transparent(tmp_path):
    text = (GOOD / "SrTiO3.cif").read_bytes()
    (tmp_path / "a.cif.gz").write_bytes(gzip.compress(text))
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        archive.writestr("inner/SrTiO3.cif", text)
        archive.writestr("readme.txt", "not a crystal")
    records, issues = read_structures([tmp_path / "a.cif.gz", tmp_path / "b.zip"])
    assert not issues
    assert [r.info.reduced_formula for r in records] == ["SrTiO3", "SrTiO3"]


def test_pymatgen_json_reader(tmp_path):
    s = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (tmp_path / "mgo.json").write_text(
        json.dumps([{"structure": s.as_dict(), "properties": {"bandgap": 4.5}}]))
    [rec] = read_structures([tmp_path / "mgo.json"])[0]
    assert rec.properties == {"band_gap": 4.5}
    assert StructureMatcher().fit(rec.structure, s)


EXPECTED_REASONS = {
    "garbage.cif": "unparsable CIF",
    "truncated.cif": "no atom sites",
    "empty.cif": "file is empty",
    "nan_coordinates.cif": "NaN",
    "zero_volume.cif": "cell volume",
    "partial_occupancy.cif": "partial occupancy",
    "unknown_element.cif": "unknown element 'Xq'",
    "latin1.cif": "not UTF-8",
    "no_cif_column.csv": "no CIF column",
    "non_numeric_property.csv row 1": "column 'Band Gap': value 'abc' is not a number",
    "garbage.vasp": "unparsable POSCAR",
    "garbage.extxyz": "unparsable extended XYZ",
    "garbage.json": "unparsable JSON",
}


def test_broken_corpus_gives_one_clear_reason_per_record():
    records, issues = read_structures([BROKEN])
    for key, reason in EXPECTED_REASONS.items():
        matching = [i for i in issues if key in i.source]
        assert len(matching) == 1, (key, issues)
        assert reason in matching[0].reason, (key, matching[0])
        assert str(BROKEN) in matching[0].source  # names the file
    assert len(issues) == len(EXPECTED_REASONS)
    # Close atoms import, flagged invalid; the other CSV rows of the file with one bad row import.
    flagged = [r for r in records if not r.info.valid]
    assert [r.name for r in flagged] == ["close_atoms"]
    assert "0.080 Å apart" in flagged[0].info.flags[0]
    assert sorted(r.name for r in records if r.name.startswith("m-")) == ["m-2", "m-3"]


def test_options_reject_close_atoms_and_order_partial_occupancy():
    opts = ImportOptions(reject_close_atoms=True, ordered_approximation=True)
    records, issues = read_structures([BROKEN / "close_atoms.cif", BROKEN / "partial_occupancy.cif"], opts)
    assert [i.reason for i in issues] == ["atoms 0.080 Å apart (< 0.5 Å)"]
    assert records[0].info.reduced_formula in ("FeNi", "CoNi")


def test_zip_entries_escaping_the_folder_are_refused(tmp_path):
    text = (GOOD / "SrTiO3.cif").read_text()
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../../evil.cif", text)
        archive.writestr("/abs.cif", text)
        archive.writestr("ok.cif", text)
    records, issues = read_structures([tmp_path / "evil.zip"])
    assert len(records) == 1
    assert len(issues) == 2 and all("escapes the archive folder" in i.reason for i in issues)


def test_size_limit_applies_to_files_and_decompressed_content(tmp_path):
    big = "# padding\n" * 2000 + (GOOD / "SrTiO3.cif").read_text()
    (tmp_path / "big.cif").write_text(big)
    (tmp_path / "big2.cif.gz").write_bytes(gzip.compress(big.encode()))
    opts = ImportOptions(max_file_bytes=10_000)
    records, issues = read_structures([tmp_path / "big.cif", tmp_path / "big2.cif.gz"], opts)
    assert not records
    assert "over the 0 MiB limit" in issues[0].reason
    assert "decompressed content" in issues[1].reason


def test_unknown_explicit_file_and_missing_path(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _, issues = read_structures([tmp_path / "notes.txt", tmp_path / "missing.cif"])
    assert "unrecognised file type" in issues[0].reason
    assert "no such file" in issues[1].reason


def _assert_same(a: Structure, b: Structure):
    assert StructureMatcher(primitive_cell=False, scale=False).fit(a, b)
    assert np.allclose(a.lattice.abc, b.lattice.abc, atol=1e-4)
    assert np.allclose(a.lattice.angles, b.lattice.angles, atol=1e-4)
    assert [str(x) for x in a.species] == [str(x) for x in b.species]


@pytest.mark.parametrize("fmt", ["cif", "poscar", "extxyz"])
def test_write_then_read_round_trip(tmp_path, fmt):
    originals = [r.structure for r in read_structures([GOOD])[0]]
    items = [(f"s{i}", s, {"band_gap": 1.0}) for i, s in enumerate(originals)]
    paths = write_structure_files(items, tmp_path, fmt)
    assert len(paths) == len(originals) and not list(tmp_path.glob("*.part"))
    for path, original in zip(paths, originals, strict=True):
        _assert_same(read_structure(path), original)


def test_symmetrized_cif_has_a_real_space_group():
    gan = read_structure(GOOD / "GaN_hex.vasp")
    text = structure_text(gan, "cif", symmetrize=True)
    assert "P6_3mc" in text and "_symmetry_Int_Tables_number   186" in text
    records, _ = read_structures_from_text(text, "gan.cif")
    assert StructureMatcher().fit(records[0].structure, gan)


def read_structures_from_text(text, name, tmp=None):
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    (folder / name).write_text(text)
    return read_structures([folder / name])


def test_structure_json_round_trip_keeps_oxidation_states_and_site_properties():
    s = Structure(Lattice.cubic(4), ["Fe2+", "O2-"], [[0, 0, 0], [0.5, 0.5, 0.5]], site_properties={"magmom": [4.0, 0.0]})
    back = cs.from_json(cs.to_json(s))
    assert back == s and back.site_properties["magmom"] == [4.0, 0.0]
    assert cs.from_json(s.to_json()) == s  # pymatgen's own JSON is accepted too


def test_spacegroup_matches_pymatgen_analyzer():
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    for rec in read_structures([GOOD])[0]:
        sga = SpacegroupAnalyzer(rec.structure)
        assert rec.info.spacegroup_number == sga.get_space_group_number()
        assert rec.info.spacegroup_symbol == sga.get_space_group_symbol()


def test_fast_cif_path_identical_to_pymatgen_on_real_data():
    """The gemmi fast path must give exactly what pymatgen's CifParser gives."""
    import gemmi
    import pandas as pd

    frame = pd.read_csv(shared_file("mp_mtcgcnn_33k.csv.gz"), nrows=1500)
    fast_count = 0
    for cif in frame["cif"]:
        fast = fast_cif_structure(gemmi.cif.read_string(cif).sole_block())
        if fast is None:
            continue
        fast_count += 1
        ref = Structure.from_str(cif, fmt="cif")
        assert [str(x) for x in fast.species] == [str(x) for x in ref.species]
        assert np.array_equal(fast.frac_coords, ref.frac_coords)
        assert np.allclose(fast.lattice.matrix, ref.lattice.matrix, rtol=0, atol=1e-12)
    assert fast_count > 1400


def test_derived_columns_match_pymatgen_on_real_data():
    import pandas as pd
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    frame = pd.read_csv(shared_file("mp_devset_matsciml.csv.gz"))
    text = frame.to_csv(index=False)
    records, issues = read_structures_from_text(text, "dev.csv")
    assert not issues and len(records) == len(frame)
    for rec in records[:60]:
        s = rec.structure
        assert rec.info.spacegroup_number == SpacegroupAnalyzer(s).get_space_group_number()
        assert rec.info.density == pytest.approx(float(s.density), rel=1e-6)
        assert rec.info.reduced_formula == s.composition.reduced_formula


def test_nothing_raises_on_random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    for i, suffix in enumerate([".cif", ".vasp", ".extxyz", ".json", ".csv", ".zip", ".cif.gz"]):
        (tmp_path / f"junk{i}{suffix}").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    records, issues = read_structures([tmp_path])
    assert not records and len(issues) == 7
    assert all(str(tmp_path) in i.source for i in issues)


def test_csv_with_bad_cif_cells_reports_rows(tmp_path):
    buf = io.StringIO()
    buf.write('id,cif,band_gap\n1,"garbage",1\n2,,2\n')
    (tmp_path / "rows.csv").write_text(buf.getvalue())
    _, issues = read_structures([tmp_path / "rows.csv"])
    assert [i.source.split("rows.csv ")[1] for i in issues] == ["row 1 (id 1)", "row 2 (id 2)"]
