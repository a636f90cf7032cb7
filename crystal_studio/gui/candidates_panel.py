"""Candidates panel: the evaluated candidates of a run, to inspect, relax, compare and export.

Every run that stored candidates is listed (optimization, structure prediction, crystals sampled from a
crystal VAE), labelled by method or kind, and every optimization run, running ones too.

The table has one column per evaluation field (each success criterion coloured pass/fail, each
predicted property with its ensemble spread, validity, uniqueness, novelty, space group, tolerance
factor, origin) and, once candidates were relaxed with CHGNet, the relaxation results (energy,
convergence, RMSD, volume change, success after relaxation). It sorts on any column (numbers as
numbers) and can show only the successful ones. Stars and notes are stored at once
(:func:`~crystal_studio.store.candidates.set_flag`). CHGNet relaxation (force threshold fmax in eV/Å
and a step limit set next to its button; cancellable) and export
(:func:`~crystal_studio.store.exporting.export_candidates`) run as jobs.

The run has a menu (the ⋯ button beside it, or a right click on it): rename the run, delete it with its
candidates and metrics (:mod:`crystal_studio.store.edit`; after a confirmation that says what goes,
and never while it runs). The table's context menu stars, edits the note of and deletes the selected
candidates (Delete key too).

The window listens to :attr:`CandidatesPanel.show_requested` (show one structure in the 3D viewer),
:attr:`CandidatesPanel.compare_requested` (2–4 structures in the compare view) and
:attr:`CandidatesPanel.runs_changed` (a run was renamed or deleted).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback
from crystal_studio.core.properties import unit_of
from crystal_studio.gui import edit_dialogs
from crystal_studio.gui.jobs import Job, JobManager, show_error
from crystal_studio.gui.table_view import ResponsiveTableView
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import edit as store_edit
from crystal_studio.store import models as model_store
from crystal_studio.store.candidates import CandidateRecord
from crystal_studio.store.project import Project

MAX_COMPARED = 4  # as gui.compare.MAX_COMPARED
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
PASS = QColor(200, 235, 200)
FAIL = QColor(250, 205, 205)
STAR = "star"
EXPORT_FORMATS = {"CIF": "cif", "POSCAR": "poscar"}


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


class Column:
    """One table column: header, how to get the value from a record, tooltip, kind."""

    def __init__(self, header: str, get, kind: str = "value", tip: str = "", digits: int = 4, name: str = ""):
        self.header, self.get, self.kind, self.tip, self.digits, self.name = header, get, kind, tip, digits, name


def _relaxation(key: str) -> Callable[[CandidateRecord], object]:
    """Getter of one field of a candidate's relaxation result (None when it was not relaxed)."""
    return lambda r: (r.evaluation.get("relaxation") or {}).get(key)


