"""The project store: one SQLite file (WAL mode) per project, built with sqlite-utils.

Each thread gets its own connection; writes go through :meth:`Project.transaction`, which holds a
process-wide write lock and an immediate SQLite transaction, so readers never see half a write and
writers never hit "database is locked" (another process writing for longer than :data:`BUSY_TIMEOUT_S`
is reported as a lock held elsewhere). SQLite errors the file or disk causes reach the user as a
:class:`ProjectError` saying which (:func:`storage_error`), and nothing is written into a file
``quick_check`` finds damaged.

A project can be opened read-only (``Project.open(path, read_only=REASON)``): its connections are
SQLite read-only ones and every write is refused with the reason, nothing changed. That is how a
project made by a newer Crystal Studio can still be looked at, and how a second window shows a project
another running Crystal Studio has open (store/session.py). Before a migration updates an older
project its file is copied beside it (:func:`backup_before_migration`), so an update that goes wrong,
or a return to the older Crystal Studio, loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from pymatgen.core import Structure

from crystal_studio.core import structures as cs
from crystal_studio.core.errors import NotFoundError, ProjectError
from crystal_studio.core.io import ParsedRecord
from crystal_studio.store.schema import MIGRATIONS, SCHEMA_VERSION

_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()

BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's write to end before giving up."""

SORTABLE_COLUMNS = ("id", "name", "reduced_formula", "nsites", "spacegroup_number", "volume", "density", "valid")


def now() -> str:
    """Current UTC time as ISO 8601 (seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


ID_TABLES = ("datasets", "structures", "models", "runs", "candidates")
"""Tables whose ids other rows name (a training run's split names structures, an optimization its
models, a model its dataset and run): their deleted ids are never given again."""


def retire_ids(db: sqlite_utils.Database, table: str) -> None:
    """Call inside the transaction that deletes rows of ``table`` (one of :data:`ID_TABLES`), before the
    delete: its highest id becomes the table's floor, so :func:`fresh_id` keeps new rows above every id
    deleted. (SQLite alone gives MAX(id) + 1, which reuses the ids of the newest rows once deleted.)"""
    top = db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]
    if top is not None:
        db.execute("INSERT INTO id_floors (name, floor) VALUES (?, ?) "
                   "ON CONFLICT(name) DO UPDATE SET floor = MAX(floor, excluded.floor)", [table, top])


def fresh_id(db: sqlite_utils.Database, table: str) -> int | None:
    """The id the next row of ``table`` must be given to stay above every deleted id; None when SQLite's
    own choice does (nothing deleted, or newer rows exist already)."""
    try:
        row = db.execute("SELECT floor FROM id_floors WHERE name = ?", [table]).fetchone()
    except sqlite3.OperationalError:  # a project before schema 6, opened without migrating
        return None
    if row is None:
        return None
    top = db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
    return int(row[0]) + 1 if top < row[0] else None


def with_fresh_id(db: sqlite_utils.Database, table: str, row: dict) -> dict:
    """``row`` with the id :func:`fresh_id` asks for, when it asks for one."""
    new_id = fresh_id(db, table)
    return row if new_id is None else {"id": new_id, **row}


@dataclass
class StructureQuery:
    """A filter and sort over the structures of a project (all fields optional)."""

    dataset: str | None = None
    formula: str | None = None  # substring of the reduced formula (case-sensitive, e.g. "TiO3")
    elements_all: list[str] = field(default_factory=list)  # contains every one of these
    elements_any: list[str] = field(default_factory=list)  # contains at least one of these
    elements_none: list[str] = field(default_factory=list)  # contains none of these
    nsites_min: int | None = None
    nsites_max: int | None = None
    spacegroup: int | None = None  # international number
    property_ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    valid_only: bool = False
    ids: list[int] | None = None
    reduced_formulas: list[str] | None = None  # exact reduced formulas, e.g. ["SrTiO3"]
    sort: str = "id"  # a column of SORTABLE_COLUMNS or a property name
    descending: bool = False


@dataclass
class DatasetSummary:
    name: str
    count: int
    source: str
    description: str
    created: str
    metadata: dict
    properties: dict[str, dict[str, float]]  # name -> {count, min, max}

    def as_json(self) -> dict:
        return {"name": self.name, "count": self.count, "source": self.source, "description": self.description,
                "created": self.created, "metadata": self.metadata, "properties": self.properties}


PROJECT_TABLES = {"datasets", "structures", "properties"}
"""Tables every project has since schema 1; a database without them is not a project."""


def _read_only_reason(path: Path) -> str | None:
    """Why the readable project file ``path`` cannot be written (its file system, its folder or the file
    itself), None when it can be written or cannot even be read."""
    folder = path.resolve().parent
    if path.exists() and not os.access(path, os.R_OK):
        return None
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
        return "it is on a read-only file system"
    if not os.access(folder, os.W_OK):
        return "its folder is read-only"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    return None


def damaged(detail: object, path: Path | None = None) -> ProjectError:
    """The error for a damaged project file (at ``path`` when known)."""
    where = f"{path}: the project file" if path else "the project file"
    return ProjectError(f"{where} is damaged ({detail}); nothing was written to it: restore it from a backup")


def storage_error(path: Path, exc: sqlite3.Error) -> ProjectError | None:
    """A :class:`ProjectError` saying what went wrong for an SQLite error the project's file or disk
    causes (read-only, disk full, locked by another process, damaged); None for any other error."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        reason = _read_only_reason(path)
        if reason is None:
            return ProjectError(f"{path}: cannot open or write the project file ({exc})")
        if code == sqlite3.SQLITE_CANTOPEN and not path.exists():
            return ProjectError(f"{path}: cannot create the project: {reason}")
        if code == sqlite3.SQLITE_CANTOPEN:
            return ProjectError(f"{path}: cannot open the project: {reason} (SQLite writes beside a project even "
                                "to read it: copy it to a writable folder)")
        return ProjectError(f"{path}: the project is read-only ({reason}); nothing was changed")
    if code == sqlite3.SQLITE_FULL:
        return ProjectError(f"{path}: the disk is full ({exc}); nothing was changed: free some space and try again")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return ProjectError(f"{path}: the project is locked by another process (waited {BUSY_TIMEOUT_S:g} s); "
                            "nothing was changed: try again when it has finished")
    if code == sqlite3.SQLITE_CORRUPT:
        return damaged(exc, path)
    if code == sqlite3.SQLITE_IOERR:
        return ProjectError(f"{path}: cannot read or write the project file ({exc})")
    return None


