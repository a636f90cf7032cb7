"""A table model over the structures of a project that loads rows page by page in the background.

The store answers "page k of this query in this order" with SQL; on 100,000 rows a deep page sorted
by a property takes a few hundred milliseconds, so pages are fetched by a loader thread (SQLite
releases the GIL while it works) and the view shows a placeholder until they arrive. Pages are kept
in a small LRU cache; the most recently requested page is loaded first, so fast scrolling never
queues up work for rows that are no longer visible.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, QThread, Signal

from crystal_studio.core.properties import unit_of
from crystal_studio.store.project import Project, StructureQuery

PAGE_SIZE = 200
MAX_CACHED_PAGES = 40
PLACEHOLDER = "…"
ROW_ROLE = Qt.ItemDataRole.UserRole + 1  # the whole row dict of the store
ID_ROLE = Qt.ItemDataRole.UserRole + 2  # the structure id
_ANSWERED_ROLES = frozenset({Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.TextAlignmentRole, ROW_ROLE, ID_ROLE,
                             Qt.ItemDataRole.ToolTipRole})
_LEFT_ALIGNED = frozenset({"reduced_formula", "spacegroup", "dataset"})
_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


@dataclass(frozen=True)
class Column:
    """One table column: header text and the store field or property it shows."""

    key: str  # a row field, or a property name when ``is_property``
    header: str
    sort_key: str | None  # what StructureQuery.sort takes for this column (None: not sortable)
    is_property: bool = False


BASE_COLUMNS = (
    Column("id", "ID", "id"),
    Column("reduced_formula", "Formula", "reduced_formula"),
    Column("nsites", "Sites", "nsites"),
    Column("spacegroup", "Space group", "spacegroup_number"),
    Column("volume", "Volume (Å³)", "volume"),
    Column("density", "Density (g/cm³)", "density"),
    Column("dataset", "Dataset", None),
)


def property_column(name: str) -> Column:
    """The column showing property ``name``, its unit in the header."""
    unit = unit_of(name)
    return Column(name, f"{name} ({unit})" if unit else name, name, is_property=True)


def format_value(value: object) -> str:
    """Table text of one cell value."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class _PageLoader(QThread):
    """Loads count and pages for the model, newest request first, on its own store connection."""

    counted = Signal(int, int)  # generation, row count
    page_loaded = Signal(int, int, list)  # generation, page index, rows
    failed = Signal(int, str)  # generation, message

    def __init__(self, project: Project, parent: QObject | None = None):
        super().__init__(parent)
        self._project = project
        self._cond = threading.Condition()
        self._query: StructureQuery | None = None
        self._generation = 0
        self._count_wanted = False
        self._wanted: list[int] = []  # page indices, most recent last
        self._in_flight: int | None = None
        self._stop = False

    def set_query(self, generation: int, query: StructureQuery) -> None:
        with self._cond:
            self._generation, self._query = generation, query
            self._count_wanted, self._wanted = True, []
            self._cond.notify()

    def request(self, generation: int, page: int) -> None:
        with self._cond:
            if generation != self._generation or page == self._in_flight:
                return
            if page in self._wanted:
                self._wanted.remove(page)
            self._wanted.append(page)
            del self._wanted[:-8]  # only the pages of the last few paints matter
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.wait()

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stop and not self._count_wanted and not self._wanted:
                        self._cond.wait()
                    if self._stop:
                        return
                    generation, query = self._generation, self._query
                    if self._count_wanted:
                        self._count_wanted, page = False, None
                    else:
                        page = self._wanted.pop()
                    self._in_flight = page
                try:
                    if page is None:
                        self.counted.emit(generation, self._project.count(query))
                    else:
                        rows = self._project.page(query, page * PAGE_SIZE, PAGE_SIZE)
                        self.page_loaded.emit(generation, page, rows)
                except Exception as exc:  # noqa: BLE001 - reported to the GUI, the loader keeps going
                    self.failed.emit(generation, str(exc))
                finally:
                    with self._cond:
                        self._in_flight = None
        finally:
            self._project.close()