def candidate_columns(records: list[CandidateRecord]) -> list[Column]:
    """The columns for a run's records: fixed ones, one per criterion and property, relaxation if any."""
    criteria: list[str] = []
    properties: list[str] = []
    for r in records:
        for name in r.evaluation.get("criteria", {}):
            if name not in criteria:
                criteria.append(name)
        for name in r.evaluation.get("properties", {}):
            if name not in properties:
                properties.append(name)
    cols = [Column("★", lambda r: r.flag == STAR, "star", "Starred (click to toggle)"),
            Column("id", lambda r: r.id, tip="Candidate id in the project"),
            Column("Formula", lambda r: r.formula)]
    judged = [r.evaluation["judge"] for r in records if r.evaluation.get("judge")]
    relaxed = any(r.evaluation.get("relaxation") for r in records)
    if relaxed:  # the verdict that counts comes first: a candidate that falls apart on relaxation is no success
        cols.append(Column("Success relaxed", _relaxation("success_after"), "criterion",
                           "Still meets every criterion after CHGNet relaxation (predictors re-run on the relaxed "
                           "structure); blank: not relaxed"))
        if judged:
            cols.append(Column("Judge relaxed", lambda r: (_relaxation("judge_after")(r) or {}).get("success"),
                               "criterion", "Meets every criterion after relaxation under the independent judge"))
    cols.append(Column("Success as generated" if relaxed else "Success", lambda r: r.success, "criterion",
                       "Meets every criterion (as generated, before any relaxation)"))
    if judged:
        judge_id = judged[0].get("model_id")
        cols.append(Column("Judge", lambda r: (r.evaluation.get("judge") or {}).get("success"), "criterion",
                           f"Meets every criterion under the independent judge (model {judge_id})"))
    for name in criteria:
        cols.append(Column(name, lambda r, n=name: r.evaluation.get("criteria", {}).get(n), "criterion",
                           f"Criterion {name}"))
    for name in properties:
        unit = unit_of(name)
        cols.append(Column(f"{name} ({unit})" if unit else name,
                           lambda r, n=name: r.evaluation.get("properties", {}).get(n), "property",
                           f"Predicted {name} (± ensemble spread in the tooltip)", name=name))
    cols += [
        Column("Space group", lambda r: r.evaluation.get("spacegroup"), "spacegroup"),
        Column("t", lambda r: r.evaluation.get("tolerance_factor"), tip="Goldschmidt tolerance factor", digits=3),
        Column("d_min (Å)", lambda r: r.evaluation.get("min_distance"), tip="Shortest interatomic distance",
               digits=3),
        Column("Valid", lambda r: r.evaluation.get("valid"), "flag", "Structurally valid (distances, volume)"),
        Column("Comp. valid", lambda r: r.evaluation.get("compositionally_valid"), "flag",
               "Compositionally valid (oxidation states)"),
        Column("Unique", lambda r: r.evaluation.get("unique"), "flag", "Unique within the run"),
        Column("Novel", lambda r: r.evaluation.get("novel"), "flag", "Not in the reference dataset"),
    ]
    if any(r.evaluation.get("domain") for r in records):
        cols.append(Column("In domain", lambda r: None if not r.evaluation.get("domain")
                           else not r.evaluation["domain"]["out_of_domain"], "flag",
                           "Inside the models' training domain: ✗ when the ensemble spread exceeds the 99th "
                           "percentile of validation or an element was never trained on (the model is guessing)"))
    if relaxed:
        cols += [
            Column("E CHGNet (eV/atom)", lambda r: r.oracle_energy_per_atom, tip="CHGNet energy after relaxation"),
            Column("Converged", _relaxation("converged"), "flag", "Relaxation converged"),
            Column("RMSD (Å)", _relaxation("rmsd"), tip="RMS displacement candidate → relaxed", digits=3),
            Column("Max disp. (Å)", _relaxation("max_displacement"), digits=3),
            Column("ΔV (%)", lambda r: None if _relaxation("volume_change")(r) is None
                   else 100 * _relaxation("volume_change")(r), tip="Volume change on relaxation", digits=3),
        ]
    cols += [Column("Origin", lambda r: r.evaluation.get("origin")),
             Column("Notes", lambda r: r.notes, "notes", "Double-click to edit")]
    return cols


class CandidateTableModel(QAbstractTableModel):
    """Records of one run as rows; star and notes are editable and saved to the project at once."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Project | None = None
        self.records: list[CandidateRecord] = []
        self.columns: list[Column] = []

    def set_records(self, project: Project | None, records: list[CandidateRecord]) -> None:
        self.beginResetModel()
        self.project = project
        self.records = records
        self.columns = candidate_columns(records) if records else []
        self.endResetModel()

    def rowCount(self, parent=None) -> int:  # noqa: N802 - Qt override
        return 0 if parent is not None and parent.isValid() else len(self.records)

    def columnCount(self, parent=None) -> int:  # noqa: N802 - Qt override
        return 0 if parent is not None and parent.isValid() else len(self.columns)

    def column_index(self, header: str) -> int:
        return [c.header for c in self.columns].index(header)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt override
        if orientation != Qt.Orientation.Horizontal or section >= len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section].header
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.columns[section].tip or None
        return None

    def flags(self, index):
        base = super().flags(index)
        kind = self.columns[index.column()].kind
        if kind == "star":
            return base | Qt.ItemFlag.ItemIsUserCheckable
        if kind == "notes":
            return base | Qt.ItemFlag.ItemIsEditable
        return base

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        record = self.records[index.row()]
        col = self.columns[index.column()]
        value = col.get(record)
        if role == ID_ROLE:
            return record.id
        if col.kind == "star":
            if role == Qt.ItemDataRole.CheckStateRole:
                return Qt.CheckState.Checked if value else Qt.CheckState.Unchecked
            if role == SORT_ROLE:
                return int(bool(value))
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return _fmt(value, col.digits)
        if role == Qt.ItemDataRole.EditRole:
            return value
        if role == SORT_ROLE:
            if col.kind == "spacegroup":
                return record.evaluation.get("spacegroup_number") or 0
            if isinstance(value, bool):
                return int(value)
            if value is None:
                return float("-inf")
            return value if isinstance(value, int | float) else str(value).lower()
        if role == Qt.ItemDataRole.BackgroundRole and col.kind == "criterion" and value is not None:
            return PASS if value else FAIL
        if role == Qt.ItemDataRole.ForegroundRole and col.kind == "flag" and value is False:
            return QColor(176, 0, 32)
        if role == Qt.ItemDataRole.TextAlignmentRole and col.kind in ("criterion", "flag"):
            return Qt.AlignmentFlag.AlignCenter
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, int | float):
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        if role == Qt.ItemDataRole.ToolTipRole:
            if col.kind == "property":
                std = record.evaluation.get("property_std", {}).get(col.name)
                return f"{_fmt(value, 6)} ± {_fmt(std, 3)}" if std is not None else _fmt(value, 6)
            if col.kind == "notes":
                return value or "Double-click to add a note"
            if col.header == "In domain" and value is False:
                return record.evaluation["domain"].get("reason") or col.tip
            return col.tip or None
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802 - Qt override
        if not index.isValid() or self.project is None:
            return False
        record = self.records[index.row()]
        kind = self.columns[index.column()].kind
        if kind == "star" and role == Qt.ItemDataRole.CheckStateRole:
            checked = Qt.CheckState(value) == Qt.CheckState.Checked if not isinstance(value, bool) else value
            record.flag = STAR if checked else ""
            candidate_store.set_flag(self.project, record.id, flag=record.flag)
        elif kind == "notes" and role == Qt.ItemDataRole.EditRole:
            record.notes = str(value)
            candidate_store.set_flag(self.project, record.id, notes=record.notes)
        else:
            return False
        self.dataChanged.emit(index, index, [role])
        return True

    def row_of(self, candidate_id: int) -> int:
        for row, r in enumerate(self.records):
            if r.id == candidate_id:
                return row
        return -1


class CandidateFilter(QSortFilterProxyModel):
    """Sorts on :data:`SORT_ROLE`; filters by success, stars and formula text."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.only_success = False
        self.only_starred = False
        self.text = ""

    def set_filter(self, only_success: bool | None = None, only_starred: bool | None = None,
                   text: str | None = None) -> None:
        new_api = hasattr(self, "beginFilterChange")  # Qt ≥ 6.9; invalidateFilter() is deprecated there
        if new_api:
            self.beginFilterChange()
        if only_success is not None:
            self.only_success = only_success
        if only_starred is not None:
            self.only_starred = only_starred
        if text is not None:
            self.text = text.strip().lower()
        if new_api:
            self.endFilterChange()
        else:
            self.invalidateFilter()

    def filterAcceptsRow(self, row, parent) -> bool:  # noqa: N802 - Qt override
        record = self.sourceModel().records[row]
        if self.only_success and not record.final_success:
            return False
        if self.only_starred and record.flag != STAR:
            return False
        return not self.text or self.text in record.formula.lower()

    def lessThan(self, left, right) -> bool:  # noqa: N802 - Qt override
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float)):
            return str(a) < str(b)
        return a < b


