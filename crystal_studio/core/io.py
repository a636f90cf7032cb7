"""Reading and writing crystals: CIF (multi-block), POSCAR/CONTCAR/*.vasp, extended XYZ, pymatgen JSON
and CSV with a CIF column, from files, folders and .zip archives (gzip is transparent).

Reading happens in two stages so the expensive one can run in worker processes:

1. :func:`iter_raw_records` walks the paths (I/O only) and yields :class:`RawRecord` units of text, or
   :class:`ImportIssue` for anything unreadable (size, encoding, zip paths, missing CIF column).
2. :func:`parse_raw_record` turns a raw record into :class:`ParsedRecord` items (structure checked and
   described) or issues. It is a pure function of its picklable input.

Every problem a user can cause becomes an :class:`ImportIssue` naming the file and the
row/frame/block; nothing here lets a traceback escape for bad input. Element symbols are never
guessed: unknown ones ('Uue', 'Uuo') and the hydrogen isotopes D and T reject their record.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
import os
import re
import secrets
import stat
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from crystal_studio.core import structures as cs
from crystal_studio.core.errors import CrystalStudioError, InvalidRecordError, OutputExistsError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.properties import ID_COLUMNS, STRUCTURE_COLUMNS, UNITS, canonical_name, normalize_column

DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024  # per file, after decompression
DEFAULT_MAX_ARCHIVE_BYTES = 2 * DEFAULT_MAX_FILE_BYTES  # per zip archive, all entries after decompression
DEFAULT_MAX_SITES = 1000  # atoms per structure: checking a random 1000-atom cell takes about 0.5 s, 5000 about 12 s
MAX_CSV_COLUMNS = 10_000  # a CSV with more columns is not a table of crystals (pandas would take minutes)
MAX_SYMMETRY_OPERATIONS = 384  # per CIF loop: a space group has at most 192 operations, 384 with time reversal

CIF_SUFFIXES = (".cif", ".mcif")
POSCAR_SUFFIXES = (".vasp", ".poscar")
POSCAR_NAMES = ("POSCAR", "CONTCAR")
XYZ_SUFFIXES = (".extxyz", ".xyz")
JSON_SUFFIXES = (".json",)
CSV_SUFFIXES = (".csv",)


@dataclass
class ImportOptions:
    """How strictly to treat questionable records."""

    ordered_approximation: bool = False  # partial occupancies: keep majority species instead of rejecting
    reject_close_atoms: bool = False  # atoms closer than close_atoms_tolerance: reject instead of flag
    close_atoms_tolerance: float = cs.MIN_DISTANCE  # Å
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # per file or zip entry, after decompression
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES  # per zip archive, all its entries after decompression
    max_sites: int = DEFAULT_MAX_SITES  # atoms per structure (declared counts and after symmetry expansion)


@dataclass
class ImportIssue:
    """A record that was not imported, with a one-line reason."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class RawRecord:
    """Undecoded unit of work: one file's text, or one CSV row."""

    source: str  # human-readable location, e.g. "data.csv row 12"
    fmt: str  # cif | poscar | extxyz | json
    text: str
    name: str | None = None
    properties: dict[str, str] = field(default_factory=dict)  # raw column values (CSV)
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class ParsedRecord:
    """A checked structure ready for the store."""

    source: str
    name: str | None
    structure_json: str
    info: cs.StructureInfo
    properties: dict[str, float]
    meta: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the import left out of the record, one line each

    @property
    def structure(self) -> Structure:
        return cs.from_json(self.structure_json)


# --------------------------------------------------------------------------------------------------
# Stage 1: walking paths
# --------------------------------------------------------------------------------------------------


def detect_format(name: str) -> str | None:
    """Format of a file from its name (a trailing .gz is ignored); None if not a crystal file."""
    base = name[:-3] if name.lower().endswith(".gz") else name
    lower = base.lower()
    stem = PurePosixPath(base).name
    if lower.endswith(CIF_SUFFIXES):
        return "cif"
    if lower.endswith(POSCAR_SUFFIXES) or stem.split(".")[0] in POSCAR_NAMES:
        return "poscar"
    if lower.endswith(XYZ_SUFFIXES):
        return "extxyz"
    if lower.endswith(JSON_SUFFIXES):
        return "json"
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as text that prints and stores safely: the bytes of a file name that are not UTF-8
    (which Python keeps as lone surrogates) become ``\\xNN`` escapes, e.g. ``caf\\xe9.cif``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def iter_raw_records(paths: Iterable[str | os.PathLike], options: ImportOptions | None = None) -> Iterator[
        RawRecord | ImportIssue]:
    """Yield raw records (or issues) for files, folders (recursively) and .zip archives."""
    options = options or ImportOptions()
    for path in map(Path, paths):
        if not path.exists():
            yield ImportIssue(printable_path(path), "no such file or folder")
        elif path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if child.suffix.lower() == ".zip" or detect_format(child.name):
                    yield from _records_from_file(child, options)
        else:
            yield from _records_from_file(path, options, explicit=True)