class StructureTableModel(QAbstractTableModel):
    """Rows of ``project`` matching a :class:`StructureQuery`, fetched lazily in pages.

    Signals: :attr:`reloaded` after a new query's row count is known (the table is then reset),
    :attr:`page_ready` whenever a page has arrived.
    """

    reloaded = Signal(int)  # row count
    page_ready = Signal(int)  # page index
    load_failed = Signal(str)

    def __init__(self, project: Project, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.query = StructureQuery()
        self.columns: list[Column] = list(BASE_COLUMNS)
        self._rows = 0
        self._pages: OrderedDict[int, list[dict]] = OrderedDict()
        self._generation = 0
        self._loading = False
        self._loader = _PageLoader(project)
        self._loader.counted.connect(self._on_counted)
        self._loader.page_loaded.connect(self._on_page)
        self._loader.failed.connect(self._on_failed)
        self._loader.start()

    # ---------------------------------------------------------------- public API

    @property
    def loading(self) -> bool:
        """True between :meth:`set_query` and the arrival of the new row count."""
        return self._loading

    def set_properties(self, names: list[str]) -> None:
        """Show one column per property in ``names`` after the fixed columns."""
        self.beginResetModel()
        self.columns = list(BASE_COLUMNS) + [property_column(n) for n in names]
        self.endResetModel()

    def set_query(self, query: StructureQuery) -> None:
        """Show the rows matching ``query`` (its sort included); loading happens in the background."""
        self.query = query
        self._generation += 1
        self._loading = True
        self._loader.set_query(self._generation, dataclasses.replace(query))

    def row_data(self, row: int) -> dict | None:
        """The store's row dict at ``row`` if its page is loaded (else None, and the page is requested)."""
        page, offset = divmod(row, PAGE_SIZE)
        rows = self._pages.get(page)
        if rows is None:
            self._request(page)
            return None
        self._pages.move_to_end(page)
        return rows[offset] if offset < len(rows) else None

    def close(self) -> None:
        """Stop the loader thread (call before the project closes)."""
        self._loader.stop()

    # ---------------------------------------------------------------- Qt model interface

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.columns):
            column = self.columns[section]
            if role == Qt.ItemDataRole.DisplayRole:
                return column.header
            if role == Qt.ItemDataRole.ToolTipRole:
                return "Click to sort" if column.sort_key else None
        if orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return str(section + 1)
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or role not in _ANSWERED_ROLES:
            return None
        return self._value(index.row(), self.columns[index.column()], role)

    def multiData(self, index: QModelIndex, roles) -> None:  # noqa: N802 - Qt's name
        """All the roles a view asks of one cell, in one call (Qt's delegates ask for seven per cell).

        A scroll step of the Datasets table made 1,595 ``data`` calls and now makes 228 of these: every
        call from Qt into Python must take the GIL, which a job thread running Python may be holding
        (see :mod:`crystal_studio.gui.table_view`, issue 15)."""
        if not index.isValid():
            return
        column = self.columns[index.column()]
        for item in roles:
            role = item.role()
            if role in _ANSWERED_ROLES:
                value = self._value(index.row(), column, role)
                if value is not None:
                    item.setData(value)

    def _value(self, row_number: int, column: Column, role: int):
        """What the cell of ``column`` at ``row_number`` shows for ``role`` (one of :data:`_ANSWERED_ROLES`)."""
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _LEFT if column.key in _LEFT_ALIGNED else _RIGHT
        row = self.row_data(row_number)
        if row is None:
            return PLACEHOLDER if role == Qt.ItemDataRole.DisplayRole else None
        if role == ROW_ROLE:
            return row
        if role == ID_ROLE:
            return row["id"]
        if role == Qt.ItemDataRole.ToolTipRole:
            return ", ".join(row["flags"]) if row.get("flags") else None
        if column.is_property:
            return format_value(row.get("properties", {}).get(column.key))
        if column.key == "spacegroup":
            number = row.get("spacegroup_number")
            return f"{row.get('spacegroup_symbol') or '?'} ({number})" if number else "—"
        return format_value(row.get(column.key))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Re-query in the order of ``column`` (a no-op for columns that cannot be sorted)."""
        if not 0 <= column < len(self.columns) or self.columns[column].sort_key is None:
            return
        query = dataclasses.replace(self.query, sort=self.columns[column].sort_key,
                                    descending=order == Qt.SortOrder.DescendingOrder)
        self.set_query(query)

    # ---------------------------------------------------------------- loader callbacks

    def _request(self, page: int) -> None:
        if not self._loading:
            self._loader.request(self._generation, page)

    def _on_counted(self, generation: int, count: int) -> None:
        if generation != self._generation:
            return
        self.beginResetModel()
        self._rows = count
        self._pages.clear()
        self._loading = False
        self.endResetModel()
        self.reloaded.emit(count)

    def _on_page(self, generation: int, page: int, rows: list) -> None:
        if generation != self._generation:
            return
        self._pages[page] = rows
        while len(self._pages) > MAX_CACHED_PAGES:
            self._pages.popitem(last=False)
        first = page * PAGE_SIZE
        last = min(first + len(rows), self._rows) - 1
        if last >= first:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.columns) - 1))
        self.page_ready.emit(page)

    def _on_failed(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self._loading = False
            self.load_failed.emit(message)