def _project_version(path: Path) -> int:
    """Schema version of the project file ``path``, read on a read-only connection (no schema, no WAL
    switch); :class:`ProjectError` when the file is not a Crystal Studio project or its version is not
    one Crystal Studio ever wrote."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise storage_error(path, exc) or ProjectError(f"{path}: not a Crystal Studio project ({exc})") from None
    if not PROJECT_TABLES <= tables:
        what = "an empty file" if path.stat().st_size == 0 else "an SQLite database without the project tables"
        raise ProjectError(f"{path}: not a Crystal Studio project ({what}); nothing was changed")
    if version < 1:
        raise ProjectError(f"{path}: damaged project: its schema version is {version} (Crystal Studio writes 1 to "
                           f"{SCHEMA_VERSION}); nothing was changed")
    return version


class NewerSchemaError(ProjectError):
    """The project was made by a newer Crystal Studio (its schema version is above :data:`SCHEMA_VERSION`);
    it can still be opened read-only."""

    def __init__(self, path: Path, version: int):
        super().__init__(f"{path}: made by a newer Crystal Studio (schema {version} > {SCHEMA_VERSION}); update "
                         "Crystal Studio to change it (it can be opened read-only); nothing was changed")
        self.version = version


def backup_path(path: Path, version: int) -> Path:
    """Where the copy of project ``path`` at schema ``version`` is kept before a migration updates it:
    ``NAME.schemaV-backup.sqlite`` beside it (``-2``, ``-3``… when that name is taken)."""
    stem = f"{path.name}.schema{version}-backup"
    candidate, n = path.with_name(stem + ".sqlite"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{stem}-{n}.sqlite")
    return candidate


def backup_before_migration(path: Path, version: int) -> Path:
    """Copy project ``path`` (schema ``version``, committed WAL content included) to :func:`backup_path`
    with SQLite's online backup; :class:`ProjectError` (nothing changed, no partial copy left) when it
    cannot be written, e.g. on a full disk or in a read-only folder."""
    target = backup_path(path, version)
    tmp = target.with_name(target.name + ".part")
    try:
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            copy = sqlite3.connect(tmp)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
        os.replace(tmp, target)
    except (sqlite3.Error, OSError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ProjectError(f"{path}: cannot back up the project before updating it from schema {version} to "
                           f"{SCHEMA_VERSION} ({getattr(exc, 'strerror', None) or exc}); nothing was changed") from None
    return target


class Project:
    """An open project file. Use :meth:`create` or :meth:`open`.

    ``read_only`` (a reason, e.g. "made by a newer Crystal Studio") opens it with read-only SQLite
    connections; :meth:`transaction` then refuses every write with that reason."""

    def __init__(self, path: Path, read_only: str | None = None):
        self.path = Path(path)
        self.read_only = read_only
        self.migration_backup: Path | None = None  # the copy kept by the last migration of this open
        self._local = threading.local()
        self._checked = False  # whether quick_check passed (run before the first write)
        with _WRITE_LOCKS_GUARD:
            self._write_lock = _WRITE_LOCKS.setdefault(str(self.path.resolve()), threading.RLock())

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def create(cls, path: str | Path) -> Project:
        """Create a new, empty project file; refuses to overwrite an existing file."""
        path = Path(path)
        if path.exists():
            raise ProjectError(f"{path}: already exists (open it, or choose another name)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"{path}: cannot create folder ({exc.strerror or exc})") from None
        project = cls(path)
        project.migrate()
        return project

    @classmethod
    def open(cls, path: str | Path, migrate: bool = True, read_only: str | None = None) -> Project:
        """Open an existing project, applying pending migrations (after a backup copy of the file, see
        :func:`backup_before_migration`; its path is kept in :attr:`migration_backup`) and marking runs
        whose process died ``interrupted`` (unless ``migrate`` is False). A file that is not a project
        (empty, another program's SQLite database) is refused before anything is written to it; one from
        a newer Crystal Studio raises :class:`NewerSchemaError` unless opened ``read_only`` (a reason)."""
        from crystal_studio.store.models import interrupt_stale_runs  # that module imports this one

        path = Path(path)
        if not path.is_file():
            raise ProjectError(f"{path}: no such project file (create one with 'crystal-studio new')")
        version = _project_version(path)
        project = cls(path, read_only=read_only)
        if read_only:
            return project
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(path, version)
        if migrate:
            if version < SCHEMA_VERSION:
                project.migration_backup = backup_before_migration(path, version)
                project.migrate()
            interrupt_stale_runs(project)
        return project

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=True)
                conn.execute("PRAGMA query_only=ON")
                return conn
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise (storage_error(self.path, exc)
                   or ProjectError(f"{self.path}: not a Crystal Studio project ({exc})")) from None
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's sqlite-utils handle on the project."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite_utils.Database(self._connect())
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    @property
    def schema_version(self) -> int:
        try:
            return int(self.db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise ProjectError(f"{self.path}: not a Crystal Studio project ({exc})") from None

    def migrate(self, target: int = SCHEMA_VERSION) -> None:
        """Apply forward migrations up to ``target``, each in its own transaction."""
        for version in range(self.schema_version + 1, target + 1):
            try:
                with self.transaction() as db:
                    MIGRATIONS[version](db)
                    db.execute(f"PRAGMA user_version = {version}")
            except sqlite3.OperationalError as exc:  # e.g. a table it adds exists: the version is wrong
                raise ProjectError(f"{self.path}: damaged project: cannot update it from schema {version - 1} to "
                                   f"{version} ({exc}); it stays at schema {version - 1}") from None

    def _check_integrity(self) -> None:
        """ProjectError when SQLite's ``quick_check`` finds the file damaged (so nothing writes into it)."""
        try:
            problems = [row[0] for row in self.db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            raise damaged("; ".join(problems), self.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """An immediate write transaction, committed on success and rolled back on any exception.

        The first write of a :class:`Project` checks the file for damage first. An SQLite error the
        file or disk causes (read-only, full, locked, damaged) becomes a :class:`ProjectError`.
        """
        if self.read_only:
            raise ProjectError(f"{self.path}: the project is open read-only ({self.read_only}); nothing was changed")
        db = self.db
        with self._write_lock:
            if not self._checked:
                self._check_integrity()
                self._checked = True
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    db.rollback()  # a no-op when the error already ended the transaction (a full disk does)
                    raise
            except sqlite3.Error as exc:
                error = storage_error(self.path, exc)
                if error is None:
                    raise
                raise error from None

    # ---------------------------------------------------------------- datasets

    def dataset_id(self, name: str, create: bool = False, source: str = "", description: str = "",
                   metadata: dict | None = None) -> int:
        """Id of the dataset called ``name`` (created if ``create``; must be inside a transaction then)."""
        row = self.db.execute("SELECT id FROM datasets WHERE name = ?", [name]).fetchone()
        if row:
            return int(row[0])
        if not create:
            raise NotFoundError(f"no dataset named '{name}' in {self.path.name} "
                                f"(have: {', '.join(self.dataset_names()) or 'none'})")
        return int(self.db["datasets"].insert(with_fresh_id(self.db, "datasets", {
            "name": name, "source": source, "description": description,
            "metadata": json.dumps(metadata or {}), "created": now()})).last_pk)

    def dataset_names(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM datasets ORDER BY id")]

    def datasets(self) -> list[DatasetSummary]:
        """Every dataset with its structure count and per-property count/min/max."""
        out = []
        for ds in self.db.query("SELECT * FROM datasets ORDER BY id"):
            count = self.db.execute("SELECT COUNT(*) FROM structures WHERE dataset_id = ?", [ds["id"]]).fetchone()[0]
            props = {
                name: {"count": n, "min": lo, "max": hi}
                for name, n, lo, hi in self.db.execute(
                    "SELECT p.name, COUNT(*), MIN(p.value), MAX(p.value) FROM properties p "
                    "JOIN structures s ON s.id = p.structure_id WHERE s.dataset_id = ? GROUP BY p.name ORDER BY p.name",
                    [ds["id"]])
            }
            out.append(DatasetSummary(ds["name"], count, ds["source"] or "", ds["description"] or "",
                                      ds["created"] or "", json.loads(ds["metadata"] or "{}"), props))
        return out

    def add_records(self, dataset: str, records: Iterable[ParsedRecord], source: str = "",
                    description: str = "", metadata: dict | None = None) -> int:
        """Insert parsed records into ``dataset`` (created if new) in one transaction; returns the count."""
        with self.transaction() as db:
            return self.insert_records(db, dataset, records, source, description, metadata)

    def insert_records(self, db: sqlite_utils.Database, dataset: str, records: Iterable[ParsedRecord],
                       source: str = "", description: str = "", metadata: dict | None = None) -> int:
        """Like :meth:`add_records` but inside the caller's transaction ``db``."""
        dataset_id = self.dataset_id(dataset, create=True, source=source, description=description, metadata=metadata)
        cur = db.conn.cursor()
        count = 0
        prop_rows = []
        first_id = fresh_id(db, "structures")  # the rest follow it (MAX(id) + 1)
        for rec in records:
            info = rec.info
            lo, hi = cs.element_mask(info.elements)
            cur.execute(
                "INSERT INTO structures (id, dataset_id, name, source, formula, reduced_formula, elements, nsites, "
                "spacegroup_number, spacegroup_symbol, volume, density, valid, flags, meta, structure, "
                "el_mask_lo, el_mask_hi, min_distance) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (first_id if count == 0 else None, dataset_id, rec.name, rec.source, info.formula, info.reduced_formula, json.dumps(info.elements),
                 info.nsites, info.spacegroup_number, info.spacegroup_symbol, info.volume, info.density,
                 int(info.valid), json.dumps(info.flags), json.dumps(rec.meta), rec.structure_json, lo, hi,
                 info.min_distance if info.min_distance != float("inf") else None))
            sid = cur.lastrowid
            prop_rows.extend((sid, name, value, "import") for name, value in rec.properties.items())
            count += 1
        cur.executemany("INSERT INTO properties (structure_id, name, value, source) VALUES (?,?,?,?)", prop_rows)
        return count

    # ---------------------------------------------------------------- structure queries

    def _where(self, q: StructureQuery) -> tuple[str, list]:
        clauses, params = [], []
        if q.dataset is not None:
            clauses.append("s.dataset_id = ?")
            params.append(self.dataset_id(q.dataset))
        if q.formula:
            clauses.append("s.reduced_formula LIKE ? ESCAPE '\\'")
            escaped = q.formula.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        if q.elements_all:
            lo, hi = cs.element_mask(q.elements_all)
            clauses.append("(s.el_mask_lo & ?) = ? AND (s.el_mask_hi & ?) = ?")
            params += [lo, lo, hi, hi]
        if q.elements_any:
            lo, hi = cs.element_mask(q.elements_any)
            clauses.append("((s.el_mask_lo & ?) != 0 OR (s.el_mask_hi & ?) != 0)")
            params += [lo, hi]
        if q.elements_none:
            lo, hi = cs.element_mask(q.elements_none)
            clauses.append("(s.el_mask_lo & ?) = 0 AND (s.el_mask_hi & ?) = 0")
            params += [lo, hi]
        if q.nsites_min is not None:
            clauses.append("s.nsites >= ?")
            params.append(q.nsites_min)
        if q.nsites_max is not None:
            clauses.append("s.nsites <= ?")
            params.append(q.nsites_max)
        if q.spacegroup is not None:
            clauses.append("s.spacegroup_number = ?")
            params.append(q.spacegroup)
        if q.valid_only:
            clauses.append("s.valid = 1")
        if q.ids is not None:
            clauses.append(f"s.id IN ({','.join('?' * len(q.ids))})")
            params += list(q.ids)
        if q.reduced_formulas is not None:
            clauses.append(f"s.reduced_formula IN ({','.join('?' * len(q.reduced_formulas))})")
            params += list(q.reduced_formulas)
        # When an indexed filter already narrows the rows (space group, ids, formulas), probing each row's
        # property is far cheaper than listing every structure in the property range; otherwise the
        # (name, value) index makes the range list the cheaper side.
        narrow = q.spacegroup is not None or q.ids is not None or q.reduced_formulas is not None
        for name, (lo, hi) in q.property_ranges.items():
            cond, cparams = ["p.name = ?"], [name]
            if lo is not None:
                cond.append("p.value >= ?")
                cparams.append(lo)
            if hi is not None:
                cond.append("p.value <= ?")
                cparams.append(hi)
            if narrow:
                clauses.append(f"EXISTS (SELECT 1 FROM properties p WHERE p.structure_id = s.id AND {' AND '.join(cond)})")
            else:
                clauses.append(f"s.id IN (SELECT p.structure_id FROM properties p WHERE {' AND '.join(cond)})")
            params += cparams
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def count(self, query: StructureQuery | None = None) -> int:
        where, params = self._where(query or StructureQuery())
        return int(self.db.execute(f"SELECT COUNT(*) FROM structures s{where}", params).fetchone()[0])

    def page(self, query: StructureQuery | None = None, offset: int = 0, limit: int = 100,
             with_properties: bool = True) -> list[dict]:
        """One page of structure rows (no structure JSON) matching ``query``, in its sort order.

        Each row has the derived columns and, with ``with_properties``, a ``properties`` dict.
        """
        q = query or StructureQuery()
        where, params = self._where(q)
        direction = "DESC" if q.descending else "ASC"
        # Two steps: pick the page's ids (and sort key) from the filter indexes alone, then read just those
        # rows. Sorting every match with its full row read the structures' overflow pages (a property-sorted
        # page over 100k structures took 120 ms; this way under 50 ms, docs/benchmarks.md).
        join = ""
        if q.sort in SORTABLE_COLUMNS:
            key, nulls_last = f"s.{q.sort}", False  # SQLite's own order: NULL first ascending
        else:
            key, nulls_last = "sp.value", True  # structures without the property come last either way
            join = " LEFT JOIN properties sp ON sp.structure_id = s.id AND sp.name = ?"
            params = [q.sort, *params]

        def order(sort_key: str, row_id: str) -> str:
            return f"{f'{sort_key} IS NULL, ' if nulls_last else ''}{sort_key} {direction}, {row_id}"

        pick = (f"SELECT s.id AS id, {key} AS sort_key FROM structures s{join}{where} "
                f"ORDER BY {order(key, 's.id')} LIMIT ? OFFSET ?")
        sql = (
            "SELECT s.id, s.name, s.formula, s.reduced_formula, s.elements, s.nsites, s.spacegroup_number, "
            "s.spacegroup_symbol, s.volume, s.density, s.valid, s.flags, s.min_distance, d.name AS dataset "
            f"FROM ({pick}) AS pick JOIN structures s ON s.id = pick.id JOIN datasets d ON d.id = s.dataset_id "
            f"ORDER BY {order('pick.sort_key', 'pick.id')}"
        )
        rows = [dict(r) for r in self.db.query(sql, [*params, limit, offset])]
        for row in rows:
            row["elements"] = json.loads(row["elements"])
            row["flags"] = json.loads(row["flags"] or "[]")
            row["valid"] = bool(row["valid"])
        if with_properties and rows:
            props = self.properties_of([r["id"] for r in rows])
            for row in rows:
                row["properties"] = props.get(row["id"], {})
        return rows

    def ids(self, query: StructureQuery | None = None) -> list[int]:
        """Every structure id matching ``query`` (in id order)."""
        where, params = self._where(query or StructureQuery())
        return [r[0] for r in self.db.execute(f"SELECT s.id FROM structures s{where} ORDER BY s.id", params)]

    def properties_of(self, ids: list[int]) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for chunk_start in range(0, len(ids), 900):
            chunk = ids[chunk_start:chunk_start + 900]
            for sid, name, value in self.db.execute(
                    f"SELECT structure_id, name, value FROM properties WHERE structure_id IN ({','.join('?' * len(chunk))})",
                    chunk):
                out.setdefault(sid, {})[name] = value
        return out

    def property_values(self, name: str, query: StructureQuery | None = None) -> list[tuple[int, float]]:
        """(structure id, value) of one property over the structures matching ``query``."""
        where, params = self._where(query or StructureQuery())
        return self.db.execute(
            f"SELECT s.id, p.value FROM structures s JOIN properties p ON p.structure_id = s.id AND p.name = ?{where}",
            [name, *params]).fetchall()

    def structure(self, structure_id: int) -> Structure:
        row = self.db.execute("SELECT structure FROM structures WHERE id = ?", [structure_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no structure with id {structure_id} in {self.path.name}")
        return cs.from_json(row[0])

    def iter_structures(self, query: StructureQuery) -> Iterator[tuple[dict, Structure]]:
        """(row, structure) for every structure matching ``query``, in id order."""
        ids = self.ids(query)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.page(StructureQuery(ids=chunk), limit=len(chunk))
            texts = dict(self.db.execute(
                f"SELECT id, structure FROM structures WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall())
            for row in rows:
                yield row, cs.from_json(texts[row["id"]])

    # ---------------------------------------------------------------- overview

    def info(self) -> dict:
        """Counts of everything in the project, for `crystal-studio info`."""
        tables = ("datasets", "structures", "properties", "models", "runs", "candidates", "specs")
        counts = {t: self.db[t].count for t in tables}
        return {
            "path": str(self.path.resolve()),
            "schema_version": self.schema_version,
            "size_bytes": self.path.stat().st_size,
            "counts": counts,
            "datasets": [{"name": d.name, "count": d.count} for d in self.datasets()],
        }