def _records_from_file(path: Path, options: ImportOptions, explicit: bool = False) -> Iterator[
        RawRecord | ImportIssue]:
    source, name = printable_path(path), printable_path(path.name)
    try:
        if path.suffix.lower() == ".zip":
            with open_regular(path, options.max_file_bytes) as fh:
                yield from _records_from_zip(source, fh, options)
            return
        data = _gunzip(source, name, read_regular(path, options.max_file_bytes), options.max_file_bytes,
                       _file_limit(options))
    except InvalidRecordError as exc:
        yield ImportIssue(source, exc.reason)
        return
    fmt = detect_format(name) or (_sniff_format(data) if explicit else None)
    if fmt is None:
        yield ImportIssue(source, "unrecognised file type (expected CIF, POSCAR, extxyz, JSON, CSV or zip)")
        return
    yield from _records_from_bytes(source, name, data, fmt)


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX: opening a FIFO without it waits for a writer


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, limit: int) -> Iterator[io.BufferedReader]:
    """``path`` opened for binary reading, refusing anything but a regular file of at most ``limit``
    bytes (a FIFO, device or socket would block or never end). Opening never blocks: the checks are
    made on the open file. Problems raise :class:`InvalidRecordError`."""
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise InvalidRecordError(printable_path(path), f"cannot read file ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRecordError(printable_path(path), f"not a regular file ({_file_kind(info.st_mode)}); "
                                                           "only regular files are read")
        if info.st_size > limit:
            raise InvalidRecordError(printable_path(path),
                                     f"file is {info.st_size / 2**20:.1f} MiB, over the {mib(limit)} limit")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        yield fh


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file ``path``, reading at most ``limit`` + 1 bytes whatever its stated
    size (a size of 0 proves nothing: /proc files, a file still growing); see :func:`open_regular`."""
    with open_regular(path, limit) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InvalidRecordError(printable_path(path), f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise InvalidRecordError(printable_path(path), f"file is over the {mib(limit)} limit")
    return data


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


def mib(n: int) -> str:
    """A byte limit in whole MiB, as messages state it."""
    return f"{n / 2**20:.0f} MiB"


def _records_from_zip(source: str, stream, options: ImportOptions) -> Iterator[RawRecord | ImportIssue]:
    """Records of the crystal files in a zip archive. Each entry is read up to the per-file limit and
    all of them together up to :attr:`ImportOptions.max_archive_bytes` (after decompression), so a small
    archive of huge entries cannot exhaust memory; entries past the total are skipped with the reason.
    Nested archives and symbolic links are skipped with the reason too."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:  # a UTF-8-flagged name that is not UTF-8
        yield ImportIssue(source, f"not a readable zip archive ({exc})")
        return
    with archive:
        decompressed = 0  # bytes of the entries read so far
        for entry in archive.infolist():
            if entry.is_dir():
                continue
            entry_source = f"{source}:{entry.filename}"
            name = PurePosixPath(entry.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
                yield ImportIssue(entry_source, "zip entry path escapes the archive folder; skipped")
                continue
            nested = name.suffix.lower() == ".zip"
            fmt = detect_format(name.name)
            if fmt is None and not nested:
                continue
            if stat.S_ISLNK(entry.external_attr >> 16):
                yield ImportIssue(entry_source, "symbolic link entry, not read")
                continue
            if nested:
                yield ImportIssue(entry_source, "nested zip archives are not read (extract it and import it on its own)")
                continue
            try:
                data = _read_zip_entry(archive, entry, entry_source, *_entry_limit(options, decompressed))
            except InvalidRecordError as exc:
                yield ImportIssue(entry_source, exc.reason)
                continue
            decompressed += len(data)
            yield from _records_from_bytes(entry_source, name.name, data, fmt)


def _file_limit(options: ImportOptions) -> str:
    return f"the {mib(options.max_file_bytes)} limit"


def _entry_limit(options: ImportOptions, decompressed: int) -> tuple[int, str]:
    """Most bytes the next zip entry may hold after decompression, and that limit in words: the per-file
    limit, or what ``decompressed`` bytes read before it leave of the per-archive limit."""
    left = options.max_archive_bytes - decompressed
    if options.max_file_bytes <= left:
        return options.max_file_bytes, _file_limit(options)
    return max(left, 0), f"the {mib(options.max_archive_bytes)} limit of decompressed content per archive"


def _read_zip_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, source: str, limit: int,
                    limit_text: str) -> bytes:
    """The bytes of ``entry``, gunzipped when gzipped, if they are at most ``limit``; raises
    :class:`InvalidRecordError` otherwise. Reading stops at ``limit`` + 1 bytes whatever the entry
    states."""
    if entry.file_size > limit:
        raise InvalidRecordError(source, f"entry is {entry.file_size / 2**20:.1f} MiB, over {limit_text}")
    try:
        with archive.open(entry) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError, zlib.error) as exc:
        raise InvalidRecordError(source, f"cannot read zip entry ({exc})") from None
    if len(data) > limit:
        raise InvalidRecordError(source, f"entry is over {limit_text}")
    return _gunzip(source, entry.filename, data, limit, limit_text)


