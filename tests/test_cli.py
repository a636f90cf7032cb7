"""The command line, run as a user runs it: exit codes, JSON shapes, messages, no tracebacks."""

from __future__ import annotations

import json

import pytest

from tests.clitools import run_cli as cli
from tests.conftest import BROKEN, GOOD, shared_file


@pytest.fixture
def proj(tmp_path):
    path = tmp_path / "p.sqlite"
    assert cli("new", path).returncode == 0
    return path


def test_help_lists_the_verbs():
    result = cli("--help")
    assert result.returncode == 0
    for verb in ("new", "import", "datasets", "export", "info"):
        assert verb in result.stdout


def test_import_datasets_info_export_round_trip(proj, tmp_path):
    imported = cli("import", proj, GOOD, "--dataset", "good", "--json")
    assert imported.returncode == 0
    assert json.loads(imported.stdout)["imported"] == 9
    assert "imported 9 structures" in imported.stderr

    datasets = json.loads(cli("datasets", proj, "--json").stdout)
    [good] = datasets["datasets"]
    assert good["name"] == "good" and good["count"] == 9
    assert good["properties"]["band_gap"] == {"count": 4, "min": 1.25, "max": 5.0}

    info = json.loads(cli("info", proj, "--json").stdout)
    assert info["counts"]["structures"] == 9 and info["schema_version"] >= 2

    out = tmp_path / "out"
    exported = cli("export", proj, "--dataset", "good", "--format", "poscar", "--out", out, "--json")
    assert exported.returncode == 0
    files = json.loads(exported.stdout)["files"]
    assert len(files) == 9 and all(f.endswith(".vasp") for f in files)
    again = cli("import", proj, out, "--dataset", "again")
    assert again.returncode == 0 and "imported 9" in again.stderr


def test_partial_import_exits_3_and_lists_reasons(proj):
    result = cli("import", proj, BROKEN, "--dataset", "b")
    assert result.returncode == 3
    assert "latin1.cif: not UTF-8" in result.stderr
    assert "unknown element 'Xq'" in result.stderr


def test_bad_file_exits_2_names_it_and_leaves_store_unchanged(proj):
    before = cli("info", proj, "--json").stdout
    result = cli("import", proj, BROKEN / "truncated.cif", "--dataset", "bad")
    assert result.returncode == 2 and "truncated.cif" in result.stderr
    assert json.loads(cli("info", proj, "--json").stdout)["counts"] == json.loads(before)["counts"]


@pytest.mark.parametrize("args, message", [
    (("datasets", "missing.sqlite"), "no such project file"),
    (("export", "{proj}", "--dataset", "nope", "--out", "x"), "no dataset named 'nope'"),
    (("export", "{proj}", "--dataset", "x", "--format", "pdb", "--out", "x"), "--format must be one of"),
    (("export", "{proj}", "--ids", "1,a", "--out", "x"), "--ids must be comma-separated integers"),
    (("new", "{proj}"), "already exists"),
    (("import", "{proj}"), ""),  # usage error: missing PATH and --dataset
])
def test_user_errors_exit_2_with_a_message(proj, tmp_path, args, message):
    result = cli(*[a.format(proj=proj) for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_export_zip_and_symmetrized_cif(proj, tmp_path):
    cli("import", proj, GOOD / "GaN_hex.vasp", "--dataset", "g")
    result = cli("export", proj, "--dataset", "g", "--format", "cif", "--symmetrize", "--out", tmp_path / "g.zip")
    assert result.returncode == 0
    import zipfile

    with zipfile.ZipFile(tmp_path / "g.zip") as archive:
        [name] = archive.namelist()
        assert name == "GaN_1.cif"
        assert "P6_3mc" in archive.read(name).decode()


def test_perov5_import_and_export_reread_equal(proj, tmp_path):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystal_studio.core.io import read_structures
    from crystal_studio.store.project import Project, StructureQuery

    assert cli("import", proj, shared_file("perov_5.csv.gz"), "--dataset", "perov").returncode == 0
    ids = ",".join(str(i) for i in range(1, 3788, 250))
    for fmt in ("cif", "poscar"):
        assert cli("export", proj, "--ids", ids, "--format", fmt, "--out", tmp_path / fmt).returncode == 0
    project = Project.open(proj)
    stored = {row["id"]: s for row, s in project.iter_structures(StructureQuery(ids=[int(i) for i in ids.split(",")]))}
    matcher = StructureMatcher(primitive_cell=False, scale=False)
    for fmt in ("cif", "poscar"):
        records, issues = read_structures([tmp_path / fmt])
        assert not issues and len(records) == len(stored)
        for rec in records:
            original = stored[int(rec.name.rsplit("_", 1)[1])]
            assert matcher.fit(rec.structure, original)
            assert max(abs(a - b) for a, b in zip(rec.structure.lattice.abc, original.lattice.abc, strict=True)) < 1e-4


def test_messages_print_brackets_as_they_are(proj, tmp_path):
    """File names and messages are not read as rich markup: '[x]' (or '[cluster]') stays in the text."""
    missing = tmp_path / "data[x].cif"
    result = cli("import", proj, missing, "--dataset", "d")
    assert result.returncode == 2 and f"skipped {missing}: no such file or folder" in result.stderr
