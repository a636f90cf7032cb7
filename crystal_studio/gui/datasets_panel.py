"""The Datasets panel: dataset list, filter bar and the paged structure table.

It owns the :class:`~crystal_studio.gui.structure_model.StructureTableModel` of the open project and
announces what the user picks: :attr:`DatasetsPanel.current_changed` (the structure under the
cursor), :attr:`DatasetsPanel.selection_changed` (the selected structure ids) and
:attr:`DatasetsPanel.query_changed` (the dataset and filters, for the plots).

The dataset list's context menu (:attr:`DatasetsPanel.dataset_menu`; F2 and Delete on the list) renames
and deletes the current dataset (:mod:`crystal_studio.store.edit`), the deletion after a confirmation
that says what goes with it; :attr:`DatasetsPanel.datasets_changed` then tells the window.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QItemSelection, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QDoubleValidator, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.properties import unit_of
from crystal_studio.gui import edit_dialogs
from crystal_studio.gui.jobs import show_error
from crystal_studio.gui.periodic_table import ElementFilterButton
from crystal_studio.gui.structure_model import ID_ROLE, StructureTableModel
from crystal_studio.gui.table_view import ResponsiveTableView
from crystal_studio.store import edit as store_edit
from crystal_studio.store.project import DatasetSummary, Project, StructureQuery

ALL_DATASETS = "All datasets"
FILTER_DELAY_MS = 250


def _number(text: str) -> float | None:
    """A float from a line edit ('' → None; accepts a comma as decimal separator)."""
    text = text.strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


class PropertyRangeEditor(QWidget):
    """Property combo with min/max fields; keeps one range per property. Emits :attr:`changed`."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.ranges: dict[str, tuple[float | None, float | None]] = {}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.setToolTip("Property to filter on")
        self.combo.setMinimumContentsLength(14)
        self.low = QLineEdit()
        self.high = QLineEdit()
        for edit, word in ((self.low, "min"), (self.high, "max")):
            edit.setPlaceholderText(word)
            edit.setValidator(QDoubleValidator())
            edit.setFixedWidth(64)
            edit.editingFinished.connect(self._store)
        self.combo.currentTextChanged.connect(self._show)
        layout.addWidget(self.combo)
        layout.addWidget(self.low)
        layout.addWidget(QLabel("–"))
        layout.addWidget(self.high)

    def set_properties(self, names: list[str], stats: dict[str, dict[str, float]]) -> None:
        """Offer ``names`` (tooltips show their range in the data); drops ranges of other properties."""
        self.combo.blockSignals(True)
        current = self.combo.currentText()
        self.combo.clear()
        for name in names:
            self.combo.addItem(name)
            info = stats.get(name)
            if info:
                unit = unit_of(name)
                self.combo.setItemData(self.combo.count() - 1,
                                       f"{name}: {info['min']:.4g} … {info['max']:.4g} {unit} "
                                       f"({info['count']} values)", Qt.ItemDataRole.ToolTipRole)
        if current in names:
            self.combo.setCurrentText(current)
        self.combo.blockSignals(False)
        dropped = [n for n in self.ranges if n not in names]
        for name in dropped:
            del self.ranges[name]
        self._show(self.combo.currentText())
        if dropped:
            self.changed.emit()

    def set_range(self, name: str, low: float | None, high: float | None) -> None:
        """Set (or with both None, remove) the range of ``name`` and emit :attr:`changed`."""
        if low is None and high is None:
            self.ranges.pop(name, None)
        else:
            self.ranges[name] = (low, high)
        if self.combo.currentText() == name:
            self._show(name)
        self.changed.emit()

    def clear(self) -> None:
        self.ranges.clear()
        self._show(self.combo.currentText())

    def _show(self, name: str) -> None:
        low, high = self.ranges.get(name, (None, None))
        self.low.setText("" if low is None else f"{low:g}")
        self.high.setText("" if high is None else f"{high:g}")

    def _store(self) -> None:
        name = self.combo.currentText()
        if not name:
            return
        new = (_number(self.low.text()), _number(self.high.text()))
        old = self.ranges.get(name, (None, None))
        if new != old:
            self.set_range(name, *new)