def _sniff_format(data: bytes) -> str | None:
    head = data[:4096].decode("utf-8", errors="replace")
    if "_cell_length_a" in head or head.lstrip().startswith("data_"):
        return "cif"
    if head.lstrip().startswith(("{", "[")):
        return "json"
    return None


def _gunzip(source: str, name: str, data: bytes, limit: int, limit_text: str) -> bytes:
    """``data`` decompressed when it is gzip (by name or magic bytes), at most ``limit`` bytes of it;
    raises :class:`InvalidRecordError` for a broken stream or more than ``limit`` bytes."""
    if not (name.lower().endswith(".gz") or data[:2] == b"\x1f\x8b"):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            data = gz.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidRecordError(source, f"not a valid gzip file ({exc})") from None
    if len(data) > limit:
        raise InvalidRecordError(source, f"decompressed content is over {limit_text}")
    return data


def _decode(source: str, data: bytes) -> str | ImportIssue:
    """UTF-8 text of ``data`` (a byte-order mark is dropped); an issue for other bytes or NULs."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ImportIssue(source, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})")
    if "\x00" in text:
        return ImportIssue(source, "binary content (NUL bytes) where text was expected")
    return text


def _records_from_bytes(source: str, name: str, data: bytes, fmt: str) -> Iterator[RawRecord | ImportIssue]:
    text = _decode(source, data)
    if isinstance(text, ImportIssue):
        yield text
        return
    if not text.strip():
        yield ImportIssue(source, "file is empty")
        return
    if fmt == "csv":
        yield from _records_from_csv(source, text)
    else:
        stem = PurePosixPath(name[:-3] if name.lower().endswith(".gz") else name).stem
        yield RawRecord(source=source, fmt=fmt, text=text, name=stem)


def _records_from_csv(source: str, text: str) -> Iterator[RawRecord | ImportIssue]:
    import pandas as pd

    columns = _csv_header_width(text)
    if columns > MAX_CSV_COLUMNS:
        yield ImportIssue(source, f"CSV header has {columns} columns, over the limit of {MAX_CSV_COLUMNS}")
        return
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        yield ImportIssue(source, f"unparsable CSV ({str(exc).splitlines()[0]})")
        return
    if frame.empty:  # a header alone: say so, naming the file, rather than import nothing silently
        yield ImportIssue(source, "CSV has a header but no rows")
        return
    columns = {normalize_column(c): c for c in frame.columns}
    cif_col = next((columns[c] for c in STRUCTURE_COLUMNS if c in columns), None)
    if cif_col is None:
        yield ImportIssue(source, f"no CIF column (expected one of: {', '.join(STRUCTURE_COLUMNS)}; "
                                  f"found: {', '.join(map(str, frame.columns))})")
        return
    id_col = next((columns[c] for c in ID_COLUMNS if c in columns), None)
    others = [c for c in frame.columns if c not in (cif_col, id_col) and not str(c).startswith("Unnamed:")]
    # a column named for a canonical numeric property always holds numbers: a bad cell rejects its row
    numeric = [c for c in others if canonical_name(str(c)) in UNITS or _mostly_numeric(frame[c])]
    numeric_set = set(numeric)
    text_cols = [c for c in others if c not in numeric_set]
    cif_values = frame[cif_col].tolist()
    id_values = frame[id_col].tolist() if id_col else [None] * len(frame)
    prop_values = {c: frame[c].tolist() for c in numeric}
    text_values = {c: frame[c].tolist() for c in text_cols}
    for i, cif in enumerate(cif_values):
        row_source = f"{source} row {i + 1}" + (f" (id {id_values[i]})" if id_values[i] else "")
        if not cif.strip():
            yield ImportIssue(row_source, f"empty '{cif_col}' cell")
            continue
        yield RawRecord(
            source=row_source,
            fmt="cif",
            text=cif,
            name=id_values[i] or None,
            properties={c: prop_values[c][i] for c in numeric},
            meta={c: text_values[c][i] for c in text_cols if text_values[c][i] != ""},
        )


def _csv_header_width(text: str) -> int:
    """Number of columns in the header row of CSV ``text`` (read without pandas, in linear time)."""
    try:
        return len(next(csv.reader(io.StringIO(text)), []))
    except csv.Error:
        return 0  # pandas gives the reason


def _mostly_numeric(column) -> bool:
    """A column is a property column when at least half its non-empty cells are numbers."""
    values = [v for v in column.tolist() if v.strip() != ""]
    if not values:
        return False
    numeric = sum(_to_float(v) is not None for v in values[:1000])
    return numeric >= 0.5 * min(len(values), 1000)


def _to_float(value) -> float | None:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return 1.0 if text.lower() == "true" else 0.0
    try:
        return float(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Stage 2: parsing one raw record
# --------------------------------------------------------------------------------------------------


def parse_raw_record(raw: RawRecord, options: ImportOptions | None = None) -> list[ParsedRecord | ImportIssue]:
    """Parse, check and describe the structures of one raw record. Never raises: whatever goes wrong
    (a library's own exception, even MemoryError or RecursionError) becomes an issue for this record,
    so one record never aborts an import."""
    options = options or ImportOptions()
    try:
        return _parse_raw_record(raw, options)
    except Exception as exc:
        return [ImportIssue(raw.source, f"cannot read this record ({type(exc).__name__}: {_short(exc)})")]


def _parse_raw_record(raw: RawRecord, options: ImportOptions) -> list[ParsedRecord | ImportIssue]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = _PARSERS[raw.fmt](raw, options)
    except CrystalStudioError as exc:
        return [ImportIssue(raw.source, str(exc))]
    except Exception as exc:  # parsers raise anything on garbage; report it as the record's reason
        return [ImportIssue(raw.source, f"unparsable {raw.fmt.upper()} ({_short(exc)})")]
    out: list[ParsedRecord | ImportIssue] = []
    for suffix, structure, extra_props, name in items:
        source = raw.source + suffix
        if isinstance(structure, ImportIssue):
            out.append(structure)
            continue
        out.append(_finish(source, name or raw.name, structure, {**raw.properties, **extra_props}, raw.meta, options))
    if not out:
        out.append(ImportIssue(raw.source, "no structure found"))
    return out


def _finish(source: str, name: str | None, structure: Structure, raw_properties: dict[str, object],
            meta: dict[str, str], options: ImportOptions) -> ParsedRecord | ImportIssue:
    """The checked, described record of one structure, or the issue that rejects it."""
    try:
        properties, notes = _parse_properties(raw_properties)
        check_site_count(len(structure), options)
        _check_elements(structure)
        structure = cs.check_structure(structure, options.ordered_approximation)
        info = cs.describe(structure, options.close_atoms_tolerance)
    except ValueError as exc:
        return ImportIssue(source, str(exc))
    except Exception as exc:  # a library failing on an odd structure rejects that structure only
        return ImportIssue(source, f"cannot check the structure ({type(exc).__name__}: {_short(exc)})")
    if not info.valid and options.reject_close_atoms:
        return ImportIssue(source, "; ".join(info.flags))
    return ParsedRecord(source, name, cs.to_json(structure), info, properties, dict(meta), notes)


def check_site_count(count: int, options: ImportOptions, what: str = "structure has") -> None:
    """Raise ValueError when ``count`` atoms exceed :attr:`ImportOptions.max_sites`."""
    if count > options.max_sites:
        raise ValueError(f"{what} {count} atoms, over the limit of {options.max_sites} per structure "
                         "(the max sites import option)")


HYDROGEN_ISOTOPES = {"D": "deuterium", "T": "tritium"}
"""Isotope symbols pymatgen would silently read as H: records holding them are rejected, so that a
structure never changes behind the user's back (models know elements, not isotopes)."""


def _check_elements(structure: Structure) -> None:
    for el in structure.composition.elements:
        symbol = getattr(el, "symbol", str(el))
        isotope = getattr(getattr(el, "element", el), "name", None)  # Element.D/T: name 'D'/'T', symbol 'H'
        if isotope in HYDROGEN_ISOTOPES:
            raise ValueError(f"hydrogen isotope '{isotope}' ({HYDROGEN_ISOTOPES[isotope]}) is not supported; "
                             "write it as H to import the structure with hydrogen")
        if not Element.is_valid_symbol(symbol) or symbol in ("X", "Xx"):
            raise ValueError(f"unknown element '{symbol}'")
        if getattr(el, "Z", 0) == 0:
            raise ValueError(f"unknown element '{symbol}'")


def _parse_properties(raw: dict[str, object]) -> tuple[dict[str, float], list[str]]:
    """Numeric properties under their canonical names, and a note for each non-finite value left out.
    Empty values are absent ones; any other non-number raises ValueError naming the property."""
    props: dict[str, float] = {}
    notes: list[str] = []
    for column, value in raw.items():
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        number = _to_float(value)
        if number is None:
            raise ValueError(f"column '{column}': value '{str(value)[:40]}' is not a number")
        if not math.isfinite(number):
            notes.append(f"column '{column}': value '{str(value).strip()[:40]}' is not a finite number; left out")
            continue
        props[canonical_name(column)] = number
    return props, notes


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _parse_cif(raw: RawRecord, options: ImportOptions):
    """Each CIF data block is one structure; simple P1 blocks take gemmi's fast path."""
    import gemmi

    try:
        doc = gemmi.cif.read_string(raw.text)
    except (ValueError, RuntimeError) as exc:
        detail = _short(exc).removeprefix("string:")
        raise CrystalStudioError(f"unparsable CIF (line {detail})") from None
    blocks = [b for b in doc if b.find_value("_cell_length_a") is not None]
    if not blocks:
        raise CrystalStudioError("unparsable CIF (no data block with a unit cell)")
    items = []
    for block in blocks:
        suffix = f" block '{block.name}'" if len(blocks) > 1 else ""
        try:
            _precheck_cif_block(block, options)
            structure = fast_cif_structure(block)
            if structure is None:
                structure = _pymatgen_cif(block.as_string())
        except ValueError as exc:
            structure = ImportIssue(raw.source + suffix, str(exc))
        except Exception as exc:
            structure = ImportIssue(raw.source + suffix, f"unparsable CIF block ({_short(exc)})")
        name = raw.name if len(blocks) == 1 else f"{raw.name}:{block.name}" if raw.name else block.name
        items.append((suffix, structure, {}, name))
    return items


_SYMMETRY_OPERATION_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz",
                            "_space_group_symop_magn_operation.xyz", "_space_group_symop_magn_centering.xyz")


