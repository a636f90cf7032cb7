"""The hostile-input corpus of issue 20 (``tests/data/hostile``, plus large inputs generated here),
run through the real command line: every file is refused or imported in part with the right exit
code (2 nothing done, 3 partial, 0 only where the bad parts were reported as notes), stderr names the
file (or the spec field) and never shows a traceback, and the project is intact afterwards, holding
no half-written dataset. Item 14 (export outputs that cannot be written) is at the end.

Each file's expected outcome is in ``tests/data/hostile/expected.json`` (generated inputs: in
:data:`GENERATED` below): a new hostile file without one fails :func:`test_every_file_has_an_expectation`.
The runs are started together, a few at a time, by a module fixture (one process each, on its own
copy of one template project), and each test checks one run's outcome.
"""

from __future__ import annotations

import binascii
import json
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.clitools import WIDE, run_cli
from tests.conftest import DATA, GOOD

HOSTILE = DATA / "hostile"
MANIFEST = HOSTILE / "expected.json"
NOT_INPUTS = {"README.md", "expected.json"}
CIF = (GOOD / "SrTiO3.cif").read_text()
MiB = 2**20
TIMEOUT = 60  # seconds per command: a hang fails its test instead of the session
WORKERS = 4


# ------------------------------------------------------------------ large inputs, made at test time


def zip_bomb(path: Path, entries: int = 16, entry_mib: int = 400) -> None:
    """A zip of ``entries`` × ``entry_mib`` MiB of 'x' (6.4 GiB), about 6.5 MB on disk: one entry
    compressed once, its bytes written under every name (each a stored local header + data)."""
    chunk = b"x" * MiB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = b"".join([compressor.compress(chunk) for _ in range(entry_mib)] + [compressor.flush()])
    crc = 0
    for _ in range(entry_mib):
        crc = binascii.crc32(chunk, crc)
    size = entry_mib * MiB
    local, central = bytearray(), bytearray()
    for i in range(entries):
        name = f"bomb{i:02d}.cif".encode()
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0)
        local += name + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                               len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries, entries, len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))


def csv_million_columns(path: Path) -> None:
    path.write_text("cif," + ",".join(f"c{i}" for i in range(1_000_000)) + "\nx" + ",1" * 1_000_000 + "\n")


def cif_100k_atoms(path: Path) -> None:
    side = 47  # 47³ > 100 000 grid points in a 200 Å cell: 4.3 Å apart
    rows = [f"Na Na{i} {i % side / side:.6f} {i // side % side / side:.6f} {i // side**2 / side:.6f} 1"
            for i in range(100_000)]
    path.write_text("data_big\n_symmetry_space_group_name_H-M 'P 1'\n_cell_length_a 200\n_cell_length_b 200\n"
                    "_cell_length_c 200\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
                    "loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\nloop_\n_atom_site_type_symbol\n_atom_site_label\n"
                    "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
                    + "\n".join(rows) + "\n")


def cif_1e5_symops(path: Path) -> None:
    head, tail = CIF.split(" 'x, y, z'\n", 1)
    path.write_text(head + " 'x, y, z'\n" * 100_000 + tail)


def spec_deep_yaml(path: Path) -> None:
    path.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")


def non_utf8_name(folder: Path) -> Path:
    """A junk CIF whose name is not UTF-8 (bytes 0xff): returned as the path to import."""
    path = folder / os.fsdecode(b"bad\xff.cif")
    path.write_text("data_x\n_cell_length_a 1\n")
    return path


# name: (builder writing it into a folder and returning its path, expectation as in expected.json)
GENERATED = {
    "zip_bomb_16x400MiB.zip": (lambda d: _made(d / "zip_bomb_16x400MiB.zip", zip_bomb),
                               {"verb": "import", "exit": 2, "imported": 0,
                                "stderr": ":bomb15.cif: entry is 400.0 MiB, over the 1024 MiB limit of decompressed "
                                          "content per archive"}),
    "csv_1e6_columns.csv": (lambda d: _made(d / "csv_1e6_columns.csv", csv_million_columns),
                            {"verb": "import", "exit": 2, "imported": 0,
                             "stderr": "CSV header has 1000001 columns, over the limit of 10000"}),
    "cif_100k_atoms.cif": (lambda d: _made(d / "cif_100k_atoms.cif", cif_100k_atoms),
                           {"verb": "import", "exit": 2, "imported": 0, "stderr": "over the limit of 1000 per structure"}),
    "cif_1e5_symops.cif": (lambda d: _made(d / "cif_1e5_symops.cif", cif_1e5_symops),
                           {"verb": "import", "exit": 2, "imported": 0,
                            "stderr": "100007 symmetry operations in _symmetry_equiv_pos_as_xyz"}),
    "spec_deep_nesting.yaml": (lambda d: _made(d / "spec_deep_nesting.yaml", spec_deep_yaml),
                               {"verb": "spec", "exit": 2, "stderr": "not valid YAML"}),
    "non_utf8_name.cif": (non_utf8_name, {"verb": "import", "exit": 2, "imported": 0, "stderr": "no atom sites"}),
}


