"""Export dialog: selected structures → CIF (optionally symmetrized) / POSCAR / extxyz, one file each
or one zip; names from formula + id; says where the files went."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.progress import CancelToken, ProgressCallback
from crystal_studio.gui.jobs import Job, JobManager
from crystal_studio.store.exporting import export_structures
from crystal_studio.store.project import Project, StructureQuery

FORMATS = {"CIF": "cif", "POSCAR (VASP)": "poscar", "Extended XYZ": "extxyz"}


def export_work(project: Project, ids: list[int], out: str, fmt: str, symmetrize: bool, overwrite: bool = False):
    """The export as a job function (runs in a worker thread on its own store connection); existing
    files are refused unless ``overwrite``."""

    def work(progress: ProgressCallback, cancel: CancelToken) -> list[Path]:
        try:
            return export_structures(project, StructureQuery(ids=list(ids)), out, fmt, symmetrize,
                                     progress=progress, cancel=cancel, overwrite=overwrite)
        finally:
            project.close()

    return work


class ExportDialog(QDialog):
    """Export ``ids`` from ``project``. Emits :attr:`exported` with the written paths."""

    exported = Signal(list)

    def __init__(self, project: Project, ids: list[int], jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Export {len(ids)} structure{'s' if len(ids) != 1 else ''}")
        self.resize(560, 260)
        self.project = project
        self.ids = list(ids)
        self.jobs = jobs
        self.job: Job | None = None
        self.written: list[Path] = []

        self.format_combo = QComboBox()
        self.format_combo.addItems(list(FORMATS))
        self.format_combo.currentTextChanged.connect(self._format_changed)
        self.symmetrize_box = QCheckBox("Symmetrized (space-group setting instead of P1)")
        self.overwrite_box = QCheckBox("Replace files that already exist")
        self.overwrite_box.setToolTip("Without this, an export that would replace an existing file writes nothing "
                                      "and says which file is in the way")
        self.files_radio = QRadioButton("One file per structure, into a folder")
        self.zip_radio = QRadioButton("One zip archive")
        self.files_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.files_radio)
        group.addButton(self.zip_radio)
        self.zip_radio.toggled.connect(self._mode_changed)
        self.path_edit = QLineEdit(str(Path.home() / "crystal-studio-export"))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Format:", self.format_combo)
        form.addRow("", self.symmetrize_box)
        form.addRow("Write:", self.files_radio)
        form.addRow("", self.zip_radio)
        form.addRow("Destination:", path_row)
        form.addRow("", self.overwrite_box)

        self.result_label = QLabel(f"File names: formula_id (e.g. SrTiO3_{self.ids[0] if self.ids else 1}.cif).")
        self.result_label.setWordWrap(True)
        self.open_button = QPushButton("Open folder")
        self.open_button.setVisible(False)
        self.open_button.clicked.connect(self._open_folder)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.setEnabled(bool(self.ids))
        self.export_button.clicked.connect(self.start_export)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.result_label, 1)
        layout.addLayout(buttons)

    def fmt(self) -> str:
        return FORMATS[self.format_combo.currentText()]

    def _format_changed(self, _text: str) -> None:
        self.symmetrize_box.setEnabled(self.fmt() == "cif")

    def _mode_changed(self, zip_mode: bool) -> None:
        path = self.path_edit.text().strip()
        if zip_mode and not path.lower().endswith(".zip"):
            self.path_edit.setText(path.rstrip("/") + ".zip")
        elif not zip_mode and path.lower().endswith(".zip"):
            self.path_edit.setText(path[:-4])

    def _browse(self) -> None:
        if self.zip_radio.isChecked():
            path, _ = QFileDialog.getSaveFileName(self, "Export to zip", self.path_edit.text(), "Zip archives (*.zip)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into folder", self.path_edit.text())
        if path:
            self.path_edit.setText(path)

    def start_export(self) -> Job | None:
        """Start the export job (returns it)."""
        out = self.path_edit.text().strip()
        if not out:
            self.result_label.setText("<b>Choose a destination.</b>")
            return None
        if self.zip_radio.isChecked() and not out.lower().endswith(".zip"):
            out += ".zip"
        symmetrize = self.symmetrize_box.isChecked() and self.fmt() == "cif"
        self.export_button.setEnabled(False)
        self.result_label.setText("Exporting…")
        self.job = self.jobs.start(f"Exporting {len(self.ids)} structures",
                                   export_work(self.project, self.ids, out, self.fmt(), symmetrize,
                                               self.overwrite_box.isChecked()))
        self.job.succeeded.connect(self._on_done)
        self.job.done.connect(lambda: self.export_button.setEnabled(True))
        self.job.failed.connect(lambda message, _details: self.result_label.setText(f"<b>Export failed:</b> {message}"))
        self.job.cancelled.connect(lambda: self.result_label.setText("Export cancelled."))
        return self.job

    def _on_done(self, written: list[Path]) -> None:
        self.written = list(written)
        if not written:
            self.result_label.setText("Nothing was written.")
            return
        where = written[0] if len(written) == 1 else written[0].parent
        self.result_label.setText(f"Wrote {len(written)} file{'s' if len(written) != 1 else ''} to <b>{where}</b>")
        self.open_button.setVisible(True)
        self.exported.emit(self.written)

    def _open_folder(self) -> None:
        if self.written:
            folder = self.written[0].parent
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
