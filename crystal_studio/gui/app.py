"""Application entry point and the main window.

This first window opens a project (the built-in one by default), lists its datasets and shows the
first structures of the selected one. The full desktop application (panels, viewer, jobs) grows
from here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from crystal_studio import __version__
from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.store.project import Project, StructureQuery

PREVIEW_ROWS = 200


class _OpenProjectWorker(QObject):
    """Opens (and for the built-in project, creates) a project off the GUI thread."""

    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, path: Path | None):
        super().__init__()
        self.path = path

    def run(self) -> None:
        try:
            if self.path is None:
                from crystal_studio.store.builtin import ensure_builtin_project

                project = ensure_builtin_project()
            else:
                project = Project.open(self.path)
            project.close()  # the GUI thread opens its own connection
            self.finished.emit(project.path)
        except CrystalStudioError as exc:
            self.failed.emit(str(exc))


class MainWindow(QMainWindow):
    """Dataset list on the left, structure table on the right."""

    def __init__(self, project_path: Path | None = None):
        super().__init__()
        self.project: Project | None = None
        self.setWindowTitle("Crystal Studio")
        self.resize(1100, 700)
        self.datasets = QListWidget()
        self.datasets.currentItemChanged.connect(self._show_dataset)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.caption = QLabel("")
        right = QWidget()
        layout = QVBoxLayout(right)
        layout.addWidget(self.caption)
        layout.addWidget(self.table)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.datasets)
        splitter.addWidget(right)
        splitter.setSizes([250, 850])
        self.setCentralWidget(splitter)
        self.statusBar().showMessage("Opening project…")
        self._thread = QThread(self)
        self._worker = _OpenProjectWorker(project_path)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.finished.connect(self._project_ready)
        self._worker.failed.connect(self._project_failed)
        self._worker.finished.connect(self._thread.quit)
        self._worker.failed.connect(self._thread.quit)
        self._thread.start()

    def _project_ready(self, path: Path) -> None:
        self.project = Project.open(path)
        self.setWindowTitle(f"Crystal Studio — {path.stem}")
        self.statusBar().showMessage(str(path))
        self.datasets.clear()
        for summary in self.project.datasets():
            item = QListWidgetItem(f"{summary.name}  ({summary.count})")
            item.setData(Qt.ItemDataRole.UserRole, summary.name)
            self.datasets.addItem(item)
        if self.datasets.count():
            self.datasets.setCurrentRow(0)

    def _project_failed(self, message: str) -> None:
        self.statusBar().showMessage("No project open")
        QMessageBox.critical(self, "Cannot open project", message)

    def _show_dataset(self, item: QListWidgetItem | None) -> None:
        if item is None or self.project is None:
            return
        name = item.data(Qt.ItemDataRole.UserRole)
        query = StructureQuery(dataset=name)
        rows = self.project.page(query, limit=PREVIEW_ROWS)
        props = sorted({p for r in rows for p in r.get("properties", {})})
        headers = ["id", "formula", "sites", "space group", *props]
        self.table.clear()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            values = [row["id"], row["reduced_formula"], row["nsites"],
                      f"{row['spacegroup_symbol']} ({row['spacegroup_number']})"]
            values += [row["properties"].get(p) for p in props]
            for j, value in enumerate(values):
                text = "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        total = self.project.count(query)
        self.caption.setText(f"<b>{name}</b>: {total} structures" + (
            f" (first {PREVIEW_ROWS} shown)" if total > PREVIEW_ROWS else ""))


def run_app(project_path: Path | None = None) -> int:
    """Start the Qt application on ``project_path`` (default: the built-in project)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Crystal Studio")
    app.setApplicationVersion(__version__)
    window = MainWindow(project_path)
    window.show()
    return app.exec()
