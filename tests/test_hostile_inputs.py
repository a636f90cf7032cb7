"""Regression tests for the importer items of issue 20 (2, 6, 7, 10, 17, 18): hostile input files,
built here in ``tmp_path`` (large ones from repeated bytes, cheaply), must be refused or imported
quickly, with the reason naming the file, and never with a traceback or an aborted import."""

from __future__ import annotations

import functools
import gzip
import json
import os
import stat
import zipfile

import pytest
from pymatgen.core import Lattice, Structure

from crystal_studio.core import structures as cs
from crystal_studio.core.io import ImportOptions, read_structures
from crystal_studio.design.spec import SpecError, load_spec
from tests.clitools import run_cli
from tests.conftest import GOOD

MiB = 2**20
CIF = (GOOD / "SrTiO3.cif").read_text()


cli = functools.partial(run_cli, timeout=60)


@pytest.fixture
def project_file(tmp_path):
    path = tmp_path / "p.sqlite"
    assert cli("new", path).returncode == 0
    return path


def padded_cif(size: int) -> bytes:
    """A valid CIF of about ``size`` bytes: SrTiO3 and a long comment line."""
    return (CIF + "#" + "x" * max(size - len(CIF) - 2, 0) + "\n").encode()


def write_zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def reasons(issues) -> dict[str, str]:
    return {issue.source: issue.reason for issue in issues}


# ------------------------------------------------------------------ item 2: memory of a zip archive


def test_zip_entries_are_read_up_to_a_total_after_decompression(tmp_path):
    archive = write_zip(tmp_path / "bomb.zip", {f"s{i}.cif": padded_cif(MiB) for i in range(6)})
    assert archive.stat().st_size < 100_000  # small archive, 6 MiB of content
    options = ImportOptions(max_file_bytes=2 * MiB, max_archive_bytes=3 * MiB + 1000)
    records, issues = read_structures([archive], options)
    assert [r.source for r in records] == [f"{archive}:s{i}.cif" for i in range(3)]
    assert reasons(issues) == {f"{archive}:s{i}.cif": "entry is 1.0 MiB, over the 3 MiB limit of decompressed "
                                                      "content per archive" for i in range(3, 6)}


def test_gzipped_zip_entries_count_their_decompressed_size(tmp_path):
    archive = write_zip(tmp_path / "gz.zip", {"big.cif.gz": gzip.compress(padded_cif(2 * MiB))})
    _, issues = read_structures([archive], ImportOptions(max_file_bytes=4 * MiB, max_archive_bytes=MiB))
    assert reasons(issues) == {f"{archive}:big.cif.gz": "decompressed content is over the 1 MiB limit of "
                                                         "decompressed content per archive"}