def _precheck_cif_block(block, options: ImportOptions) -> None:
    """Reasons pymatgen would only report vaguely or not at all: no atom sites, unknown element
    symbols (pymatgen reads 'Uue' as U), non-finite coordinates; and work no crystal needs, refused
    before pymatgen spends it: more atom sites than ``options.max_sites``, more symmetry operations
    than :data:`MAX_SYMMETRY_OPERATIONS`."""
    for tag in _SYMMETRY_OPERATION_TAGS:
        count = len(block.find_values(tag))
        if count > MAX_SYMMETRY_OPERATIONS:
            raise ValueError(f"{count} symmetry operations in {tag}; no space group has more than "
                             f"{MAX_SYMMETRY_OPERATIONS} (192 without time reversal)")
    column = "_atom_site_type_symbol"
    symbols = list(block.find_values(column))
    if not symbols:
        column = "_atom_site_label"
        symbols = list(block.find_values(column))
    check_site_count(len(symbols), options, "CIF block lists")
    for symbol in symbols:
        _check_cif_symbol(symbol.strip("'\""), column)
    columns = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z")
    values = [list(block.find_values(c)) for c in columns]
    if not all(values):
        if not list(block.find_values("_atom_site_Cartn_x")):
            raise ValueError("no atom sites (missing _atom_site_fract_x/y/z loop)")
        return
    for column in values:
        for value in column:
            try:
                number = _cif_float(value)
            except ValueError:
                continue  # '?' and '.' are pymatgen's business
            if not math.isfinite(number):
                raise ValueError("atomic coordinates contain NaN or infinite values")