class DatasetsPanel(QWidget):
    """Dataset list, filters and the structure table of one project."""

    current_changed = Signal(int)  # structure id (-1: none)
    selection_changed = Signal(list)  # selected structure ids (those whose rows are loaded)
    query_changed = Signal(object)  # StructureQuery
    properties_changed = Signal(list)  # property names of the shown dataset(s)
    import_requested = Signal()
    export_requested = Signal()
    compare_requested = Signal()
    datasets_changed = Signal(str)  # a dataset was renamed (its new name) or deleted ("")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.model: StructureTableModel | None = None
        self.summaries: list[DatasetSummary] = []
        self.id_filter: list[int] | None = None  # from a plot selection
        self.last_error_dialog = None

        self.dataset_list = QTreeWidget()
        self.dataset_list.setHeaderLabels(["Dataset", "Structures", "Source"])
        self.dataset_list.setRootIsDecorated(False)
        self.dataset_list.setUniformRowHeights(True)
        self.dataset_list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.dataset_list.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.dataset_list.currentItemChanged.connect(lambda *_: self._dataset_chosen())
        self.rename_dataset_action = QAction("Rename…", self)
        self.rename_dataset_action.setShortcut(QKeySequence(Qt.Key.Key_F2))
        self.rename_dataset_action.setToolTip("Rename the dataset (the runs that name it follow)")
        self.rename_dataset_action.triggered.connect(self.rename_dataset_dialog)
        self.delete_dataset_action = QAction("Delete…", self)
        self.delete_dataset_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        self.delete_dataset_action.setToolTip("Delete the dataset with its structures (asks first, saying what goes)")
        self.delete_dataset_action.triggered.connect(self.delete_dataset_dialog)
        self.dataset_menu = QMenu(self.dataset_list)
        for action in (self.rename_dataset_action, self.delete_dataset_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            self.dataset_list.addAction(action)
            self.dataset_menu.addAction(action)
        self.dataset_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.dataset_list.customContextMenuRequested.connect(self.show_dataset_menu)

        self.formula_edit = QLineEdit()
        self.formula_edit.setPlaceholderText("Formula contains… (e.g. TiO3)")
        self.formula_edit.setClearButtonEnabled(True)
        self.element_button = ElementFilterButton()
        self.range_editor = PropertyRangeEditor()
        self.clear_button = QPushButton("Clear filters")
        self.filter_timer = QTimer(self)
        self.filter_timer.setSingleShot(True)
        self.filter_timer.setInterval(FILTER_DELAY_MS)
        self.filter_timer.timeout.connect(self.apply_filters)
        self.formula_edit.textChanged.connect(lambda _: self.filter_timer.start())
        self.element_button.changed.connect(self.apply_filters)
        self.range_editor.changed.connect(self.apply_filters)
        self.clear_button.clicked.connect(self.clear_filters)

        self.table = ResponsiveTableView()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.horizontalHeader().setSectionsMovable(True)
        self.table.horizontalHeader().setDefaultSectionSize(90)
        self.table.setWordWrap(False)

        self.count_label = QLabel("")
        self.filter_label = QLabel("")
        self.filter_label.setStyleSheet("color: palette(mid);")
        self.import_button = QPushButton("Import…")
        self.import_button.clicked.connect(self.import_requested)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Compare the selected structures (2–4) side by side")
        self.compare_button.clicked.connect(self.compare_requested)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the selected structures")
        self.export_button.clicked.connect(self.export_requested)

        filters = QHBoxLayout()
        filters.addWidget(self.formula_edit, 2)
        filters.addWidget(self.element_button, 1)
        filters.addWidget(self.range_editor)
        filters.addWidget(self.clear_button)
        footer = QHBoxLayout()
        footer.addWidget(self.count_label)
        footer.addWidget(self.filter_label, 1)
        footer.addWidget(self.import_button)
        footer.addWidget(self.compare_button)
        footer.addWidget(self.export_button)

        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addLayout(filters)
        lower_layout.addWidget(self.table, 1)
        lower_layout.addLayout(footer)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.dataset_list)
        splitter.addWidget(lower)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([110, 500])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self._update_buttons()
        self._dataset_chosen()  # no dataset yet: nothing to rename or delete

    # ---------------------------------------------------------------- project

    def set_project(self, project: Project | None) -> None:
        """Show ``project`` (None: nothing)."""
        if self.model is not None:
            self.model.close()
            self.model.deleteLater()
            self.model = None
        self.project = project
        self.table.setModel(None)
        if project is None:
            self.dataset_list.clear()
            self.count_label.setText("")
            self._dataset_chosen()
            return
        self.model = StructureTableModel(project, self)
        self.model.reloaded.connect(self._on_reloaded)
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        self.refresh_datasets()

    def refresh_datasets(self, select: str | None = None) -> None:
        """Re-read the dataset list (after an import); selects ``select`` or keeps the current one."""
        if self.project is None:
            return
        keep = select or self.current_dataset() or ALL_DATASETS
        self.summaries = self.project.datasets()
        self.dataset_list.blockSignals(True)
        self.dataset_list.clear()
        total = sum(s.count for s in self.summaries)
        all_item = QTreeWidgetItem([ALL_DATASETS, f"{total:,}", ""])
        all_item.setData(0, Qt.ItemDataRole.UserRole, None)
        self.dataset_list.addTopLevelItem(all_item)
        current = all_item
        for summary in self.summaries:
            item = QTreeWidgetItem([summary.name, f"{summary.count:,}", summary.source])
            item.setData(0, Qt.ItemDataRole.UserRole, summary.name)
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            props = "\n".join(f"  {n}: {p['min']:.4g} … {p['max']:.4g} {unit_of(n)} ({p['count']})"
                              for n, p in summary.properties.items())
            item.setToolTip(0, f"{summary.description or summary.name}\nproperties:\n{props or '  none'}")
            self.dataset_list.addTopLevelItem(item)
            if summary.name == keep:
                current = item
        self.dataset_list.setCurrentItem(current)
        self.dataset_list.blockSignals(False)
        self._dataset_chosen()

    def current_dataset(self) -> str | None:
        item = self.dataset_list.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None

    def select_dataset(self, name: str | None) -> None:
        """Make ``name`` (None: all datasets) the current dataset."""
        for i in range(self.dataset_list.topLevelItemCount()):
            item = self.dataset_list.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == name:
                self.dataset_list.setCurrentItem(item)
                return

    def property_stats(self) -> dict[str, dict[str, float]]:
        """count/min/max of each property over the shown dataset(s)."""
        name = self.current_dataset()
        stats: dict[str, dict[str, float]] = {}
        for summary in self.summaries:
            if name is not None and summary.name != name:
                continue
            for prop, info in summary.properties.items():
                old = stats.get(prop)
                stats[prop] = dict(info) if old is None else {
                    "count": old["count"] + info["count"], "min": min(old["min"], info["min"]),
                    "max": max(old["max"], info["max"])}
        return dict(sorted(stats.items()))

    def _dataset_chosen(self) -> None:
        named = self.current_dataset() is not None
        self.rename_dataset_action.setEnabled(named)
        self.delete_dataset_action.setEnabled(named)
        if self.model is None:
            return
        stats = self.property_stats()
        names = list(stats)
        self.model.set_properties(names)
        self.range_editor.blockSignals(True)
        self.range_editor.set_properties(names, stats)
        self.range_editor.blockSignals(False)
        self.properties_changed.emit(names)
        self.apply_filters()

    # ---------------------------------------------------------------- rename and delete

    def show_dataset_menu(self, pos) -> QMenu | None:
        """Open the context menu of the dataset at ``pos`` (list viewport coordinates), made current."""
        item = self.dataset_list.itemAt(pos)
        if item is None or item.data(0, Qt.ItemDataRole.UserRole) is None:
            return None
        self.dataset_list.setCurrentItem(item)
        self.dataset_menu.popup(self.dataset_list.viewport().mapToGlobal(pos))
        return self.dataset_menu

    def rename_dataset(self, old: str, new: str) -> bool:
        """Rename dataset ``old`` to ``new`` and re-read the lists; a refusal (an empty or taken name, a
        run using it) is shown in a dialog and returns False."""
        if self.project is None:
            return False
        try:
            store_edit.rename_dataset(self.project, old, new)
        except CrystalStudioError as exc:
            self.last_error_dialog = show_error(self, "Cannot rename the dataset", str(exc))
            return False
        new = new.strip()
        self.refresh_datasets(new)
        self.datasets_changed.emit(new)
        return True

    def delete_dataset(self, name: str) -> store_edit.Deletion | None:
        """Delete dataset ``name`` (no question asked) and re-read the lists; returns what went, or None
        after a refusal (shown in a dialog)."""
        if self.project is None:
            return None
        try:
            deletion = store_edit.delete_dataset(self.project, name)
        except CrystalStudioError as exc:
            self.last_error_dialog = show_error(self, "Cannot delete the dataset", str(exc))
            return None
        self.refresh_datasets()
        self.datasets_changed.emit("")
        return deletion

    def rename_dataset_dialog(self) -> None:
        """Ask for a new name of the current dataset and rename it."""
        name = self.current_dataset()
        if self.project is None or name is None:
            return
        new = edit_dialogs.ask_name(self, "Rename dataset", f"New name of dataset “{name}”:", name)
        if new is not None and new.strip() != name:
            self.rename_dataset(name, new)

    def delete_dataset_dialog(self) -> None:
        """Say what deleting the current dataset removes and keeps; delete it when confirmed."""
        name = self.current_dataset()
        if self.project is None or name is None:
            return
        try:
            plan = store_edit.dataset_deletion(self.project, name)
        except CrystalStudioError as exc:
            self.last_error_dialog = show_error(self, "Cannot delete the dataset", str(exc))
            return
        if edit_dialogs.confirm_delete(self, "Delete dataset", f"Delete dataset “{name}” with "
                                       f"{plan.removed_text()}?", " ".join(plan.kept) or "This cannot be undone."):
            self.delete_dataset(name)

    # ---------------------------------------------------------------- filters

    def build_query(self) -> StructureQuery:
        """The query of the current dataset and filters (keeping the table's sort order)."""
        base = self.model.query if self.model is not None else StructureQuery()
        return StructureQuery(
            dataset=self.current_dataset(),
            formula=self.formula_edit.text().strip() or None,
            elements_all=list(self.element_button.required),
            elements_none=list(self.element_button.excluded),
            property_ranges=dict(self.range_editor.ranges),
            ids=list(self.id_filter) if self.id_filter is not None else None,
            sort=base.sort, descending=base.descending)

    def apply_filters(self) -> None:
        """Re-query the table with the current filters."""
        self.filter_timer.stop()
        if self.model is None:
            return
        query = self.build_query()
        self.model.set_query(query)
        self.count_label.setText("Loading…")
        self._describe_filters(query)
        self.query_changed.emit(dataclasses.replace(query, ids=None))

    def set_id_filter(self, ids: list[int] | None) -> None:
        """Restrict the table to ``ids`` (a plot selection); None lifts the restriction."""
        self.id_filter = None if ids is None else list(ids)
        self.apply_filters()

    def clear_filters(self) -> None:
        self.formula_edit.blockSignals(True)
        self.formula_edit.clear()
        self.formula_edit.blockSignals(False)
        self.element_button.blockSignals(True)
        self.element_button.set_elements([], [])
        self.element_button.blockSignals(False)
        self.range_editor.clear()
        self.id_filter = None
        self.apply_filters()

    def _describe_filters(self, query: StructureQuery) -> None:
        parts = []
        if query.formula:
            parts.append(f"formula ∋ {query.formula}")
        if query.elements_all:
            parts.append("with " + " ".join(query.elements_all))
        if query.elements_none:
            parts.append("without " + " ".join(query.elements_none))
        for name, (lo, hi) in query.property_ranges.items():
            lo_text = "" if lo is None else f"{lo:g} ≤ "
            hi_text = "" if hi is None else f" ≤ {hi:g}"
            parts.append(f"{lo_text}{name}{hi_text}")
        if query.ids is not None:
            parts.append(f"{len(query.ids)} picked in plot")
        self.filter_label.setText(("Filters: " + "; ".join(parts)) if parts else "")

    def _on_reloaded(self, count: int) -> None:
        total = sum(s.count for s in self.summaries if self.current_dataset() in (None, s.name))
        self.count_label.setText(f"{count:,} of {total:,} structures" if count != total else f"{count:,} structures")
        self._update_buttons()

    # ---------------------------------------------------------------- selection

    def selected_ids(self) -> list[int]:
        """Ids of the selected rows whose data is loaded, in table order."""
        if self.model is None:
            return []
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        ids = (self.model.data(self.model.index(row, 0), ID_ROLE) for row in rows)
        return [i for i in ids if i is not None]

    def current_id(self) -> int | None:
        index = self.table.currentIndex()
        return self.model.data(self.model.index(index.row(), 0), ID_ROLE) if index.isValid() else None

    def select_rows(self, rows: list[int]) -> None:
        """Select table ``rows`` (the first becomes current)."""
        selection = QItemSelection()
        for row in rows:
            selection.select(self.model.index(row, 0), self.model.index(row, self.model.columnCount() - 1))
        flags = self.table.selectionModel().SelectionFlag
        self.table.selectionModel().select(selection, flags.ClearAndSelect | flags.Rows)
        if rows:
            self.table.selectionModel().setCurrentIndex(self.model.index(rows[0], 0), flags.NoUpdate)

    def _on_selection(self, *_: QItemSelection) -> None:
        self._update_buttons()
        self.selection_changed.emit(self.selected_ids())

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        sid = self.model.data(self.model.index(current.row(), 0), ID_ROLE) if current.isValid() else None
        self.current_changed.emit(-1 if sid is None else int(sid))

    def _update_buttons(self) -> None:
        n = len(self.table.selectionModel().selectedRows()) if self.table.selectionModel() else 0
        self.compare_button.setEnabled(2 <= n <= 4)
        self.export_button.setEnabled(n > 0)
        self.export_button.setText(f"Export {n}…" if n else "Export…")