def _made(path: Path, build) -> Path:
    build(path)
    return path


def manifest() -> dict[str, dict]:
    return {k: v for k, v in json.loads(MANIFEST.read_text()).items() if not k.startswith("_")}


def corpus_files() -> list[str]:
    return sorted(p.name for p in HOSTILE.iterdir() if p.name not in NOT_INPUTS)


CASES = sorted(set(corpus_files()) | set(manifest())) + sorted(GENERATED)


# ------------------------------------------------------------------ one template project, every run at once


def _template(folder: Path) -> Path:
    """An empty project with one (checkpoint-less) band_gap model, so that 'optimize --spec FILE
    --models 1' gets as far as reading the spec, and fails there."""
    from crystal_studio.store import models as model_store
    from crystal_studio.store.project import Project

    path = folder / "template.sqlite"
    project = Project.create(path)
    model_store.add_model(project, "stand-in", "gnn", ["band_gap"], {"members": 1}, {}, {}, b"not weights")
    project.close()
    assert not [p for p in folder.iterdir() if p.name.startswith("template.sqlite-")]  # one file holds it all
    return path


def _one_case(name: str, root: Path, template: Path) -> dict:
    case = root / f"case{CASES.index(name):03d}"
    inputs, cwd = case / "in", case / "a" / "b"  # a '../../' entry written out would land in case/
    inputs.mkdir(parents=True)
    cwd.mkdir(parents=True)
    project = case / "p.sqlite"
    shutil.copyfile(template, project)
    if name in GENERATED:
        builder, expected = GENERATED[name]
        try:
            path = builder(inputs)
        except (OSError, UnicodeError) as exc:
            return {"skip": f"this file system cannot hold {name}: {exc}"}
    else:
        expected = manifest().get(name)
        path = inputs / name
        shutil.copyfile(HOSTILE / name, path)
    if expected is None:
        return {"expected": None}
    if expected["verb"] == "import":
        args = ("import", project, path, "--dataset", "d")
    else:
        args = ("optimize", project, "--spec", path, "--models", "1", "--device", "cpu", "--candidates", "2",
                "--steps", "1")
    result = run_cli(*args, timeout=TIMEOUT, env=WIDE, cwd=cwd)
    if name in GENERATED:
        path.unlink()  # the large ones go at once
    return {"expected": expected, "path": path, "result": result, "case": case, "project": project,
            "cwd": cwd}


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Future]:
    root = tmp_path_factory.mktemp("hostile")
    template = _template(root)
    pool = ThreadPoolExecutor(WORKERS)
    selected = {item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_hostile_input" and hasattr(item, "callspec")}
    # only the cases this session runs (-k), the slow ones first so that they overlap the many quick ones
    order = sorted(selected, key=lambda n: (n not in GENERATED, CASES.index(n)))
    futures = {name: pool.submit(_one_case, name, root, template) for name in order}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_every_file_has_an_expectation():
    files, expected = set(corpus_files()), set(manifest())
    assert not files - expected, f"hostile files without an expected outcome in {MANIFEST}: {sorted(files - expected)}"
    assert not expected - files, f"expectations for files not in {HOSTILE}: {sorted(expected - files)}"
    assert not files & set(GENERATED)
    for name, entry in {**manifest(), **{k: v for k, (_, v) in GENERATED.items()}}.items():
        assert entry["verb"] in ("import", "spec") and entry["exit"] in (0, 2, 3) and entry["stderr"], name
        assert entry["verb"] == "spec" or isinstance(entry["imported"], int), name


def test_corpus_files_are_small():
    assert all((HOSTILE / n).stat().st_size <= 8 * 1024 for n in corpus_files()), "generate large inputs in tests"


def _counts(project: Path) -> tuple[str, int, list[tuple[str, int]], int]:
    with sqlite3.connect(f"file:{project}?mode=ro", uri=True) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        structures = db.execute("SELECT count(*) FROM structures").fetchone()[0]
        datasets = db.execute("SELECT d.name, count(s.id) FROM datasets d LEFT JOIN structures s "
                              "ON s.dataset_id = d.id GROUP BY d.id").fetchall()
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
    db.close()
    return integrity, structures, datasets, runs


@pytest.mark.parametrize("name", CASES)
def test_hostile_input(name, outcomes):
    outcome = outcomes[name].result(timeout=10 * TIMEOUT)
    if "skip" in outcome:
        pytest.skip(outcome["skip"])
    expected = outcome["expected"]
    assert expected is not None, f"{name}: no expected outcome in {MANIFEST}"
    result, path = outcome["result"], outcome["path"]
    stderr = result.stderr.replace("\n", "")
    assert result.returncode == expected["exit"], f"{name}: exit {result.returncode}\n{result.stderr}"
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")  # a non-UTF-8 name is shown escaped
    assert shown in stderr, f"{name}: stderr does not name the file\n{result.stderr}"
    assert expected["stderr"] in stderr, f"{name}: expected {expected['stderr']!r} in stderr\n{result.stderr}"
    integrity, structures, datasets, runs = _counts(outcome["project"])
    assert integrity == "ok"
    assert runs == 0  # a refused spec starts no run
    if expected["verb"] == "import":
        assert structures == expected["imported"], f"{name}: {structures} structures stored"
        if expected["imported"]:
            assert datasets == [("d", expected["imported"])]
        else:
            assert datasets == []  # a refused import leaves no empty or half-written dataset
    else:
        assert structures == 0 and datasets == []
    # nothing was written beside the project or where the cwd's '../../' would lead
    left = {p.relative_to(outcome["case"]).as_posix() for p in outcome["case"].rglob("*")}
    assert left - {"in", "in/" + path.name, "a", "a/b"} <= {"p.sqlite", "p.sqlite-wal", "p.sqlite-shm"}, left


# ------------------------------------------------------------------ item 14: export outputs that cannot be written

NO_DAC = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner")


@pytest.fixture(scope="module")
def candidate_run(tmp_path_factory) -> tuple[Path, int]:
    """A project with an optimization run holding two candidates (stored through the public API)."""
    from pymatgen.core import Structure

    from crystal_studio.store import models as model_store
    from crystal_studio.store.candidates import add_candidates
    from crystal_studio.store.project import Project

    path = tmp_path_factory.mktemp("export") / "p.sqlite"
    project = Project.create(path)
    structure = Structure.from_str(CIF, fmt="cif")
    run = model_store.create_run(project, "optimization", {"method": "smoacs"}, 0, "cpu", {})
    add_candidates(project, run, [(structure, {"formula": "SrTiO3", "success": True}),
                                  (structure, {"formula": "SrTiO3", "success": False})])
    model_store.update_run(project, run, status="completed")
    project.close()
    return path, run


def _without_permission_bypass() -> tuple[str, ...]:
    """A command prefix under which file permissions apply: none for a normal user; for root, one
    that drops the capabilities that override them (skips where that cannot be done)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None or subprocess.run([*NO_DAC, "true"], capture_output=True).returncode:
        pytest.skip("running as root, which ignores file permissions, and cannot drop that (setpriv)")
    return NO_DAC


def _export(project: Path, run: int, out: Path, prefix=()):
    return run_cli("export", project, "--run", run, "--format", "cif", "--out", out, timeout=TIMEOUT, env=WIDE,
                   prefix=prefix)


def test_export_of_a_run_into_a_read_only_folder_names_the_path(candidate_run, tmp_path):
    project, run = candidate_run
    prefix = _without_permission_bypass()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for out in (locked / "x.zip", locked / "sub"):
            result = _export(project, run, out, prefix)
            assert result.returncode in (2, 3), result.stderr
            assert str(out) in result.stderr.replace("\n", "") and "Permission denied" in result.stderr
            assert list(locked.iterdir()) == []  # no partial zip, no temporary file
    finally:
        locked.chmod(stat.S_IRWXU)


def test_export_of_a_run_through_a_file_names_the_file(candidate_run, tmp_path):
    project, run = candidate_run
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out in (afile / "x.zip", afile / "sub" / "x.zip"):
        result = _export(project, run, out)
        assert result.returncode in (2, 3), result.stderr
        assert f"{afile} is a file, not a folder" in result.stderr.replace("\n", "")
    assert afile.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_export_of_a_run_onto_a_read_only_file_system_names_the_path(candidate_run, tmp_path):
    project, run = candidate_run
    folder = tmp_path / "ro"
    folder.mkdir()
    prefix = ("unshare", "--mount", "--map-root-user", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"',
              str(folder))
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("cannot make a read-only mount here (needs unshare with user and mount namespaces)")
    result = _export(project, run, folder / "x.zip", prefix)
    assert result.returncode in (2, 3), result.stderr
    assert f"cannot write {folder / 'x.zip'}: Read-only file system" in result.stderr.replace("\n", "")
    assert list(folder.iterdir()) == []


def test_the_same_export_works_where_it_can_be_written(candidate_run, tmp_path):
    """The refusals above come from the output, not from the run: written elsewhere, it exports."""
    import zipfile

    project, run = candidate_run
    result = _export(project, run, tmp_path / "x.zip")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        assert len(archive.namelist()) == 2