_CIF_SPECIAL_SYMBOLS = ("Hw", "Ow", "Wat", "wat", "OH", "NO3")  # water, hydroxide, nitrate: pymatgen maps them


@lru_cache(maxsize=4096)  # labels repeat across records ('O1', 'Sr1'); a hostile file's unique ones stay bounded
def _check_cif_symbol(symbol: str, column: str) -> None:
    """Accept a CIF type symbol or label only when an element symbol starts it and is not the head of a
    longer lowercase word ('Sr1', 'Fe2+', 'OW1', 'CA' pass; 'Uue', 'Uuo', 'Oxy' do not)."""
    if symbol in ("?", ".") or symbol.startswith(_CIF_SPECIAL_SYMBOLS):
        return
    letters = re.match("[A-Za-z]*", symbol).group()
    for n in (2, 1):
        if (len(letters) >= n and Element.is_valid_symbol(letters[:n].title())
                and not letters[n:n + 1].islower()):
            return
    raise ValueError(f"unknown element '{symbol}' in {column}")


def _pymatgen_cif(text: str) -> Structure:
    from pymatgen.io.cif import CifParser

    parser = CifParser.from_str(text)
    try:
        structures = parser.parse_structures(primitive=False, on_error="raise")
    except ValueError as exc:
        message = str(exc)
        if "occupanc" in message.lower():
            raise ValueError(f"invalid occupancies ({_short(exc)})") from None
        if "Invalid CIF" in message or "No structure" in message:
            detail = "; ".join(w.splitlines()[0] for w in parser.warnings[:2]) or _short(exc)
            raise ValueError(f"unparsable CIF block ({detail})") from None
        raise
    return structures[0]


