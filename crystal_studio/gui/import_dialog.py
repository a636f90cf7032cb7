"""Import dialog: pick files, folders or zip archives, name the dataset, run the import as a Job and
show the importer's per-record report (what was skipped and why)."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.io import ImportOptions
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent
from crystal_studio.gui.jobs import Job, JobManager
from crystal_studio.store.importer import ImportReport, import_paths
from crystal_studio.store.project import Project

FILE_FILTER = ("Crystal files (*.cif *.mcif *.vasp *.poscar POSCAR* CONTCAR* *.extxyz *.xyz *.json *.csv *.gz *.zip);;"
               "All files (*)")


def import_work(project: Project, paths: list[str], dataset: str, options: ImportOptions, duplicates: str = "keep"):
    """The import as a job function (runs in a worker thread on its own store connection)."""

    def work(progress: ProgressCallback, cancel: CancelToken) -> ImportReport:
        try:
            return import_paths(project, paths, dataset, options, progress=progress, cancel=cancel,
                                duplicates=duplicates)
        finally:
            project.close()

    return work


def default_dataset_name(paths: list[str]) -> str:
    """A dataset name from the first path: its file name without crystal/compression suffixes."""
    if not paths:
        return ""
    name = Path(paths[0].rstrip("/")).name
    for suffix in (".gz", ".zip", ".csv", ".cif", ".extxyz", ".xyz", ".json", ".vasp"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "imported"


class ImportDialog(QDialog):
    """Choose what to import and into which dataset; shows progress and the report.

    Emits :attr:`imported` with the dataset name after a successful import.
    """

    imported = Signal(str)

    def __init__(self, project: Project, jobs: JobManager, paths: list[str] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import structures")
        self.resize(720, 560)
        self.project = project
        self.jobs = jobs
        self.job: Job | None = None
        self.report: ImportReport | None = None

        self.path_list = QListWidget()
        self.path_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        add_files = QPushButton("Add files…")
        add_files.clicked.connect(self._add_files)
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self._add_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_selected)
        path_buttons = QVBoxLayout()
        for button in (add_files, add_folder, remove):
            path_buttons.addWidget(button)
        path_buttons.addStretch(1)
        paths_row = QHBoxLayout()
        paths_row.addWidget(self.path_list, 1)
        paths_row.addLayout(path_buttons)

        self.dataset_combo = QComboBox()
        self.dataset_combo.setEditable(True)
        self.dataset_combo.addItems(project.dataset_names())
        self.dataset_combo.setCurrentText("")
        self.dataset_combo.lineEdit().setPlaceholderText("new or existing dataset name")
        self.ordered_box = QCheckBox("Partial occupancies: keep the majority species (instead of skipping)")
        self.reject_close_box = QCheckBox("Skip structures with atoms closer than 0.5 Å (instead of flagging them)")
        self.skip_repeats_box = QCheckBox("Skip records whose id is already in the dataset (instead of importing "
                                          "them again)")
        form = QFormLayout()
        form.addRow("Dataset:", self.dataset_combo)
        form.addRow("", self.ordered_box)
        form.addRow("", self.reject_close_box)
        form.addRow("", self.skip_repeats_box)

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.summary = QLabel("Files: CIF (multi-block), POSCAR/CONTCAR, extended XYZ, pymatgen JSON, CSV with a "
                              "CIF column; folders are searched recursively; .zip and .gz are read directly.")
        self.summary.setWordWrap(True)
        self.issues = QTableWidget(0, 2)
        self.issues.setHorizontalHeaderLabels(["Record", "Why it was skipped"])
        self.issues.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.issues.horizontalHeader().setStretchLastSection(True)
        self.issues.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.issues.setVisible(False)

        self.import_button = QPushButton("Import")
        self.import_button.setDefault(True)
        self.import_button.clicked.connect(self.start_import)
        self.cancel_button = QPushButton("Cancel import")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_import)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.import_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Files, folders and zip archives to import:"))
        layout.addLayout(paths_row, 1)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.summary)
        layout.addWidget(self.issues, 2)
        layout.addLayout(buttons)
        self.add_paths(paths or [])

    # ---------------------------------------------------------------- paths

    def paths(self) -> list[str]:
        return [self.path_list.item(i).text() for i in range(self.path_list.count())]

    def add_paths(self, paths: list[str]) -> None:
        """Add ``paths`` (duplicates ignored); proposes a dataset name from the first one."""
        existing = set(self.paths())
        for path in paths:
            if path not in existing:
                self.path_list.addItem(path)
                existing.add(path)
        if not self.dataset_combo.currentText() and self.paths():
            self.dataset_combo.setCurrentText(default_dataset_name(self.paths()))

    def _add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add crystal files or zip archives", "", FILE_FILTER)
        self.add_paths(files)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of crystal files")
        if folder:
            self.add_paths([folder])

    def _remove_selected(self) -> None:
        for item in self.path_list.selectedItems():
            self.path_list.takeItem(self.path_list.row(item))

    # ---------------------------------------------------------------- running

    def options(self) -> ImportOptions:
        return ImportOptions(ordered_approximation=self.ordered_box.isChecked(),
                             reject_close_atoms=self.reject_close_box.isChecked())

    def duplicates(self) -> str:
        """The import's policy for records whose id is already in the dataset."""
        return "skip" if self.skip_repeats_box.isChecked() else "keep"

    def start_import(self) -> Job | None:
        """Start the import job (returns it), or explain what is missing."""
        paths, dataset = self.paths(), self.dataset_combo.currentText().strip()
        if not paths:
            self.summary.setText("<b>Add at least one file, folder or zip archive.</b>")
            return None
        if not dataset:
            self.summary.setText("<b>Give the dataset a name.</b>")
            return None
        self.report = None
        self.issues.setVisible(False)
        self.summary.setText(f"Importing into “{dataset}”…")
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.import_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.job = self.jobs.start(f"Importing into {dataset}", import_work(self.project, paths, dataset,
                                                                             self.options(), self.duplicates()))
        self.job.progress.connect(self._on_progress)
        self.job.succeeded.connect(self._on_report)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.failed.connect(lambda message, _details: self._finish(f"<b>Import failed:</b> {message}"))
        return self.job

    def cancel_import(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.summary.setText("Cancelling…")

    def _on_progress(self, event: ProgressEvent) -> None:
        if event.total:
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.step)
            self.progress.setFormat(f"{event.message} %v / %m")
        else:
            self.progress.setRange(0, 0)

    def _finish(self, text: str) -> None:
        self.progress.setVisible(False)
        self.import_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.summary.setText(text)

    def _on_cancelled(self) -> None:
        self._finish("Import cancelled; nothing was added to the project.")

    def _on_report(self, report: ImportReport) -> None:
        self.report = report
        flagged = f" ({report.flagged} flagged: atoms too close)" if report.flagged else ""
        repeats = f"<br>Note: {html.escape(report.repeat_note())}." if report.repeated else ""
        self._finish(f"<b>Imported {report.imported}</b> structures into “{html.escape(report.dataset)}”{flagged}; "
                     f"<b>skipped {report.skipped}</b>.{repeats}")
        self.issues.setRowCount(len(report.issues))
        for row, issue in enumerate(report.issues):
            for col, text in enumerate((issue.source, issue.reason)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.issues.setItem(row, col, item)
        self.issues.resizeColumnToContents(0)
        self.issues.setVisible(bool(report.issues))
        self.close_button.setFocus(Qt.FocusReason.OtherFocusReason)
        if report.imported:
            self.imported.emit(report.dataset)

    def reject(self) -> None:
        """Closing while importing cancels the import first."""
        self.cancel_import()
        super().reject()