def test_cli_archive_limit_is_an_option_and_gives_exit_3(tmp_path, project_file):
    archive = write_zip(tmp_path / "bomb.zip", {f"s{i}.cif": padded_cif(MiB) for i in range(4)})
    result = cli("import", project_file, archive, "-d", "d", "--max-archive-mb", "2.5", "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["imported"] == 2
    assert f"{archive}:s3.cif: entry is 1.0 MiB, over the 2 MiB limit of decompressed content per archive" \
        in result.stderr.replace("\n", "")


# ------------------------------------------------------------------ item 6: atom count, per-record failures


def p1_cif(atoms: int, edge: float = 100.0) -> str:
    """A P1 CIF with ``atoms`` Na atoms on a grid in a cubic cell of ``edge`` Å."""
    side = round(atoms ** (1 / 3)) + 1
    rows = [f"Na Na{i} {i % side / side:.6f} {i // side % side / side:.6f} {i // side**2 / side:.6f} 1"
            for i in range(atoms)]
    return (f"data_big\n_symmetry_space_group_name_H-M 'P 1'\n_cell_length_a {edge}\n_cell_length_b {edge}\n"
            f"_cell_length_c {edge}\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
            "loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\nloop_\n_atom_site_type_symbol\n_atom_site_label\n"
            "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n" + "\n".join(rows) + "\n")


def test_a_100k_atom_cif_is_refused_at_once(tmp_path, project_file):
    path = tmp_path / "big.cif"
    path.write_text(p1_cif(100_000))
    result = cli("import", project_file, path, GOOD / "SrTiO3.cif", "-d", "d", "--json", timeout=60)
    assert result.returncode == 3
    assert json.loads(result.stdout)["imported"] == 1
    assert (f"{path}: CIF block lists 100000 atoms, over the limit of 1000 per structure (the max sites "
            "import option)") in result.stderr.replace("\n", "")


def test_max_sites_counts_atoms_after_symmetry_expansion(tmp_path):
    # SrTiO3 lists 3 sites, 5 atoms after the space group's operations
    assert reasons(read_structures([GOOD / "SrTiO3.cif"], ImportOptions(max_sites=4))[1]) == {
        str(GOOD / "SrTiO3.cif"): "structure has 5 atoms, over the limit of 4 per structure (the max sites "
                                  "import option)"}
    records, issues = read_structures([GOOD / "SrTiO3.cif"], ImportOptions(max_sites=5))
    assert len(records) == 1 and not issues


def test_cli_max_sites_option(tmp_path, project_file):
    path = tmp_path / "big.cif"
    path.write_text(p1_cif(1500, edge=40.0))
    assert cli("import", project_file, path, "-d", "d").returncode == 2
    assert cli("import", project_file, path, "-d", "d", "--max-sites", "1500").returncode == 0


def test_closest_atoms_come_from_a_neighbour_list():
    # a skewed cell whose shortest lattice vector is b - a (1.118 Å), not any of a, b, c (≥ 9.55 Å)
    skewed = Structure(Lattice([[10, 0, 0], [9.5, 1, 0], [0, 0, 10]]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert cs.min_periodic_distance(skewed) == pytest.approx(1.118034, abs=1e-6)
    assert cs.min_periodic_distance(Structure(Lattice.cubic(4), ["Na"], [[0, 0, 0]])) == pytest.approx(4.0)
    # 20,000 atoms: a dense distance matrix would be 3.2 GB
    side = 28
    grid = [[i / side, j / side, k / side] for i in range(side) for j in range(side) for k in range(side)][:20_000]
    big = Structure(Lattice.cubic(side * 2.5), ["Na"] * len(grid), grid)
    assert cs.min_periodic_distance(big) == pytest.approx(2.5)


def cell_cif(a: float, b: float, c: float) -> str:
    """A CsCl-like two-atom CIF in an a × b × c Å orthorhombic cell."""
    return (f"data_cell\n_cell_length_a {a}\n_cell_length_b {b}\n_cell_length_c {c}\n_cell_angle_alpha 90\n"
            "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
            "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
            "Cs1 Cs 0 0 0\nCl1 Cl 0.5 0.5 0.5\n")


def test_needle_cells_are_rejected_and_sheets_measured_pairwise(tmp_path):
    # found by tests/test_fuzz.py: a 1e-7 Å lattice vector ran the neighbour list out of memory
    (tmp_path / "needle.cif").write_text(cell_cif(1e-7, 4, 4))
    (tmp_path / "sheet.cif").write_text(cell_cif(0.6, 1e4, 1e4))  # took 57 s with the neighbour list
    records, issues = read_structures([tmp_path / "needle.cif", tmp_path / "sheet.cif"])
    assert [i.reason for i in issues] == ["shortest lattice vector is 1e-07 Å (after reduction), under the 0.1 Å "
                                          "of any crystal cell: every atom would sit on its own periodic image"]
    assert len(records) == 1 and records[0].info.min_distance == pytest.approx(0.6)  # each atom's own image


def test_one_record_failing_unexpectedly_never_aborts_the_import(monkeypatch):
    real = cs.spacegroup

    def failing_for_gan(structure):
        if structure.composition.reduced_formula == "GaN":
            raise RuntimeError("spglib exploded")
        return real(structure)

    monkeypatch.setattr(cs, "spacegroup", failing_for_gan)
    records, issues = read_structures([GOOD / "SrTiO3.cif", GOOD / "GaN_hex.vasp"])
    assert [r.name for r in records] == ["SrTiO3"]
    assert reasons(issues) == {str(GOOD / "GaN_hex.vasp"): "cannot check the structure (RuntimeError: spglib exploded)"}


# ------------------------------------------------------------------ item 7: tiny files that hang


def test_extxyz_declaring_a_trillion_atoms_is_refused_at_once(tmp_path, project_file):
    path = tmp_path / "huge.extxyz"
    path.write_text('999999999999\nLattice="4 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3 pbc="T T T"\nNa 0 0 0\n')
    result = cli("import", project_file, path, "-d", "d", timeout=60)
    assert result.returncode == 2
    assert (f"{path}: unparsable extended XYZ: frame 1 (line 1) declares 999999999999 atoms, over the limit of 1000 per "
            "structure") in result.stderr.replace("\n", "")


def test_extxyz_declaring_more_atoms_than_lines_is_refused(tmp_path):
    path = tmp_path / "short.extxyz"
    frame = 'Lattice="4 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3 pbc="T T T"\nNa 0 0 0\n'
    path.write_text(f"1\n{frame}500\n{frame}")
    assert reasons(read_structures([path])[1]) == {
        str(path): "unparsable extended XYZ: frame 2 (line 4) declares 500 atoms but the file has only 1 more line"}


def test_cif_with_a_million_symmetry_operations_is_refused_at_once(tmp_path, project_file):
    path = tmp_path / "ops.cif"
    head, tail = CIF.split(" 'x, y, z'\n", 1)
    path.write_text(head + " 'x, y, z'\n" * 1_000_000 + tail)
    result = cli("import", project_file, path, "-d", "d", timeout=60)
    assert result.returncode == 2
    assert (f"{path}: 1000007 symmetry operations in _symmetry_equiv_pos_as_xyz; no space group has more "
            "than 384") in result.stderr.replace("\n", "")


def test_csv_with_a_million_columns_is_refused_at_once(tmp_path, project_file):
    path = tmp_path / "wide.csv"
    path.write_text("cif," + ",".join(f"c{i}" for i in range(1_000_000)) + "\nx" + ",1" * 1_000_000 + "\n")
    result = cli("import", project_file, path, "-d", "d", timeout=60)
    assert result.returncode == 2
    assert f"{path}: CSV header has 1000001 columns, over the limit of 10000" in result.stderr.replace("\n", "")


def test_billion_laughs_and_deep_yaml_specs_are_refused_quickly(tmp_path):
    # YAML aliases share one object instead of copying it, and validation never walks nested lists
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("\n".join(lines) + "\nname: *i\nobjectives: [*i]\nconstraints: {allowed_elements: *i}\n")
    with pytest.raises(SpecError, match="name: expected a string"):
        load_spec(laughs)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(deep)


# ------------------------------------------------------------------ item 10: file names that are not UTF-8


@pytest.fixture
def latin1_named(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    try:
        good = folder / os.fsdecode(b"caf\xe9.cif")
        good.write_text(CIF)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    (folder / os.fsdecode(b"bad\xff.cif")).write_text("data_x\n_cell_length_a 1\n")
    return folder


def test_non_utf8_file_names_import_or_are_reported_per_file(latin1_named, project_file):
    result = cli("import", project_file, latin1_named, "-d", "d", "--json")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert report["imported"] == 1
    assert [i["source"] for i in report["issues"]] == [f"{latin1_named}/bad\\xff.cif"]
    assert f"skipped {latin1_named}/bad\\xff.cif: " in result.stderr
    direct = cli("import", project_file, latin1_named / os.fsdecode(b"caf\xe9.cif"), "-d", "e")
    assert direct.returncode == 0, direct.stderr
    listing = cli("datasets", project_file, "--json")
    assert listing.returncode == 0


def test_zip_with_a_utf8_flagged_name_that_is_not_utf8(tmp_path):
    archive = write_zip(tmp_path / "names.zip", {"caf\u00e9.cif": CIF.encode()})
    archive.write_bytes(archive.read_bytes().replace("caf\u00e9".encode(), b"caf\xe9\xe9"))
    _, issues = read_structures([archive])
    assert [i.source for i in issues] == [str(archive)]
    assert issues[0].reason.startswith("not a readable zip archive (")


# ------------------------------------------------------------------ item 17: text in a numeric property


@pytest.mark.parametrize("fmt", ["csv", "extxyz", "json"])
def test_text_in_a_canonical_numeric_property_rejects_the_record(tmp_path, fmt):
    structure = Structure.from_str(CIF, fmt="cif")
    if fmt == "csv":
        path = tmp_path / "t.csv"
        path.write_text("id,band_gap,cif\n" + f'a,not-a-number,"{CIF}"\n')
        source = f"{path} row 1 (id a)"
    elif fmt == "extxyz":
        from ase.io import write
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info["band_gap"] = "not-a-number"
        path = tmp_path / "t.extxyz"
        write(path, atoms, format="extxyz")
        source = str(path)
    else:
        path = tmp_path / "t.json"
        path.write_text(json.dumps({"structure": structure.as_dict(), "properties": {"band_gap": "not-a-number"}}))
        source = str(path)
    records, issues = read_structures([path])
    assert not records
    assert reasons(issues) == {source: "column 'band_gap': value 'not-a-number' is not a number"}


# ------------------------------------------------------------------ item 18: inf/nan cells, nested zips, links


def test_non_finite_property_is_left_out_with_a_note(tmp_path, project_file):
    path = tmp_path / "inf.csv"
    path.write_text("id,band_gap,density_ml,cif\n" + f'a,inf,nan,"{CIF}"\n' + f'b,1.5,2,"{CIF}"\n')
    records, issues = read_structures([path])
    assert not issues
    assert [r.properties for r in records] == [{}, {"band_gap": 1.5, "density_ml": 2.0}]
    assert records[0].notes == ["column 'band_gap': value 'inf' is not a finite number; left out",
                                "column 'density_ml': value 'nan' is not a finite number; left out"]
    result = cli("import", project_file, path, "-d", "d", "--json")
    assert result.returncode == 0
    assert f"note: {path} row 1 (id a): column 'band_gap': value 'inf' is not a finite number; left out" \
        in result.stderr.replace("\n", "")
    assert len(json.loads(result.stdout)["notes"]) == 2


def test_nested_zip_and_symlink_entries_are_reported(tmp_path):
    inner = write_zip(tmp_path / "inner.zip", {"a.cif": CIF.encode()})
    archive = tmp_path / "outer.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("ok.cif", CIF)
        out.write(inner, "inner.zip")
        link = zipfile.ZipInfo("link.cif")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        out.writestr(link, "ok.cif")
        out.writestr("README.txt", "not a crystal: ignored")
    records, issues = read_structures([archive])
    assert [r.source for r in records] == [f"{archive}:ok.cif"]
    assert reasons(issues) == {
        f"{archive}:inner.zip": "nested zip archives are not read (extract it and import it on its own)",
        f"{archive}:link.cif": "symbolic link entry, not read"}