_IDEAL_FRACTIONS = (1 / 3, 2 / 3)
_P1_OPS = {"x,y,z", "+x,+y,+z"}


def fast_cif_structure(block) -> Structure | None:
    """Structure from a gemmi CIF block when it is the plain kind (P1, fully occupied, known
    elements, no magnetic data); None to ask for pymatgen's full parser.

    Matches pymatgen's CifParser on such blocks: coordinates within 1e-4 of 1/3 or 2/3 are snapped,
    coordinates wrap into [0, 1), sites are sorted by electronegativity as
    pymatgen's ``get_sorted_structure`` does.
    """
    ops = [o.replace(" ", "").replace("'", "").lower() for o in block.find_values("_symmetry_equiv_pos_as_xyz")]
    ops += [o.replace(" ", "").replace("'", "").lower() for o in block.find_values("_space_group_symop_operation_xyz")]
    if not ops:  # no operators listed: P1 only if the space group says so
        names = [block.find_value(k) for k in ("_symmetry_space_group_name_H-M", "_space_group_name_H-M_alt",
                                               "_symmetry_Int_Tables_number", "_space_group_IT_number")]
        names = [n.strip("'\" ").replace(" ", "") for n in names if n]
        ops = ["x,y,z"] if names and all(n in ("P1", "1") for n in names) else []
    if not ops or any(o not in _P1_OPS for o in ops) or block.find_value("_atom_site_moment_label"):
        return None
    table = block.find("_atom_site_", ["type_symbol", "fract_x", "fract_y", "fract_z", "?occupancy"])
    if not table or not table.has_column(0):
        return None
    cell = [block.find_value(f"_cell_{k}") for k in ("length_a", "length_b", "length_c",
                                                      "angle_alpha", "angle_beta", "angle_gamma")]
    try:
        params = [_cif_float(v) for v in cell]
        species, coords = [], []
        for row in table:
            if row.has(4) and _cif_float(row[4]) != 1.0:
                return None
            symbol = row[0].strip("'\"")
            if not Element.is_valid_symbol(symbol):
                return None
            species.append(symbol)
            coords.append([_snap(_cif_float(row[k])) for k in (1, 2, 3)])
    except (ValueError, TypeError):
        return None
    if not species:
        return None
    # pymatgen sorts sites by electronegativity, then symbol (stable); do the same.
    if any(not math.isfinite(_species_key(s)[0]) for s in species):
        return None
    order = sorted(range(len(species)), key=lambda i: _species_key(species[i]))
    frac = np.array(coords)[order]
    frac -= np.floor(frac)
    return Structure(Lattice.from_parameters(*params), [species[i] for i in order], frac)


@cache
def _species_key(symbol: str) -> tuple[float, str]:
    return float(Element(symbol).X), symbol


def _cif_float(value: str | None) -> float:
    if value is None:
        raise ValueError("missing value")
    text = value.strip("'\"")
    if "(" in text:
        text = text[: text.index("(")]
    return float(text)


def _snap(x: float) -> float:
    for ideal in _IDEAL_FRACTIONS:
        if math.isclose(x / ideal, 1, abs_tol=1e-4, rel_tol=0):
            return ideal
    return x


def _parse_poscar(raw: RawRecord, options: ImportOptions):
    from pymatgen.io.vasp import Poscar

    try:
        poscar = Poscar.from_str(raw.text, read_velocities=False)
    except Exception as exc:
        raise CrystalStudioError(f"unparsable POSCAR ({_short(exc)})") from None
    return [("", poscar.structure, {}, raw.name)]


