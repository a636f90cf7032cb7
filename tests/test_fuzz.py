"""Property-based fuzzing of every importer and of the design-spec parser (issue 17, item 2).

Inputs are mutations of real files from tests/data/good (byte flips, insertions, deletions, truncation,
repeated or dropped lines, number swaps) plus arbitrary text. The properties:

- reading and parsing never raises: each input ends as parsed records or as import issues with a reason;
- no input takes longer than the hypothesis deadline;
- an import into a project is all or nothing: afterwards the store passes ``integrity_check`` and holds
  exactly the records the report counts as imported;
- a spec document is either a :class:`DesignSpec` or a :class:`SpecError`, never another exception.

Inputs that once broke these properties are kept in tests/data/fuzz/ and run first, every time.
``FUZZ_EXAMPLES`` sets the examples per test (CI default 40; longer runs in docs/benchmarks.md).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.io import ImportIssue, ImportOptions, iter_raw_records, parse_raw_record
from crystal_studio.design.spec import SpecError, load_spec, spec_from_dict
from crystal_studio.store.importer import import_paths
from crystal_studio.store.project import Project

DATA = Path(__file__).parent / "data"
SEEDS = {path.name: path.read_bytes() for path in (DATA / "good").iterdir()}  # file name -> content
REGRESSIONS = sorted((DATA / "fuzz").glob("*")) if (DATA / "fuzz").is_dir() else []
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
OPTIONS = ImportOptions(max_file_bytes=1 << 20, max_archive_bytes=4 << 20, max_sites=500)

FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` after one to four random edits of the kinds that break parsers."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "lines", "number"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=40) | st.sampled_from(
                [b"\n", b"\x00", b"'", b'"', b";\n", b"loop_\n", b"-", b"1e308", b"nan", b"999999999"]))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 60))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "lines":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines[i:i + 1] = draw(st.sampled_from([[], [lines[i]] * draw(st.integers(2, 30))]))
            data = bytearray(b"\n".join(lines))
        else:  # replace one number with an extreme one
            numbers = list(re.finditer(rb"-?\d+(\.\d+)?", bytes(data)))
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                data[m.start():m.end()] = draw(st.sampled_from(
                    [b"0", b"-0", b"1e30", b"-1e300", b"nan", b"inf", b"1" * 400, b"0.0000001", b"-7"]))
    return bytes(data)


def _read_all(path: Path) -> tuple[int, int]:
    """(records parsed, issues) after stage 1 and 2 of the import; raises only what the test reports."""
    parsed = issues = 0
    for item in iter_raw_records([path], OPTIONS):
        if isinstance(item, ImportIssue):
            issues += 1
            continue
        for result in parse_raw_record(item, OPTIONS):
            if isinstance(result, ImportIssue):
                assert result.reason.strip(), f"{result.source}: an issue without a reason"
                issues += 1
            else:
                parsed += 1
    return parsed, issues


@pytest.mark.parametrize("seed", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutated_files_are_parsed_or_reported_never_raised(tmp_path_factory, seed, data):
    content = data.draw(mutated(SEEDS[seed]), label="content")
    path = tmp_path_factory.mktemp("fuzz") / seed
    path.write_bytes(content)
    _read_all(path)


@FUZZ
@given(text=st.text(max_size=400), suffix=st.sampled_from(["cif", "vasp", "extxyz", "csv", "json"]))
def test_arbitrary_text_in_every_format_is_reported_never_raised(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"input.{suffix}"
    path.write_text(text, encoding="utf-8")
    _read_all(path)


@FUZZ
@given(members=st.lists(st.tuples(st.sampled_from(sorted(SEEDS)), st.booleans()), min_size=1, max_size=4),
       data=st.data())
def test_zips_of_mutated_files_are_parsed_or_reported(tmp_path_factory, members, data):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, (seed, mutate) in enumerate(members):
            content = data.draw(mutated(SEEDS[seed])) if mutate else SEEDS[seed]
            archive.writestr(f"dir{i}/{seed}", content)
    raw = bytearray(buffer.getvalue())
    if data.draw(st.booleans(), label="damage the archive"):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= 0xFF
    path = tmp_path_factory.mktemp("fuzz") / "input.zip"
    path.write_bytes(bytes(raw))
    _read_all(path)


def _counts(path: Path) -> tuple[str, int, int]:
    with closing(Project.open(path)) as project:
        db = project.db
        return (db.execute("PRAGMA integrity_check").fetchone()[0],
                db.execute("SELECT count(*) FROM structures").fetchone()[0],
                db.execute("SELECT count(*) FROM properties").fetchone()[0])


@FUZZ
@given(seed=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_an_import_of_a_mutated_file_stores_exactly_what_it_reports(tmp_path_factory, seed, data):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / seed
    path.write_bytes(data.draw(mutated(SEEDS[seed])))
    store = folder / "p.sqlite"
    with closing(Project.create(store)) as project:
        try:
            report = import_paths(project, [path], "fuzzed", OPTIONS, workers=1)
        except CrystalStudioError:
            report = None  # refused as a whole: nothing may have been written
    check, structures, _ = _counts(store)
    assert check == "ok"
    assert structures == (report.imported if report else 0)


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_kept_fuzz_regressions(path):
    if path.suffix in (".json", ".yaml", ".yml") and path.stem.startswith("spec"):
        with pytest.raises(SpecError):
            load_spec(path)
    else:
        _read_all(path)


VALID_SPEC = json.loads((Path(__file__).parents[1] / "resources" / "specs" / "wide_gap_4.5eV.json").read_text())
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


def _assert_spec_or_spec_error(doc) -> None:
    try:
        spec_from_dict(doc)
    except SpecError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@FUZZ
@given(doc=JSON_VALUES)
def test_arbitrary_documents_are_specs_or_spec_errors(doc):
    _assert_spec_or_spec_error(doc)


@st.composite
def edited_spec(draw):
    """The shipped wide-gap spec with one to three fields replaced by arbitrary JSON values."""
    doc = json.loads(json.dumps(VALID_SPEC))
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], (dict, list)) or not node[key]:
                break
            node = node[key]
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node) + ["unexpected"]))
        elif isinstance(node, list) and node:
            key = draw(st.integers(0, len(node) - 1))
        else:
            continue
        node[key] = draw(JSON_VALUES)
    return doc


@FUZZ
@given(doc=edited_spec())
def test_edited_specs_are_specs_or_spec_errors(doc):
    _assert_spec_or_spec_error(doc)


@FUZZ
@given(text=st.text(max_size=300), suffix=st.sampled_from([".json", ".yaml"]))
def test_spec_files_of_any_text_load_or_raise_spec_error(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("spec") / f"spec{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except SpecError as exc:
        assert exc.problems
