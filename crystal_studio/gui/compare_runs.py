"""Compare runs dialog: optimization runs of one target side by side (see
:func:`crystal_studio.design.comparison.compare_runs`)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.design.comparison import RunComparison, compare_runs
from crystal_studio.store.project import Project

COLUMNS = (  # header, tooltip, value
    ("Run", "Run id", lambda r: f"#{r.run_id}"),
    ("Method", "Optimization method", lambda r: r.method),
    ("Cand.", "Candidates evaluated", lambda r: r.n_candidates),
    ("Success (own)", "Share of candidates meeting the target, judged by the models the run optimized against",
     lambda r: r.success_own),
    ("Success (judge)", "The same, judged by an independent model the run never saw (— : not judged)",
     lambda r: r.success_judge),
    ("Relaxed", "Candidates relaxed with CHGNet", lambda r: r.relaxed),
    ("After relax. (own)", "Of the relaxed candidates, the share still successful after relaxation",
     lambda r: r.success_own_relaxed),
    ("After relax. (judge)", "The same under the independent judge", lambda r: r.success_judge_relaxed),
    ("Unique", "Share of candidates with a composition and structure not seen earlier in the run",
     lambda r: r.unique_rate),
    ("Time (s)", "Wall time of the run", lambda r: r.seconds),
)
RATE_COLUMNS = {3, 4, 6, 7, 8}


class _NumberItem(QTableWidgetItem):
    """A cell that sorts by its number (UserRole; a missing value sorts first), whatever its text."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.data(Qt.ItemDataRole.UserRole), other.data(Qt.ItemDataRole.UserRole)
        if isinstance(mine, int | float) and isinstance(theirs, int | float):
            return mine < theirs
        return mine is None and theirs is not None


class CompareRunsDialog(QDialog):
    """A table of the optimization runs that share a target, one row per run."""

    def __init__(self, project: Project, run_id: int | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare optimization runs")
        self.resize(1120, 360)
        self.runs: list[RunComparison] = compare_runs(project)
        self.spec_combo = QComboBox()
        keys: dict[str, str] = {}
        for run in self.runs:
            keys.setdefault(run.spec_key, run.spec_name or "(unnamed target)")
        counts = {key: sum(r.spec_key == key for r in self.runs) for key in keys}
        for key, name in keys.items():
            self.spec_combo.addItem(f"{name} — {counts[key]} run{'' if counts[key] == 1 else 's'}", key)
        chosen = next((r.spec_key for r in self.runs if r.run_id == run_id), None)
        if chosen is not None:
            self.spec_combo.setCurrentIndex(self.spec_combo.findData(chosen))
        self.spec_combo.currentIndexChanged.connect(lambda _: self._fill())
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        for k, (header, tip, _) in enumerate(COLUMNS):
            item = QTableWidgetItem(header)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(k, item)
        self.table.verticalHeader().setVisible(False)
        self.table.setSortingEnabled(True)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        top = QHBoxLayout()
        top.addWidget(QLabel("Target"))
        top.addWidget(self.spec_combo, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self._fill()

    def shown_runs(self) -> list[RunComparison]:
        """The runs of the chosen target, newest first."""
        key = self.spec_combo.currentData()
        return [r for r in self.runs if r.spec_key == key]

    def cell_text(self, row: int, header: str) -> str:
        column = next(k for k, (name, _, _) in enumerate(COLUMNS) if name == header)
        return self.table.item(row, column).text()

    def _fill(self) -> None:
        runs = self.shown_runs()
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(runs))
        for row, run in enumerate(runs):
            for column, (_, _, get) in enumerate(COLUMNS):
                value = get(run)
                item = _NumberItem()
                item.setData(Qt.ItemDataRole.UserRole, run.run_id if column == 0 else value)
                if value is None:
                    item.setText("—")
                elif column in RATE_COLUMNS:
                    item.setText(f"{value:.1%}")
                elif isinstance(value, float):
                    item.setText(f"{value:.1f}")
                else:
                    item.setText(str(value))
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        unjudged = sum(r.success_judge is None for r in runs)
        self.note.setText("Success under the optimized models is optimistic: compare methods by the judge's column "
                          "and after relaxation." + (f" {unjudged} run(s) had no judge." if unjudged else ""))
