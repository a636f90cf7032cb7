"""Shared machinery of the live curves of long jobs (training, optimization).

:class:`ReportRelay` carries reports (progress events, step reports) from a job's worker thread to the
GUI thread without flooding its event loop; :class:`LiveCurves` is the base of a stack of plots vs step
with one ``PlotDataItem`` per metric, fed by :meth:`LiveCurves.add` and drawn by :meth:`LiveCurves.redraw`
(called by the panel's timer, at most every :data:`REDRAW_INTERVAL_MS`). A subclass says which plots
exist (:meth:`LiveCurves._make_plots`), which plot a metric goes to (:meth:`LiveCurves.plot_for`) and how
its curve looks (:meth:`LiveCurves._new_curve`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSplitter, QVBoxLayout, QWidget

REDRAW_INTERVAL_MS = 100  # curves are redrawn at most 10 times per second
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


class ReportRelay(QObject):
    """Carries reports from the worker thread to the GUI thread.

    :meth:`push` runs in the worker: it queues the report (if ``accept`` lets it through) and emits
    :attr:`arrived` only when the queue was empty, so a fast job cannot flood the event loop; :meth:`take`
    (GUI thread) empties it.
    """

    arrived = Signal()

    def __init__(self, parent: QObject | None = None, accept: Callable[[object], bool] | None = None):
        super().__init__(parent)
        self._accept = accept
        self._lock = threading.Lock()
        self._queue: list = []
        self._notified = False

    def push(self, report) -> None:
        if self._accept is not None and not self._accept(report):
            return
        with self._lock:
            self._queue.append(report)
            notify = not self._notified
            self._notified = True
        if notify:
            self.arrived.emit()

    def take(self) -> list:
        with self._lock:
            out, self._queue = self._queue, []
            self._notified = False
        return out


class LiveCurves(QWidget):
    """Live plots vs step stacked in a vertical splitter, one curve per plotted metric.

    ``series`` holds every metric's points (plotted or not), ``curves`` the curves made so far; a stored
    step ``s`` is drawn at x = ``s + X_OFFSET``.
    """

    X_LABEL = "step"
    X_OFFSET = 0

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True, background="w", foreground="#333")
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._plots = self._make_plots()
        splitter = QSplitter(Qt.Orientation.Vertical)
        for plot in self._plots:
            splitter.addWidget(plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.dirty = False

    def _make_plots(self) -> list[pg.PlotWidget]:
        """Create the plots (top to bottom); subclasses keep them as attributes too."""
        raise NotImplementedError

    def plot_for(self, name: str) -> pg.PlotWidget | None:
        """The plot a metric goes to, or None for a metric that is stored but not plotted."""
        raise NotImplementedError

    def _new_curve(self, plot: pg.PlotWidget, name: str) -> pg.PlotDataItem:
        raise NotImplementedError

    def _plot(self, title: str, ylabel: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(title=title)
        plot.setLabel("left", ylabel)
        plot.setLabel("bottom", self.X_LABEL)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.addLegend(offset=(-5, 5), labelTextSize="8pt", verSpacing=-6)
        plot.setMinimumHeight(120)
        return plot

    def clear(self) -> None:
        for plot in self._plots:
            plot.clear()
            if plot.plotItem.legend is not None:
                plot.plotItem.legend.clear()
        self.series.clear()
        self.curves.clear()
        self.dirty = False

    def add(self, step: int, metrics: dict[str, float]) -> None:
        """Queue one step's metrics; drawn on the next :meth:`redraw`."""
        for name, value in metrics.items():
            xs, ys = self.series.setdefault(name, ([], []))
            xs.append(float(step + self.X_OFFSET))
            ys.append(float(value))
        self.dirty = True

    def set_history(self, metrics: dict[str, list[tuple[int, float]]]) -> None:
        """Show a stored run's metrics (``run_metrics`` output)."""
        self.clear()
        for name, points in metrics.items():
            self.series[name] = ([float(s + self.X_OFFSET) for s, _ in points], [float(v) for _, v in points])
        self.dirty = True
        self.redraw()

    def _draw_order(self) -> Iterable[str]:
        """Metric names in the order their curves are made (later ones are drawn on top)."""
        return list(self.series)

    def redraw(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        for name in self._draw_order():
            xs, ys = self.series[name]
            curve = self.curves.get(name)
            if curve is None:
                plot = self.plot_for(name)
                if plot is None:
                    continue
                curve = self._new_curve(plot, name)
                self.curves[name] = curve
            curve.setData(xs, ys)

    def curve_names(self) -> list[str]:
        """Metrics that have a curve with data."""
        return [n for n, c in self.curves.items() if c.xData is not None and len(c.xData)]


DEVICES = ("auto", "cpu", "cuda")


class LiveJobMixin:
    """What a panel running one long job with live plots shares: the report relay and redraw timer,
    starting and cancelling the job, and the device choice.

    The panel provides ``jobs`` (JobManager), ``device_combo``, ``start_button``, ``cancel_button``,
    ``_drain`` (take reports from the relay), ``_tick`` (redraw), ``_progress``, ``_succeeded``,
    ``_stopped`` and ``_sync_enabled``, and may override :attr:`cancelling_text`.
    """

    job = None
    cancelling_text = "Cancelling…"

    def _init_live(self, accept: Callable[[object], bool] | None = None) -> None:
        self._relay = ReportRelay(self, accept=accept)
        self._relay.arrived.connect(self._drain)
        self._timer = QTimer(self, interval=REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self._tick)

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def set_device(self, device: str) -> None:
        """'auto', 'cpu' or 'cuda' ('gpu' is read as 'cuda')."""
        self.device_combo.setCurrentText("cuda" if device == "gpu" else device if device in DEVICES else "auto")

    def cancel(self) -> None:
        if self.running:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.status_label.setText(self.cancelling_text)

    def _launch_live(self, title: str, work, cancelled_text: str):
        """Start ``work`` as the panel's job, with live redraws until it ends."""
        self.job = self.jobs.start(title, work, self._succeeded)
        self.job.progress.connect(self._progress)
        self.job.failed.connect(lambda message, _details: self._stopped(f"Failed: {message}"))
        self.job.cancelled.connect(lambda: self._stopped(cancelled_text))
        self._timer.start()
        self._sync_enabled()
        return self.job

    def _build_run_row(self) -> QHBoxLayout:
        """Wire ``cancel_button`` and make ``progress_bar`` and ``status_label``; returns the row of
        start button, cancel button and progress bar (the status line is placed by the panel)."""
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress_bar, 1)
        return row

    def _load_run(self, run_id: int):
        """(run record, its metrics) from the project, or None with the reason in the status line."""
        from crystal_studio.core.errors import CrystalStudioError
        from crystal_studio.store import models as model_store

        try:
            return model_store.get_run(self.project, run_id), model_store.run_metrics(self.project, run_id)
        except CrystalStudioError as exc:
            self.status_label.setText(str(exc))
            return None

    def _finish_curves(self) -> None:
        self._timer.stop()
        self._drain()
        self._tick()