def run_label(run: model_store.RunRecord, n_candidates: int) -> str:
    """'#id method · spec · status · n candidates'; a run without a method (crystal sampling) by its kind
    and generative model."""
    p = run.parameters
    if "method" in p:
        what = f"{p['method']} · {(p.get('spec') or {}).get('name', '')}"
    else:
        what = f"{run.kind} · model {p.get('model_id', '?')}"
    named = f" “{run.name}”" if run.name else ""
    return f"#{run.id}{named} {what} · {run.status} · {n_candidates} candidate{'' if n_candidates == 1 else 's'}"


def relax_work(project: Project, run_id: int, ids: list[int], device: str, fmax: float = 0.05,
               max_steps: int = 300):
    """Relax the candidates ``ids`` (forces below ``fmax`` eV/Å, at most ``max_steps`` steps each)."""

    def work(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.design.relaxation import relax_candidates

        try:
            return relax_candidates(project, run_id, candidate_ids=ids, device=device, fmax=fmax,
                                    max_steps=max_steps, progress=progress, cancel=cancel)
        finally:
            project.close()

    return work


def export_work(project: Project, run_id: int, folder: Path, fmt: str, ids: list[int] | None, relaxed: bool,
                overwrite: bool = False, symmetrize: bool = False):
    """Export the run's successful candidates (``ids`` None) or the candidates ``ids`` (CIFs in their
    space-group setting when ``symmetrize``); existing files are refused unless ``overwrite``."""

    def work(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.store.exporting import export_candidates

        try:
            return export_candidates(project, run_id, folder, fmt, only_success=ids is None, relaxed=relaxed,
                                     symmetrize=symmetrize, progress=progress, cancel=cancel, candidate_ids=ids,
                                     overwrite=overwrite)
        finally:
            project.close()

    return work


class CandidatesPanel(QWidget):
    """Run selector, candidate table and the actions on selected candidates; see the module docstring."""

    show_requested = Signal(str, object, object)  # title, Structure, details row dict
    compare_requested = Signal(object, object)  # rows (list of dict), structures
    status_message = Signal(str)
    runs_changed = Signal()  # a run was renamed or deleted

    def __init__(self, jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.run_id: int | None = None
        self.device = "auto"
        self.relax_job: Job | None = None
        self.export_job: Job | None = None
        self.last_relaxation: list[dict] | None = None
        self.last_export: list[Path] | None = None
        self.last_error_dialog = None

        self.runs_combo = QComboBox()
        self.runs_combo.setObjectName("candidateRuns")
        self.runs_combo.activated.connect(lambda i: self.set_run(self.runs_combo.itemData(i)))
        self.refresh_button = QPushButton("↻")
        self.refresh_button.setToolTip("Re-read runs and candidates from the project")
        self.refresh_button.setMaximumWidth(32)
        self.refresh_button.clicked.connect(self.refresh)
        self.success_box = QCheckBox("Successful only")
        self.success_box.setToolTip("Only candidates meeting every criterion, after CHGNet relaxation where relaxed")
        self.success_box.toggled.connect(lambda on: self._set_filter(only_success=on))
        self.starred_box = QCheckBox("★ only")
        self.starred_box.toggled.connect(lambda on: self._set_filter(only_starred=on))
        self.formula_edit = QLineEdit()
        self.formula_edit.setPlaceholderText("formula contains…")
        self.formula_edit.setClearButtonEnabled(True)
        self.formula_edit.textChanged.connect(lambda text: self._set_filter(text=text))
        self.rename_run_action = QAction("Rename run…", self)
        self.rename_run_action.setToolTip("Give the run a name, shown beside its number")
        self.rename_run_action.triggered.connect(self.rename_run_dialog)
        self.delete_run_action = QAction("Delete run…", self)
        self.delete_run_action.setToolTip("Delete the run with its candidates and metrics (asks first)")
        self.delete_run_action.triggered.connect(self.delete_run_dialog)
        self.run_menu = QMenu(self)
        self.run_menu.addAction(self.rename_run_action)
        self.run_menu.addAction(self.delete_run_action)
        self.run_menu_button = QToolButton()
        self.run_menu_button.setText("⋯")
        self.run_menu_button.setToolTip("Rename or delete this run")
        self.run_menu_button.setMenu(self.run_menu)
        self.run_menu_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.runs_combo.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.runs_combo.customContextMenuRequested.connect(
            lambda pos: self.run_menu.popup(self.runs_combo.mapToGlobal(pos)))
        top = QHBoxLayout()
        top.addWidget(QLabel("Run"))
        top.addWidget(self.runs_combo, 1)
        top.addWidget(self.run_menu_button)
        top.addWidget(self.refresh_button)
        filters = QHBoxLayout()
        filters.addWidget(self.success_box)
        filters.addWidget(self.starred_box)
        filters.addWidget(self.formula_edit, 1)

        self.model = CandidateTableModel(self)
        self.proxy = CandidateFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = ResponsiveTableView()
        self.table.setObjectName("candidatesTable")
        self.table.setModel(self.proxy)
        self.table.horizontalHeader().setSortIndicator(1, Qt.SortOrder.AscendingOrder)  # id: the stored order
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.proxy.layoutChanged.connect(self._update_count)
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.rowsRemoved.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.star_action = QAction("★ Star / unstar", self)
        self.star_action.triggered.connect(self.toggle_star_selected)
        self.edit_note_action = QAction("Edit note…", self)
        self.edit_note_action.setToolTip("The note is the candidate's label (shown in the Notes column)")
        self.edit_note_action.triggered.connect(self.edit_note_dialog)
        self.delete_candidates_action = QAction("Delete selected candidates…", self)
        self.delete_candidates_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        self.delete_candidates_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.delete_candidates_action.triggered.connect(self.delete_candidates_dialog)
        self.table.addAction(self.delete_candidates_action)
        self.candidate_menu = QMenu(self.table)
        for action in (self.star_action, self.edit_note_action):
            self.candidate_menu.addAction(action)
        self.candidate_menu.addSeparator()
        self.candidate_menu.addAction(self.delete_candidates_action)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self.show_candidate_menu)

        self.relaxed_box = QCheckBox("Show relaxed")
        self.relaxed_box.setToolTip("Show (and compare) the CHGNet-relaxed structure where there is one")
        self.relaxed_box.toggled.connect(lambda _on: self._selection_changed())
        self.star_button = QPushButton("★ Star")
        self.star_button.setToolTip("Star or unstar the selected candidates")
        self.star_button.clicked.connect(self.toggle_star_selected)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Compare 2–4 selected candidates side by side; with one relaxed candidate "
                                       "selected, compare it before and after relaxation")
        self.compare_button.clicked.connect(self.compare_selected)
        self.relax_button = QPushButton("Relax with CHGNet")
        self.relax_button.setToolTip("Relax the selected candidates with CHGNet (cell free) in the background and "
                                     "re-check their criteria")
        self.relax_button.clicked.connect(self.relax_selected)
        self.fmax_spin = QDoubleSpinBox()
        self.fmax_spin.setObjectName("relaxFmax")
        self.fmax_spin.setRange(0.001, 1.0)
        self.fmax_spin.setDecimals(3)
        self.fmax_spin.setSingleStep(0.01)
        self.fmax_spin.setValue(0.05)
        self.fmax_spin.setSuffix(" eV/Å")
        self.fmax_spin.setToolTip("Relaxation converges when every force is below this (eV/Å)")
        self.relax_steps_spin = QSpinBox()
        self.relax_steps_spin.setObjectName("relaxMaxSteps")
        self.relax_steps_spin.setRange(1, 100_000)
        self.relax_steps_spin.setValue(300)
        self.relax_steps_spin.setToolTip("At most this many optimizer steps per candidate")
        self.cancel_relax_button = QPushButton("■ Cancel")
        self.cancel_relax_button.setToolTip("Stop the running relaxation (the candidates relaxed so far are kept)")
        self.cancel_relax_button.clicked.connect(self.cancel_relaxation)
        actions = QHBoxLayout()
        for widget in (self.star_button, self.compare_button, self.relax_button, QLabel("fmax"), self.fmax_spin,
                       QLabel("max steps"), self.relax_steps_spin, self.cancel_relax_button, self.relaxed_box):
            actions.addWidget(widget)
        actions.addStretch(1)

        self.format_combo = QComboBox()
        self.format_combo.addItems(list(EXPORT_FORMATS))
        self.export_relaxed_box = QCheckBox("relaxed where available")
        self.export_overwrite_box = QCheckBox("replace existing files")
        self.export_symmetrize_box = QCheckBox("symmetrized CIF")
        self.export_symmetrize_box.setToolTip("Write CIFs in their spglib space group (symmetry operations and "
                                              "the asymmetric unit) instead of P1")
        self.format_combo.currentTextChanged.connect(
            lambda text: self.export_symmetrize_box.setEnabled(EXPORT_FORMATS.get(text) == "cif"))
        self.export_overwrite_box.setToolTip("Without this, an export that would replace a file writes nothing and "
                                             "names the file in the way")
        self.export_selected_button = QPushButton("Export selected…")
        self.export_selected_button.clicked.connect(lambda: self.export_dialog(selected=True))
        self.export_success_button = QPushButton("Export all successful…")
        self.export_success_button.clicked.connect(lambda: self.export_dialog(selected=False))
        export_row = QHBoxLayout()
        export_row.addWidget(QLabel("Export as"))
        export_row.addWidget(self.format_combo)
        export_row.addWidget(self.export_relaxed_box)
        export_row.addWidget(self.export_symmetrize_box)
        export_row.addWidget(self.export_overwrite_box)
        export_row.addStretch(1)
        export_row.addWidget(self.export_selected_button)
        export_row.addWidget(self.export_success_button)

        self.count_label = QLabel("")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #555;")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.count_label)
        layout.addLayout(actions)
        layout.addLayout(export_row)
        layout.addWidget(self.status_label)
        self._sync_enabled()

    # ---------------------------------------------------------------- project and run

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.run_id = None
        self.model.set_records(None, [])
        self.status_label.setText("")
        self.refresh_runs()
        if self.runs_combo.count():
            self.set_run(self.runs_combo.itemData(0))
        self._sync_enabled()

    def refresh_runs(self) -> None:
        """List the optimization runs (running ones too) and every other run that stored candidates."""
        self.runs_combo.blockSignals(True)
        self.runs_combo.clear()
        if self.project is not None:
            counts = candidate_store.candidate_counts(self.project)
            for run in model_store.list_runs(self.project):
                if run.kind == "optimization" or run.id in counts:
                    self.runs_combo.addItem(run_label(run, counts.get(run.id, 0)), run.id)
                    self.runs_combo.setItemData(self.runs_combo.count() - 1, run.message or run.started,
                                                Qt.ItemDataRole.ToolTipRole)
        index = self.runs_combo.findData(self.run_id)
        if index >= 0:
            self.runs_combo.setCurrentIndex(index)
        self.runs_combo.blockSignals(False)

    def refresh(self) -> None:
        """Re-read the runs and the current run's candidates (keeping the selection)."""
        self.refresh_runs()
        if self.run_id is not None:
            self.set_run(self.run_id, keep_selection=True)

    def set_run(self, run_id: int | None, keep_selection: bool = False) -> None:
        """Show the candidates of run ``run_id``."""
        if self.project is None or run_id is None:
            return
        selected = self.selected_ids() if keep_selection else []
        try:
            records = candidate_store.list_candidates(self.project, run_id)
        except CrystalStudioError as exc:
            self.status_label.setText(str(exc))
            return
        if self.runs_combo.findData(run_id) < 0:
            self.refresh_runs()
        self.run_id = run_id
        self.runs_combo.setCurrentIndex(self.runs_combo.findData(run_id))
        self.model.set_records(self.project, records)
        self._fit_columns()
        if selected:
            self.select_ids(selected)
        if not records:
            run = model_store.get_run(self.project, run_id)
            self.status_label.setText(f"Run #{run_id} has no candidates ({run.status}"
                                      + (f": {run.message}" if run.message else "") + ").")
        self._update_count()
        self._sync_enabled()

    def _fit_columns(self) -> None:
        header = self.table.horizontalHeader()
        self.table.resizeColumnsToContents()
        for col, column in enumerate(self.model.columns):
            widest = 96 if column.kind in ("criterion", "flag") else 180  # ✓/✗ columns: the header tooltip names it
            header.resizeSection(col, min(max(header.sectionSize(col), 28), widest))

    def _set_filter(self, **kwargs) -> None:
        self.proxy.set_filter(**kwargs)
        self._update_count()

    def _update_count(self, *_args) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        records = self.model.records
        relaxed = [r for r in records if r.evaluation.get("relaxation")]
        text = f"{shown} of {total} candidates shown · "
        if relaxed:
            after = sum(r.final_success for r in relaxed)
            text += (f"<b>{after} of {len(relaxed)} relaxed still successful after relaxation</b> · "
                     f"{sum(r.success for r in records)} successful as generated")
        else:
            text += f"{sum(r.success for r in records)} successful (not relaxed yet)"
        self.count_label.setText(text if total else "No candidates: run an optimization, or pick a run above.")

    # ---------------------------------------------------------------- selection

    def visible_ids(self) -> list[int]:
        """Candidate ids in table order (after filter and sort)."""
        return [self.proxy.index(r, 0).data(ID_ROLE) for r in range(self.proxy.rowCount())]

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.proxy.index(r, 0).data(ID_ROLE) for r in rows]

    def select_ids(self, ids: list[int]) -> None:
        from PySide6.QtCore import QItemSelection, QItemSelectionModel

        selection = QItemSelection()
        for candidate_id in ids:
            row = self.model.row_of(candidate_id)
            if row < 0:
                continue
            proxy_index = self.proxy.mapFromSource(self.model.index(row, 0))
            if proxy_index.isValid():
                selection.select(proxy_index, proxy_index)
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.table.selectionModel().select(selection, flags)
        if not selection.isEmpty():
            self.table.scrollTo(selection.indexes()[0])

    def record(self, candidate_id: int) -> CandidateRecord | None:
        row = self.model.row_of(candidate_id)
        return self.model.records[row] if row >= 0 else None

    def _structure_and_row(self, record: CandidateRecord, relaxed: bool | None = None):
        relaxed = self.relaxed_box.isChecked() if relaxed is None else relaxed
        is_relaxed = bool(relaxed and record.relaxed_structure_json)
        structure = record.relaxed_structure if is_relaxed else record.structure
        ev = record.evaluation
        props = {k: v for k, v in (ev.get("properties") or {}).items() if isinstance(v, int | float)}
        for key in ("tolerance_factor", "min_distance"):
            if isinstance(ev.get(key), int | float):
                props[key] = ev[key]
        if record.oracle_energy_per_atom is not None:
            props["chgnet_energy_per_atom"] = record.oracle_energy_per_atom
        if is_relaxed:
            after = (ev.get("relaxation") or {}).get("properties") or {}
            props.update({f"{k} (relaxed)": v for k, v in after.items() if isinstance(v, int | float)})
        failed = [name for name, ok in (ev.get("criteria") or {}).items() if not ok]
        flags = ([f"fails: {', '.join(failed)}"] if failed else ["meets every criterion"])
        if record.flag == STAR:
            flags.insert(0, "★ starred")
        if record.notes:
            flags.append(f"notes: {record.notes}")
        label = f"{record.formula} c{record.id}" + (" (relaxed)" if is_relaxed else "")
        row = {"id": record.id, "reduced_formula": record.formula, "dataset": f"run #{record.run_id} candidate",
               "name": ("relaxed with CHGNet · " if is_relaxed else "") + str(ev.get("origin") or ""),
               "spacegroup_symbol": ev.get("spacegroup"), "spacegroup_number": ev.get("spacegroup_number"),
               "properties": props, "flags": flags}
        return label, structure, row

    def _selection_changed(self, *_args) -> None:
        ids = self.selected_ids()
        self._sync_enabled()
        if len(ids) >= 1:
            record = self.record(ids[-1] if len(ids) > 1 else ids[0])
            if record is not None:
                self.show_requested.emit(*self._structure_and_row(record))

    def _sync_enabled(self) -> None:
        n = len(self.selected_ids()) if self.model.rowCount() else 0
        busy = self.relax_job is not None and self.relax_job.running
        one_relaxed = n == 1 and self.record(self.selected_ids()[0]).relaxed_structure_json is not None
        self.star_button.setEnabled(n > 0)
        self.compare_button.setEnabled(2 <= n <= MAX_COMPARED or one_relaxed)
        self.relax_button.setEnabled(n > 0 and not busy)
        self.fmax_spin.setEnabled(not busy)
        self.relax_steps_spin.setEnabled(not busy)
        self.cancel_relax_button.setEnabled(busy and not self.relax_job.token.cancelled)
        self.star_action.setEnabled(n > 0)
        self.edit_note_action.setEnabled(n == 1)
        self.delete_candidates_action.setEnabled(n > 0 and not busy)
        self.rename_run_action.setEnabled(self.run_id is not None)
        self.delete_run_action.setEnabled(self.run_id is not None and not busy)
        self.run_menu_button.setEnabled(self.run_id is not None)
        self.export_selected_button.setEnabled(n > 0)
        self.export_success_button.setEnabled(any(r.success for r in self.model.records))

    # ---------------------------------------------------------------- actions

    def set_star(self, ids: list[int], starred: bool) -> None:
        col = self.model.column_index("★")
        state = Qt.CheckState.Checked if starred else Qt.CheckState.Unchecked
        for candidate_id in ids:
            row = self.model.row_of(candidate_id)
            if row >= 0:
                self.model.setData(self.model.index(row, col), state, Qt.ItemDataRole.CheckStateRole)

    def toggle_star_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.set_star(ids, not all(self.record(i).flag == STAR for i in ids))

    def set_notes(self, candidate_id: int, notes: str) -> None:
        row = self.model.row_of(candidate_id)
        if row >= 0:
            self.model.setData(self.model.index(row, self.model.column_index("Notes")), notes)

    # ---------------------------------------------------------------- rename and delete

    def show_candidate_menu(self, pos) -> QMenu:
        """Open the candidates' context menu at ``pos`` (table viewport coordinates); a right click on an
        unselected row selects it first."""
        index = self.table.indexAt(pos)
        if index.isValid() and index.row() not in {i.row() for i in self.table.selectionModel().selectedRows()}:
            self.table.selectRow(index.row())
        self._sync_enabled()
        self.candidate_menu.popup(self.table.viewport().mapToGlobal(pos))
        return self.candidate_menu

    def _refused(self, title: str, exc: CrystalStudioError) -> None:
        self.last_error_dialog = show_error(self, title, str(exc))

    def rename_run(self, run_id: int, name: str) -> bool:
        """Name run ``run_id`` ('' removes the name); False after a refusal (shown in a dialog)."""
        if self.project is None:
            return False
        try:
            store_edit.rename_run(self.project, run_id, name)
        except CrystalStudioError as exc:
            self._refused("Cannot rename the run", exc)
            return False
        self.refresh_runs()
        self.runs_changed.emit()
        return True

    def delete_run(self, run_id: int) -> store_edit.Deletion | None:
        """Delete run ``run_id`` with its candidates (no question asked); shows the newest remaining run.
        None after a refusal (a running run; shown in a dialog)."""
        if self.project is None or (self.relax_job is not None and self.relax_job.running):
            return None
        try:
            deletion = store_edit.delete_run(self.project, run_id)
        except CrystalStudioError as exc:
            self._refused("Cannot delete the run", exc)
            return None
        if self.run_id == run_id:
            self.run_id = None
            self.model.set_records(None, [])
        self.refresh_runs()
        if self.run_id is None and self.runs_combo.count():
            self.set_run(self.runs_combo.itemData(0))
        self._update_count()
        self._sync_enabled()
        self._status(f"Deleted {deletion.summary()}")
        self.runs_changed.emit()
        return deletion

    def delete_candidates(self, ids: list[int]) -> store_edit.Deletion | None:
        """Delete the candidates ``ids`` (no question asked) and re-read the run."""
        if self.project is None or not ids or (self.relax_job is not None and self.relax_job.running):
            return None
        try:
            deletion = store_edit.delete_candidates(self.project, ids)
        except CrystalStudioError as exc:
            self._refused("Cannot delete the candidates", exc)
            return None
        self.refresh()
        self._status(f"Deleted {deletion.what}.")
        return deletion

    def rename_run_dialog(self) -> None:
        if self.project is None or self.run_id is None:
            return
        run = model_store.get_run(self.project, self.run_id)
        name = edit_dialogs.ask_name(self, "Rename run", f"Name of run #{run.id} (empty: none):", run.name)
        if name is not None:
            self.rename_run(run.id, name)

    def delete_run_dialog(self) -> None:
        if self.project is None or self.run_id is None:
            return
        run_id = self.run_id
        try:
            plan = store_edit.run_deletion(self.project, run_id)
        except CrystalStudioError as exc:
            self._refused("Cannot delete the run", exc)
            return
        if edit_dialogs.confirm_delete(self, "Delete run", f"Delete {plan.what} with {plan.removed_text()}?",
                                       " ".join(plan.kept) or "This cannot be undone."):
            self.delete_run(run_id)

    def delete_candidates_dialog(self) -> None:
        ids = self.selected_ids()
        if self.project is None or not ids:
            return
        formulas = ", ".join(f"{self.record(i).formula} c{i}" for i in ids[:5]) + ("…" if len(ids) > 5 else "")
        if edit_dialogs.confirm_delete(self, "Delete candidates",
                                       f"Delete {len(ids)} candidate{'' if len(ids) == 1 else 's'} ({formulas})?",
                                       "Their structures, relaxations and notes go; this cannot be undone."):
            self.delete_candidates(ids)

    def edit_note_dialog(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 1:
            return
        record = self.record(ids[0])
        note = edit_dialogs.ask_name(self, "Edit note", f"Note on {record.formula} c{record.id}:", record.notes)
        if note is not None:
            self.set_notes(record.id, note)

    def compare_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1 and self.record(ids[0]).relaxed_structure_json is not None:
            record = self.record(ids[0])
            pairs = [self._structure_and_row(record, relaxed=False), self._structure_and_row(record, relaxed=True)]
        elif 2 <= len(ids) <= MAX_COMPARED:
            pairs = [self._structure_and_row(self.record(i)) for i in ids]
        else:
            self._status(f"Select 2–{MAX_COMPARED} candidates to compare ({len(ids)} selected), or one relaxed "
                         "candidate to compare before/after")
            return
        rows = []
        for label, _structure, row in pairs:
            rows.append({**row, "reduced_formula": label})
        self.compare_requested.emit(rows, [s for _, s, _ in pairs])

    def relax_selected(self) -> Job | None:
        """Relax the selected candidates with CHGNet in the background."""
        ids = self.selected_ids()
        if not ids or self.project is None or self.run_id is None:
            return None
        if self.relax_job is not None and self.relax_job.running:
            return None
        fmax, max_steps = self.fmax_spin.value(), self.relax_steps_spin.value()
        self._status(f"Relaxing {len(ids)} candidate(s) with CHGNet (fmax {fmax:g} eV/Å, ≤ {max_steps} steps)…")
        work = relax_work(self.project, self.run_id, ids, self.device, fmax, max_steps)
        self.relax_job = self.jobs.start(f"Relaxing {len(ids)} candidate(s)", work, self._relaxed)
        self.relax_job.done.connect(self._sync_enabled)
        self.relax_job.cancelled.connect(self._relax_cancelled)
        self._sync_enabled()
        return self.relax_job

    def cancel_relaxation(self) -> None:
        """Ask the running relaxation to stop (at its next check; finished candidates stay stored)."""
        if self.relax_job is not None and self.relax_job.running:
            self.relax_job.cancel()
            self._status("Cancelling the relaxation…")
            self._sync_enabled()

    def _relax_cancelled(self) -> None:
        self._status("Relaxation cancelled; finished ones are stored.")
        self.refresh()

    def _relaxed(self, results: list[dict]) -> None:
        self.last_relaxation = results
        self.refresh()
        survived = sum(bool(r.get("success_after")) for r in results)
        before = sum(bool(r.get("success_before")) for r in results)
        lines = [f"{html.escape(r['formula'])} c{r['id']}: E {r['energy_per_atom']:.3f} eV/atom, "
                 f"RMSD {r['rmsd']:.2f} Å, {'converged' if r['converged'] else 'not converged'}, "
                 f"{'successful' if r['success_after'] else 'fails'} after" for r in results[:4]]
        self._status(f"Relaxed {len(results)}: {survived} successful after relaxation ({before} before). "
                     + "; ".join(lines) + ("…" if len(results) > 4 else ""))
        self.relaxed_box.setChecked(True)

    def export_to(self, folder: str | Path, fmt: str = "cif", selected: bool = True,
                  relaxed: bool | None = None) -> Job | None:
        """Export the selected (or all successful) candidates to ``folder`` in ``fmt`` as a job."""
        if self.project is None or self.run_id is None:
            return None
        ids = self.selected_ids() if selected else None
        if selected and not ids:
            return None
        relaxed = self.export_relaxed_box.isChecked() if relaxed is None else relaxed
        what = f"{len(ids)} selected" if ids is not None else "the successful"
        self.export_job = self.jobs.start(f"Exporting {what} candidates",
                                          export_work(self.project, self.run_id, Path(folder), fmt, ids, relaxed,
                                                      self.export_overwrite_box.isChecked(),
                                                      fmt == "cif" and self.export_symmetrize_box.isChecked()),
                                          self._exported)
        return self.export_job

    def export_dialog(self, selected: bool) -> None:
        if self.project is None or self.run_id is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Export candidates to folder",
                                                  str(self.project.path.parent))
        if folder:
            self.export_to(folder, EXPORT_FORMATS[self.format_combo.currentText()], selected)

    def _exported(self, paths: list[Path]) -> None:
        self.last_export = paths
        where = Path(paths[0]).parent if paths else ""
        self._status(f"Exported {len(paths)} file(s) to {where}" if paths else "Nothing to export.")

    def _status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_message.emit(text)