def _parse_extxyz(raw: RawRecord, options: ImportOptions):
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    _check_extxyz_counts(raw.text, options)
    try:
        frames = read(io.StringIO(raw.text), index=":", format="extxyz")
    except KeyError as exc:  # ASE looks species up in its element table
        raise CrystalStudioError(f"unparsable extended XYZ (unknown element symbol {exc})") from None
    except Exception as exc:
        raise CrystalStudioError(f"unparsable extended XYZ ({_short(exc)})") from None
    items = []
    for i, atoms in enumerate(frames):
        suffix = f" frame {i + 1}" if len(frames) > 1 else ""
        if not atoms.pbc.all() or atoms.cell.rank < 3:
            items.append((suffix, ImportIssue(raw.source + suffix, "frame has no periodic 3D cell (Lattice=...)"), {}, None))
            continue
        # numbers are properties; so is anything under a canonical property name, to be rejected if not a number
        props = {k: v for k, v in atoms.info.items() if _is_scalar(v) or canonical_name(k) in UNITS}
        name = str(atoms.info.get("name") or atoms.info.get("id") or "") or (
            f"{raw.name}:{i + 1}" if len(frames) > 1 else raw.name)
        items.append((suffix, AseAtomsAdaptor.get_structure(atoms), props, name))
    return items


def _check_extxyz_counts(text: str, options: ImportOptions) -> None:
    """Check the atom count heading each frame before ASE reads the file: ASE reads as many lines as
    a frame declares, one by one, even past the end of the file (999999999999 would run for days).
    A frame declaring more atoms than the lines that follow or than ``options.max_sites`` raises
    :class:`CrystalStudioError`. Like ASE, reading stops at a blank or non-numeric count line."""
    lines = text.removesuffix("\n").split("\n")  # ASE's lines: split at \n only
    start, frame = 0, 1
    while start < len(lines) and lines[start].strip():
        try:
            count = int(lines[start])
        except ValueError:
            return  # ASE reports a bad count line itself
        where = f"frame {frame} (line {start + 1})"
        if count < 0:  # would step back (or stand still) instead of on to the next frame
            raise CrystalStudioError(f"unparsable extended XYZ: {where} declares {count} atoms")
        try:
            check_site_count(count, options, f"{where} declares")
        except ValueError as exc:
            raise CrystalStudioError(f"unparsable extended XYZ: {exc}") from None
        available = len(lines) - start - 2
        if count > available:
            available = max(available, 0)
            raise CrystalStudioError(f"unparsable extended XYZ: {where} declares {count} atoms but the file has only "
                                     f"{available} more line{'' if available == 1 else 's'}")
        start += count + 2
        frame += 1


