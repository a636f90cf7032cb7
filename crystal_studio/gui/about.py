"""Help ▸ About Crystal Studio: versions, the compute device and the sources and licences of the shipped
data, collected by :func:`crystal_studio.gui.environment.environment_report` in a worker thread (it
imports torch) and shown as selectable text that can be copied into a bug report."""

from __future__ import annotations

from html import escape

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout, QWidget

from crystal_studio import __version__
from crystal_studio.gui.jobs import JobManager


def collect_report(_progress, _cancel) -> dict:
    """Job function: the environment report (versions, device, shipped data)."""
    from crystal_studio.gui.environment import environment_report

    return environment_report()


def about_html(report: dict) -> str:
    """The dialog's body for ``report`` (as from ``environment_report``)."""
    rows = "".join(f"<tr><td>{escape(k)}</td><td>&nbsp;&nbsp;{escape(v)}</td></tr>"
                   for k, v in report["versions"].items())
    data = "".join(f"<li style='margin-bottom:6px'><b>{escape(d['name'])}</b> <span style='color:#555'>({escape(d['files'])})</span><br>"
                   f"{escape(d['source'])}<br><i>Licence:</i> {escape(d['licence'])}</li>"
                   for d in report["shipped_data"])
    return (f"<h3>Versions</h3><table>{rows}</table>"
            f"<h3>Compute device</h3><p>{escape(report['device']['statement'])}</p>"
            f"<h3>Shipped data and models</h3><ul>{data}</ul>")


def about_text(report: dict) -> str:
    """The report as plain text (what Copy puts on the clipboard)."""
    lines = [f"Crystal Studio {__version__}"] + [f"{k}: {v}" for k, v in report["versions"].items()]
    lines += ["", f"Compute device: {report['device']['statement']}", "", "Shipped data and models:"]
    lines += [f"- {d['name']} ({d['files']}): {d['source']} Licence: {d['licence']}" for d in report["shipped_data"]]
    return "\n".join(lines)


class AboutDialog(QDialog):
    """The About box; fills itself when the report job (started on ``jobs``) returns."""

    def __init__(self, parent: QWidget | None, jobs: JobManager):
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle("About Crystal Studio")
        self.resize(660, 620)
        self.report: dict | None = None
        title = QLabel(f"<h2>Crystal Studio {escape(__version__)}</h2>"
                       "<p>Data-driven inverse design of inorganic crystals.</p>")
        self.body = QTextBrowser()
        self.body.setObjectName("aboutBody")
        self.body.setOpenExternalLinks(True)
        self.body.setPlainText("Collecting versions and detecting the compute device…")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.setToolTip("Copy this information (for a bug report)")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(lambda: QGuiApplication.clipboard().setText(about_text(self.report)))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.body, 1)
        layout.addWidget(buttons)
        self.job = jobs.start("Collecting versions", collect_report, self._show, show_errors=False)
        self.job.failed.connect(self._failed)

    def _show(self, report: dict) -> None:
        self.report = report
        self.body.setHtml(about_html(report))
        self.copy_button.setEnabled(True)

    def _failed(self, message: str, _details: str) -> None:
        self.body.setPlainText(f"Could not collect the versions: {message}")
