"""Regression tests for the reliability defects of issue 20, found by hostile testing: each hostile
input is built here in ``tmp_path`` and must give a clear message naming the file or field, the
right exit code (2 nothing done, 3 partial) and no traceback."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pymatgen.core import Structure

from crystal_studio.core.errors import CrystalStudioError, OutputExistsError, ProjectError
from crystal_studio.core.io import ImportOptions, read_structures, write_structure_files
from crystal_studio.core.properties import UNITS
from crystal_studio.design.spec import SpecError, load_spec
from crystal_studio.store.project import Project
from tests.clitools import run_cli
from tests.conftest import GOOD

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")


cli = functools.partial(run_cli, timeout=120)


# ------------------------------------------------------------------ item 1: non-regular input files


@posix_only
def test_fifo_and_devices_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.cif"
    os.mkfifo(fifo)
    paths = [fifo] + [Path(p) for p in ("/dev/zero", "/dev/null") if Path(p).exists()]
    records, issues = read_structures(paths)
    assert not records
    assert [i.source for i in issues] == [str(p) for p in paths]
    assert "not a regular file (a FIFO)" in issues[0].reason
    assert all("not a regular file (a character device)" in i.reason for i in issues[1:])


@posix_only
def test_fifo_spec_is_refused(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match=r"spec\.json: not a regular file \(a FIFO\)"):
        load_spec(fifo)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_stated_size_of_zero_does_not_bypass_the_limit():
    # /proc files state size 0 but have content: reading stops at the limit + 1 byte
    _, issues = read_structures(["/proc/self/status"], ImportOptions(max_file_bytes=16))
    assert issues[0].reason == "file is over the 0 MiB limit"


@posix_only
def test_cli_import_of_a_fifo_exits_2_at_once(tmp_path):
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    fifo = tmp_path / "pipe.cif"
    os.mkfifo(fifo)
    result = cli("import", project, fifo, "--dataset", "d", timeout=60)
    assert result.returncode == 2
    assert f"{fifo}: not a regular file (a FIFO)" in result.stderr
    partial = cli("import", project, fifo, GOOD / "SrTiO3.cif", "--dataset", "d", "--json", timeout=60)
    assert partial.returncode == 3
    assert json.loads(partial.stdout)["imported"] == 1


# ------------------------------------------------------------------ item 12: absurd lattices

P1_CIF = """data_{name}
_symmetry_space_group_name_H-M 'P 1'
_cell_length_a {a}
_cell_length_b {a}
_cell_length_c {a}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
{sites}
"""


def p1_cif(a: float = 4.0, sites: str = "Sr1 Sr 0 0 0\nO1 O 0.5 0.5 0.5", name: str = "x") -> str:
    return P1_CIF.format(name=name, a=a, sites=sites)


@pytest.mark.parametrize("edge", ["1e30", "1e200"])
def test_absurd_lattices_are_rejected_in_every_format(tmp_path, edge):
    (tmp_path / "huge.cif").write_text(p1_cif(edge))
    symmetric = (GOOD / "SrTiO3.cif").read_text().replace("3.905", edge)
    (tmp_path / "huge_sym.cif").write_text(symmetric)
    (tmp_path / "huge.vasp").write_text(f"huge\n{edge}\n1 0 0\n0 1 0\n0 0 1\nSr O\n1 1\ndirect\n0 0 0\n.5 .5 .5\n")
    lattice = [[float(edge), 0, 0], [0, 4, 0], [0, 0, 4]]
    (tmp_path / "huge.json").write_text(json.dumps(
        Structure(lattice, ["Sr", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()))
    (tmp_path / "huge.extxyz").write_text(
        f'2\nLattice="{edge} 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3 pbc="T T T"\nSr 0 0 0\nO 2 2 2\n')
    records, issues = read_structures([tmp_path])
    assert not records
    assert len(issues) == 5
    for issue in issues:
        assert "over the 10000 Å limit of a crystal cell" in issue.reason, issue


def test_a_large_but_sane_cell_still_imports(tmp_path):
    (tmp_path / "slab.cif").write_text(p1_cif(900))
    records, issues = read_structures([tmp_path / "slab.cif"])
    assert not issues and records[0].info.volume == pytest.approx(900**3)


# ------------------------------------------------------------------ item 9: unknown element symbols


@pytest.mark.parametrize("symbol", ["Uue", "Uuo"])
@pytest.mark.parametrize("column", ["type_symbol", "label"])
def test_unknown_cif_symbols_are_rejected_not_read_as_uranium(tmp_path, symbol, column):
    cif = p1_cif(sites=f"{symbol}1 {symbol} 0 0 0\nO1 O 0.5 0.5 0.5")
    if column == "label":
        cif = cif.replace("_atom_site_type_symbol\n", "").replace(f" {symbol} 0 0 0", " 0 0 0").replace(" O 0.5", " 0.5")
    (tmp_path / "x.cif").write_text(cif)
    records, issues = read_structures([tmp_path / "x.cif"])
    assert not records
    expected = f"'{symbol}' in _atom_site_type_symbol" if column == "type_symbol" else f"'{symbol}1' in _atom_site_label"
    assert issues[0].reason == f"unknown element {expected}"


def test_hydrogen_isotopes_are_rejected_with_the_reason_in_every_format(tmp_path):
    (tmp_path / "d.cif").write_text(p1_cif(sites="D1 D 0 0 0\nO1 O 0.5 0.5 0.5"))
    (tmp_path / "t.cif").write_text(p1_cif(sites="T1 0 0 0\nO1 0.5 0.5 0.5").replace("_atom_site_type_symbol\n", ""))
    (tmp_path / "d.vasp").write_text("D2O\n1\n4 0 0\n0 4 0\n0 0 4\nD O\n1 1\ndirect\n0 0 0\n.5 .5 .5\n")
    doc = Structure([[4, 0, 0], [0, 4, 0], [0, 0, 4]], ["H", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    doc["sites"][0]["species"][0]["element"] = "T"
    (tmp_path / "t.json").write_text(json.dumps(doc))
    records, issues = read_structures([tmp_path])
    assert not records
    reasons = {Path(i.source).name: i.reason for i in issues}
    assert reasons == {
        "d.cif": "hydrogen isotope 'D' (deuterium) is not supported; write it as H to import the structure with hydrogen",
        "d.vasp": "hydrogen isotope 'D' (deuterium) is not supported; write it as H to import the structure with hydrogen",
        "t.cif": "hydrogen isotope 'T' (tritium) is not supported; write it as H to import the structure with hydrogen",
        "t.json": "hydrogen isotope 'T' (tritium) is not supported; write it as H to import the structure with hydrogen",
    }


def test_element_symbols_that_are_not_guesses_still_import(tmp_path):
    # charges, numbered labels, upper-case labels and water oxygen labels are ordinary CIF practice
    (tmp_path / "a.cif").write_text(p1_cif(sites="Sr1 Sr2+ 0 0 0\nO1 O2- 0.5 0.5 0.5"))
    (tmp_path / "b.cif").write_text(p1_cif(sites="SR1 0 0 0\nOW1 0.5 0.5 0.5").replace("_atom_site_type_symbol\n", ""))
    records, issues = read_structures([tmp_path])
    assert not issues
    assert [r.info.reduced_formula for r in records] == ["SrO", "SrO"]


# ------------------------------------------------------------------ item 5: read-only verbs on non-projects


def test_read_only_verbs_leave_files_that_are_not_projects_untouched(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    before = {p: p.read_bytes() for p in (empty, other)}
    for path, what in ((empty, "an empty file"), (other, "an SQLite database without the project tables")):
        for verb in ("info", "datasets"):
            result = cli(verb, path)
            assert result.returncode == 2
            assert f"{path}: not a Crystal Studio project ({what}); nothing was changed" in result.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite", "other.db"]  # no -wal, -shm
    with sqlite3.connect(other) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_project_open_refuses_a_database_with_a_version_but_no_tables(tmp_path):
    path = tmp_path / "versioned.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 3")
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ProjectError, match="not a Crystal Studio project"):
        Project.open(path)
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["t"]
    conn.close()


# ------------------------------------------------------------------ item 4: export temp files and overwriting


@pytest.fixture
def srtio3():
    return read_structures([GOOD / "SrTiO3.cif"])[0][0].structure


@posix_only
def test_export_never_follows_a_planted_symlink(tmp_path, srtio3):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious")
    (out / "s.cif.part").symlink_to(victim)  # the old fixed temporary name
    (out / "t.cif").symlink_to(victim)  # an existing output that is a link
    with pytest.raises(OutputExistsError, match=r"t\.cif: already exists; nothing was written"):
        write_structure_files([("s", srtio3, {}), ("t", srtio3, {})], out, "cif")
    assert not (out / "s.cif").exists()
    written = write_structure_files([("s", srtio3, {}), ("t", srtio3, {})], out, "cif", overwrite=True)
    assert victim.read_text() == "precious"
    assert all(p.is_file() and not p.is_symlink() for p in written)
    assert sorted(p.name for p in out.iterdir()) == ["s.cif", "s.cif.part", "t.cif"]


def test_export_refuses_two_outputs_with_one_name(tmp_path, srtio3):
    with pytest.raises(CrystalStudioError, match="two outputs would both be named a.cif"):
        write_structure_files([("a", srtio3, {}), ("a", srtio3, {})], tmp_path, "cif")
    assert not list(tmp_path.iterdir())


def test_cli_export_refuses_to_overwrite_unless_asked(tmp_path):
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    assert cli("import", project, GOOD / "SrTiO3.cif", "--dataset", "d").returncode == 0
    folder, archive = tmp_path / "out", tmp_path / "out.zip"
    for out in (folder, archive):
        assert cli("export", project, "--dataset", "d", "--out", out).returncode == 0
    (folder / "SrTiO3_1.cif").write_text("edited by hand")
    archive.write_bytes(b"my zip")
    for out, existing in ((folder, folder / "SrTiO3_1.cif"), (archive, archive)):
        refused = cli("export", project, "--dataset", "d", "--out", out)
        assert refused.returncode == 2
        assert f"{existing}: already exists; nothing was written (pass --overwrite to replace)" in refused.stderr
    assert (folder / "SrTiO3_1.cif").read_text() == "edited by hand" and archive.read_bytes() == b"my zip"
    for out in (folder, archive):
        assert cli("export", project, "--dataset", "d", "--out", out, "--overwrite").returncode == 0
    assert "_cell_length_a" in (folder / "SrTiO3_1.cif").read_text()
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == ["SrTiO3_1.cif"]
    assert sorted(p.name for p in tmp_path.iterdir() if ".part" in p.name or "tmp" in p.name) == []


# ------------------------------------------------------------------ item 11: spec validation gaps

SPEC_TEXT = ('{"version": 1, "name": "s", "objectives": [{"property": "band_gap", "kind": "target", '
             '"value": VALUE, "tolerance": 0.2, "weight": WEIGHT}], "constraints": CONSTRAINTS}')


def spec_file(tmp_path, value="2.5", weight="1", constraints='{"charge_neutral": true}', name="s.json") -> Path:
    path = tmp_path / name
    path.write_text(SPEC_TEXT.replace("VALUE", value).replace("WEIGHT", weight).replace("CONSTRAINTS", constraints))
    return path


@pytest.mark.parametrize("value, weight, constraints, problem", [
    ("1" + "0" * 400, "1", "{}", "objectives[0].value: 100000000000000000...0000000000000000000 is out of range"),
    ("Infinity", "1", "{}", "objectives[0].value: must be a finite number (got inf)"),
    ("NaN", "1", "{}", "objectives[0].value: must be a finite number (got nan)"),
    ("2.5", "1e308", "{}", "objectives[0].weight: 1e+308 is out of range [0, 1000]"),
    ("2.5", "true", "{}", "objectives[0].weight: expected a number, got True"),
    ('["band_gap"]', "1", "{}", "objectives[0].value: expected a number, got ['band_gap']"),
    ("2.5", "1", '{"charge_neutral": "no"}', "constraints.charge_neutral: expected true or false, got 'no'"),
    ("2.5", "1", '{"template": ["perovskite"]}', "constraints.template: expected an object or a template name"),
    ("2.5", "1", '{"template": {"kind": ["free"]}}', "constraints.template.kind: ['free'] is not one of"),
    ("2.5", "1", '{"site_elements": ["A"]}', "constraints.site_elements: expected an object, got ['A']"),
    ("2.5", "1", '{"natoms": [1.5, 4]}', "constraints.natoms[0]: expected an integer, got 1.5"),
    ("2.5", "1", '{"tolerance_factor": [0.8, -Infinity]}', "constraints.tolerance_factor[1]: must be a finite number"),
    ("2.5", "1", "[]", "constraints: expected an object, got []"),
])
def test_bad_spec_values_name_the_field(tmp_path, value, weight, constraints, problem):
    path = spec_file(tmp_path, value, weight, constraints)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)


def test_lists_where_strings_or_objects_belong_are_problems_not_type_errors(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": ["x"], "description": {"a": 1}, "objectives": [
        {"property": ["band_gap"], "kind": "maximize"}, {"property": "band_gap", "kind": ["maximize"]}, "gap"]}))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == [
        "name: expected a string, got ['x']",
        "description: expected a string, got {'a': 1}",
        "objectives[0].property: unknown property ['band_gap'] (known: " + ", ".join(sorted(UNITS)) + ")",
        "objectives[1].kind: ['maximize'] is not one of target, below, above, minimize, maximize",
        "objectives[2]: expected an object, got 'gap'",
    ]


def test_yaml_no_is_not_true(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nobjectives:\n  - {property: band_gap, kind: maximize}\nconstraints:\n"
                    "  charge_neutral: no\n  min_distance: .inf\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == ["constraints.charge_neutral: expected true or false, got 'no'",
                                     "constraints.min_distance: must be a finite number (got inf)"]


# ------------------------------------------------------------------ item 16: out-of-range numbers on the command line


def test_non_finite_sizes_and_ids_beyond_sqlite_are_usage_errors(tmp_path):
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    for size in ("nan", "inf", "-1", "1e300"):
        result = cli("import", project, GOOD / "SrTiO3.cif", "-d", "d", f"--max-file-mb={size}")
        assert result.returncode == 2
        assert "--max-file-mb must be a number above 0 and at most 1048576 (got " in result.stderr
    big = str(2**63)
    ids = cli("export", project, "--ids", f"1,{big}", "--out", tmp_path / "out")
    assert ids.returncode == 2
    assert f"--ids: {big} is not an id (ids run from 1 to {2**63 - 1})" in ids.stderr
    run = cli("export", project, "--run", big, "--out", tmp_path / "out")
    assert run.returncode == 2 and "Invalid value for '--run'" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_model_file_that_is_not_a_regular_file_is_refused(tmp_path):
    from crystal_studio.ml.predictor import import_model_file
    from crystal_studio.store.project import Project

    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    project = Project.create(tmp_path / "p.sqlite")
    with pytest.raises(CrystalStudioError, match="not a regular file"):
        import_model_file(project, fifo)
    project.close()


def test_candidates_of_a_training_run_are_refused_with_the_reason(tmp_path):
    from crystal_studio.store import models as model_store
    from crystal_studio.store.project import Project

    project = Project.create(tmp_path / "p.sqlite")
    run = model_store.create_run(project, "train", {"dataset": "x"}, 0, "cpu", {})
    project.close()
    done = subprocess.run([sys.executable, "-m", "crystal_studio", "candidates", str(tmp_path / "p.sqlite"), "--run",
                           str(run), "--json"], capture_output=True, text=True)
    assert done.returncode == 2 and "training run" in done.stderr and not done.stdout.strip()
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------ item 15: parse workers outlive a killed import


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_parse_workers_die_when_the_import_is_killed(tmp_path):
    import csv
    import signal
    import time

    from crystal_studio.store.importer import PARALLEL_THRESHOLD

    table = tmp_path / "many.csv"
    cif = (GOOD / "SrTiO3.cif").read_text()
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "cif"])
        writer.writerows([f"s{i}", cif] for i in range(PARALLEL_THRESHOLD * 3))
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "crystal_studio", "import", str(project), str(table),
                             "--dataset", "d", "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            workers = [c for c in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()] if _alive(proc.pid) else []
            time.sleep(0.2)
        assert len(workers) == 2, "the import never started its parse workers"
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "parse workers kept running after their import was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in filter(_alive, workers):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ item 18: repeated ids


def test_repeated_ids_are_named_and_can_be_left_out(tmp_path):
    from crystal_studio.store.importer import import_paths

    project = Project.create(tmp_path / "p.sqlite")
    first = import_paths(project, [GOOD / "SrTiO3.cif"], "d", workers=1)
    assert first.imported == 1 and first.repeated == []
    again = import_paths(project, [GOOD / "SrTiO3.cif"], "d", workers=1)
    assert again.imported == 1 and len(again.repeated) == 1 and not again.repeats_skipped
    assert "imported again" in again.repeat_note()
    skipped = import_paths(project, [GOOD / "SrTiO3.cif"], "d", workers=1, duplicates="skip")
    assert skipped.imported == 0 and skipped.repeats_skipped and skipped.exit_code == 0
    assert "left out" in skipped.repeat_note()
    assert project.count() == 2
    with pytest.raises(CrystalStudioError, match="duplicates must be one of keep, skip"):
        import_paths(project, [GOOD / "SrTiO3.cif"], "d", duplicates="merge")


def test_cli_import_warns_about_repeated_ids_and_skips_them_on_request(tmp_path):
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    assert cli("import", project, GOOD / "SrTiO3.cif", "--dataset", "d").returncode == 0
    again = cli("import", project, GOOD / "SrTiO3.cif", "--dataset", "d")
    assert again.returncode == 0
    assert "warning: 1 record(s) repeat an id already in 'd'" in again.stderr
    assert "--duplicates skip" in again.stderr
    skipped = cli("import", project, GOOD / "SrTiO3.cif", "--dataset", "d", "--duplicates", "skip", "--json")
    assert skipped.returncode == 0 and "nothing new imported" in skipped.stderr
    doc = json.loads(skipped.stdout)
    assert doc["imported"] == 0 and doc["repeats_skipped"] and len(doc["repeated_ids"]) == 1


# ------------------------------------------------------------------ item 14: export outputs that cannot be written


def test_cli_export_through_a_file_names_the_file(tmp_path):
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    assert cli("import", project, GOOD / "SrTiO3.cif", "--dataset", "d").returncode == 0
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out in (afile / "x.zip", afile / "sub"):
        result = cli("export", project, "--dataset", "d", "--out", out)
        assert result.returncode == 2
        assert f"{afile} is a file, not a folder" in result.stderr
    assert afile.read_text() == "not a folder"


@pytest.mark.skipif(sys.platform != "linux", reason="simulates a full disk with Linux's RLIMIT_FSIZE")
def test_cli_export_to_a_full_disk_leaves_nothing_half_written(tmp_path):
    import resource

    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    many = tmp_path / "many"
    many.mkdir()
    text = (GOOD / "SrTiO3.cif").read_text()
    for i in range(200):
        (many / f"s{i}.cif").write_text(text.replace("data_", f"data_s{i}_", 1))
    assert cli("import", project, many, "--dataset", "d").returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    limit = 40 * 1024  # above SQLite's 32 KiB -shm index, so the project opens; the archives outgrow it

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    for target in (out / "all.zip", out / "all-poscar.zip"):
        result = subprocess.run([sys.executable, "-m", "crystal_studio", "export", str(project), "--dataset", "d",
                                 "--out", str(target), "--format", "poscar" if "poscar" in target.name else "cif"],
                                capture_output=True, text=True, timeout=120, preexec_fn=small_disk)
        assert "Traceback" not in result.stderr
        assert result.returncode == 2 and f"cannot write {target}: File too large" in result.stderr, result.stderr
    assert list(out.iterdir()) == []