def _is_scalar(value) -> bool:
    """A number, not a flag: the info values of an extxyz frame that are its properties."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _parse_json(raw: RawRecord, options: ImportOptions):
    try:
        doc = json.loads(raw.text)
    except json.JSONDecodeError as exc:
        raise CrystalStudioError(f"unparsable JSON (line {exc.lineno}: {exc.msg})") from None
    entries = doc if isinstance(doc, list) else [doc]
    items = []
    for i, entry in enumerate(entries):
        suffix = f" item {i + 1}" if len(entries) > 1 else ""
        if not isinstance(entry, dict):
            items.append((suffix, ImportIssue(raw.source + suffix, "expected a pymatgen Structure object"), {}, None))
            continue
        struct_doc, props = entry.get("structure", entry), entry.get("properties", {})
        try:
            if not isinstance(props, dict):
                raise ValueError(f"'properties' must be an object of name: number, not {type(props).__name__}")
            check_site_count(len(struct_doc.get("sites", ())), options, "structure lists")
            structure = Structure.from_dict(struct_doc)
        except ValueError as exc:
            items.append((suffix, ImportIssue(raw.source + suffix, str(exc)), {}, None))
            continue
        except Exception as exc:
            items.append((suffix, ImportIssue(raw.source + suffix, f"not a pymatgen Structure ({_short(exc)})"), {}, None))
            continue
        items.append((suffix, structure, props, entry.get("name") or raw.name))
    return items


_PARSERS = {"cif": _parse_cif, "poscar": _parse_poscar, "extxyz": _parse_extxyz, "json": _parse_json}


def read_structures(paths: Iterable[str | os.PathLike], options: ImportOptions | None = None) -> tuple[
        list[ParsedRecord], list[ImportIssue]]:
    """Read everything under ``paths`` in this process: (records, issues)."""
    records, issues = [], []
    for raw in iter_raw_records(paths, options):
        results = [raw] if isinstance(raw, ImportIssue) else parse_raw_record(raw, options)
        for item in results:
            (issues if isinstance(item, ImportIssue) else records).append(item)
    return records, issues


def read_structure(path: str | os.PathLike) -> Structure:
    """The single structure in a file; raises CrystalStudioError with the reason otherwise."""
    records, issues = read_structures([path])
    if issues:
        raise CrystalStudioError(str(issues[0]))
    if len(records) != 1:
        raise CrystalStudioError(f"{path}: expected one structure, found {len(records)}")
    return records[0].structure


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

WRITE_FORMATS = {"cif": ".cif", "poscar": ".vasp", "extxyz": ".extxyz"}


def structure_text(structure: Structure, fmt: str, symmetrize: bool = False,
                   properties: dict[str, float] | None = None, comment: str = "") -> str:
    """Text of ``structure`` in ``fmt`` (cif, poscar or extxyz).

    With ``symmetrize`` the CIF is written in the space group spglib finds (symprec 0.01 Å), with the
    symmetry-refined cell, instead of P1.
    """
    if fmt == "cif":
        from pymatgen.io.cif import CifWriter

        writer = CifWriter(structure, symprec=cs.SYMPREC if symmetrize else None, significant_figures=10)
        return str(writer)
    if fmt == "poscar":
        from pymatgen.io.vasp import Poscar

        return Poscar(structure, comment=comment or structure.composition.reduced_formula).get_str(
            significant_figures=10)
    if fmt == "extxyz":
        from ase.io import write
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info.update(properties or {})
        if comment:
            atoms.info["name"] = comment
        buffer = io.StringIO()
        write(buffer, atoms, format="extxyz")
        return buffer.getvalue()
    raise CrystalStudioError(f"unknown export format '{fmt}' (choose cif, poscar or extxyz)")


def safe_filename(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, '-', '_', '.')."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return cleaned.strip("._") or "structure"


def write_structure_files(items: Iterable[tuple[str, Structure, dict[str, float]]], out_dir: str | os.PathLike,
                          fmt: str, symmetrize: bool = False, overwrite: bool = False,
                          progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> list[Path]:
    """Write one file per (name, structure, properties) into ``out_dir``; returns the paths.

    Existing files are refused before anything is written unless ``overwrite``. Each file goes
    through :func:`atomic_output`, so a failure never leaves a half-written file.
    """
    if fmt not in WRITE_FORMATS:
        raise CrystalStudioError(f"unknown export format '{fmt}' (choose cif, poscar or extxyz)")
    items = list(items)
    out = ensure_folder(Path(out_dir))
    targets = [out / (safe_filename(name) + WRITE_FORMATS[fmt]) for name, _, _ in items]
    check_new_outputs(targets, overwrite)
    for i, ((name, structure, props), target) in enumerate(zip(items, targets, strict=True), 1):
        if cancel is not None:
            cancel.check()
        text = structure_text(structure, fmt, symmetrize, props, comment=name)
        with atomic_output(target) as fh:
            fh.write(text.encode("utf-8"))
        progress(ProgressEvent(i, len(items), "writing"))
    return targets


def ensure_folder(folder: Path) -> Path:
    """``folder``, created with its parents when missing; failing is a :class:`CrystalStudioError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or str(exc)
        raise CrystalStudioError(f"cannot create output folder {folder}: {reason}") from None
    return folder


def check_new_outputs(targets: list[Path], overwrite: bool) -> None:
    """Refuse two outputs with one name and, unless ``overwrite``, outputs that exist already (a
    symlink counts, even a dangling one) with :class:`OutputExistsError`."""
    twice = sorted(name for name, count in Counter(t.name for t in targets).items() if count > 1)
    if twice:
        raise CrystalStudioError(f"two outputs would both be named {', '.join(twice[:5])}; nothing was written")
    existing = [t for t in targets if os.path.lexists(t)] if not overwrite else []
    if existing:
        shown = ", ".join(str(t) for t in existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise OutputExistsError(f"{shown}: already exist{'s' if len(existing) == 1 else ''}; nothing was written")


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[io.BufferedWriter]:
    """A new file to write ``target``'s content into, renamed onto ``target`` when the block succeeds
    and removed when it fails. It is created exclusively under a random name beside ``target``, so a
    symlink planted there is never followed; the rename replaces a link at ``target``, never its
    destination. OS errors become :class:`CrystalStudioError` naming ``target``."""
    tmp = target.with_name(f"{target.name}.{secrets.token_hex(8)}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise CrystalStudioError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CrystalStudioError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
