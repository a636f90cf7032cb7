"""Run Jobs (``work(progress, cancel) -> result``) in worker threads and show them in the GUI.

A :class:`Job` wraps one call of the job protocol from :mod:`crystal_studio.core.progress` in a
:class:`~PySide6.QtCore.QThread`. Progress events become the :attr:`Job.progress` signal (throttled to
about 20 per second so a chatty worker cannot flood the event loop), cancellation sets the job's
:class:`~crystal_studio.core.progress.CancelToken`, and the outcome arrives as exactly one of
:attr:`Job.succeeded`, :attr:`Job.failed` or :attr:`Job.cancelled`, followed by :attr:`Job.done`.

:class:`JobManager` owns the running jobs of a window: it starts them, shows failures in an
:class:`ErrorDialog` (the user-facing message, with the traceback under "Show Details…"), and lets
the window cancel and wait for everything on close. :class:`JobsStatusWidget` shows the running jobs
in a status bar with a progress bar and a cancel button each.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QProgressBar, QToolButton, QWidget

from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent

Work = Callable[[ProgressCallback, CancelToken], Any]

PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress signals per second reach the GUI thread


class _JobThread(QThread):
    """The worker thread of one job; reports through signals queued to the GUI thread."""

    progressed = Signal(object)  # ProgressEvent
    succeeded = Signal(object)  # result
    failed = Signal(str, str)  # user-facing message, details (traceback)
    cancelled = Signal()

    def __init__(self, title: str, work: Work, cancel: CancelToken, parent: QObject | None = None):
        super().__init__(parent)
        self._title = title
        self._work = work
        self._cancel = cancel
        self._last_emit = 0.0

    def _progress(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        final = event.total and event.step >= event.total
        if final or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            self.progressed.emit(event)

    def run(self) -> None:
        try:
            result = self._work(self._progress, self._cancel)
        except Cancelled:
            self.cancelled.emit()
        except CrystalStudioError as exc:
            self.failed.emit(str(exc), traceback.format_exc())
        except Exception as exc:  # noqa: BLE001 - a bug in a job must not take the window down
            self.failed.emit(f"Unexpected error while {self._title.lower()}: {type(exc).__name__}: {exc}",
                             traceback.format_exc())
        else:
            if self._cancel.cancelled:
                self.cancelled.emit()
            else:
                self.succeeded.emit(result)


class Job(QObject):
    """One long operation running in its own thread.

    Signals are delivered in the thread that created the job (the GUI thread). After the outcome
    signal, :attr:`done` is emitted once; :attr:`state` is then ``"succeeded"``, ``"failed"`` or
    ``"cancelled"`` and :attr:`result` / :attr:`error` hold what came back.
    """

    progress = Signal(object)  # ProgressEvent
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, title: str, work: Work, parent: QObject | None = None):
        super().__init__(parent)
        self.title = title
        self.token = CancelToken()
        self.state = "pending"
        self.result: Any = None
        self.error: tuple[str, str] | None = None
        self.last_event: ProgressEvent | None = None
        self._thread = _JobThread(title, work, self.token, self)
        self._thread.progressed.connect(self._on_progress)
        self._thread.succeeded.connect(self._on_succeeded)
        self._thread.failed.connect(self._on_failed)
        self._thread.cancelled.connect(self._on_cancelled)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        """Start the worker thread."""
        self.state = "running"
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next ``cancel.check()``; returns at once."""
        self.token.cancel()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the worker thread has ended (not processing queued signals); True if it did."""
        if timeout_ms < 0:
            return self._thread.wait()
        return self._thread.wait(timeout_ms)

    def _on_progress(self, event: ProgressEvent) -> None:
        if self.state == "running":
            self.last_event = event
            self.progress.emit(event)

    def _finish(self, state: str) -> None:
        self.state = state
        self._thread.wait()

    def _on_succeeded(self, result: Any) -> None:
        self.result = result
        self._finish("succeeded")
        self.succeeded.emit(result)
        self.done.emit()

    def _on_failed(self, message: str, details: str) -> None:
        self.error = (message, details)
        self._finish("failed")
        self.failed.emit(message, details)
        self.done.emit()

    def _on_cancelled(self) -> None:
        self._finish("cancelled")
        self.cancelled.emit()
        self.done.emit()


class ErrorDialog(QMessageBox):
    """A non-blocking error box: the user-facing message, the technical details expandable."""

    def __init__(self, parent: QWidget | None, title: str, message: str, details: str = ""):
        super().__init__(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Close, parent)
        self.setObjectName("errorDialog")
        self.setTextFormat(Qt.TextFormat.PlainText)
        if details:
            self.setDetailedText(details)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> ErrorDialog:
    """Show an :class:`ErrorDialog` window-modally without blocking; returns it."""
    dialog = ErrorDialog(parent, title, message, details)
    dialog.open()
    return dialog


class _FullCollectionPause:
    """Python's full (generation 2) garbage collections are paused while any job runs.

    A full collection walks every object of the process (Qt, VTK, pymatgen and torch: millions) holding
    the GIL, so whichever thread triggers it stalls the window for 100–350 ms; a job that allocates a lot
    (a torch training's first ``torch.optim`` step imports ``torch._dynamo``) triggers several. While jobs
    run, only the young generations are collected (cheap: bounded by recent allocations), and every object
    alive when a job starts is frozen (``gc.freeze``: modules, widgets, the open project), so the full
    collections that resume after the last job walk only what was made since. Objects freed by reference
    counting, nearly all of them, are freed as usual; only unreachable reference cycles that reached the
    old generation before a job starts are kept for good. Measured in docs/benchmarks.md (issue 15).
    """

    running = 0
    saved_threshold = gc.get_threshold()  # replaced by the thresholds in force when the first job starts

    @classmethod
    def job_started(cls) -> None:
        gc.collect(1)  # the young generations' garbage is not frozen with the rest (cheap: recent objects only)
        gc.freeze()
        if cls.running == 0:
            cls.saved_threshold = gc.get_threshold()
            young, middle, _ = cls.saved_threshold
            gc.set_threshold(young, middle, 2**31 - 1)  # generation 2 collected only after 2³¹ gen-1 passes
        cls.running += 1

    @classmethod
    def job_ended(cls) -> None:
        cls.running -= 1
        if cls.running == 0:
            gc.set_threshold(*cls.saved_threshold)


class JobManager(QObject):
    """Starts jobs, remembers the running ones and reports their failures in a dialog."""

    job_started = Signal(object)  # Job
    job_finished = Signal(object)  # Job

    def __init__(self, parent_widget: QWidget | None = None):
        super().__init__(parent_widget)
        self._widget = parent_widget
        self.jobs: list[Job] = []
        self._retired: list[Job] = []  # finished jobs, released on the next finish (never inside their own signal)
        self.last_error_dialog: ErrorDialog | None = None

    def start(self, title: str, work: Work, on_success: Callable[[Any], None] | None = None,
              show_errors: bool = True) -> Job:
        """Run ``work`` in a new thread; ``on_success(result)`` is called in the GUI thread (which
        keeps responding meanwhile, see :class:`_FullCollectionPause`)."""
        _FullCollectionPause.job_started()
        job = Job(title, work)
        if on_success is not None:
            job.succeeded.connect(on_success)
        if show_errors:
            job.failed.connect(lambda message, details, t=title: self._show_failure(t, message, details))
        job.done.connect(lambda j=job: self._forget(j))
        job.done.connect(_FullCollectionPause.job_ended)
        self.jobs.append(job)
        job.start()
        self.job_started.emit(job)
        return job

    def _show_failure(self, title: str, message: str, details: str) -> None:
        self.last_error_dialog = show_error(self._widget, f"{title} failed", message, details)

    def _forget(self, job: Job) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
        self._retired = [job]
        self.job_finished.emit(job)

    def cancel_all(self, wait_ms: int = 5000) -> None:
        """Cancel every running job and wait (up to ``wait_ms`` each) for its thread to end."""
        for job in list(self.jobs):
            job.cancel()
        for job in list(self.jobs):
            job.wait(wait_ms)


JOB_LABEL_WIDTH = 240  # px of a job's text in the status bar; longer text is elided, in full in its tooltip


class _JobRow(QWidget):
    """Title, message, progress bar and cancel button of one job in the status bar."""

    def __init__(self, job: Job, parent: QWidget | None = None):
        super().__init__(parent)
        self.job = job
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        self.label = QLabel()
        self.label.setFixedWidth(JOB_LABEL_WIDTH)
        self._set_text(job.title)
        self.bar = QProgressBar()
        self.bar.setFixedWidth(140)
        self.bar.setMaximumHeight(16)
        self.bar.setRange(0, 0)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("✕")
        self.cancel_button.setToolTip(f"Cancel {job.title.lower()}")
        self.cancel_button.setAutoRaise(True)
        self.cancel_button.clicked.connect(self._cancel)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        job.progress.connect(self._on_progress)

    def _cancel(self) -> None:
        self.job.cancel()
        self.cancel_button.setEnabled(False)
        self._set_text(f"{self.job.title}: cancelling…")

    def _set_text(self, text: str) -> None:
        """Show ``text`` elided to the label's width; the tooltip holds all of it."""
        self.label.setText(self.label.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, JOB_LABEL_WIDTH))
        self.label.setToolTip(text)

    def _on_progress(self, event: ProgressEvent) -> None:
        if event.total:
            self.bar.setRange(0, event.total)
            self.bar.setValue(min(event.step, event.total))
        else:
            self.bar.setRange(0, 0)
        if self.cancel_button.isEnabled():
            self._set_text(f"{self.job.title}: {event.message}" if event.message else self.job.title)


class JobsStatusWidget(QWidget):
    """Status-bar widget listing the running jobs of a :class:`JobManager`."""

    def __init__(self, manager: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.rows: dict[Job, _JobRow] = {}
        manager.job_started.connect(self._add)
        manager.job_finished.connect(self._remove)
        self.setVisible(False)

    def _add(self, job: Job) -> None:
        row = _JobRow(job, self)
        self.rows[job] = row
        self._layout.addWidget(row)
        self.setVisible(True)

    def _remove(self, job: Job) -> None:
        row = self.rows.pop(job, None)
        if row is not None:
            row.deleteLater()
        self.setVisible(bool(self.rows))
