"""Property histogram and two-property scatter plot (pyqtgraph) of the filtered structures.

Values are read from the store in a background :class:`~crystal_studio.gui.jobs.Job`. Clicking a
scatter point emits :attr:`PropertyPlots.structure_clicked`; a box selection emits
:attr:`PropertyPlots.ids_selected` (the Datasets panel then shows just those rows); the selected
table rows are highlighted in the scatter with :meth:`PropertyPlots.highlight`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from crystal_studio.core.properties import unit_of
from crystal_studio.gui.jobs import Job
from crystal_studio.store.project import Project, StructureQuery

MAX_SCATTER_POINTS = 50_000  # a random subset beyond this keeps the plot fluid
HISTOGRAM_BINS = 60


def _label(name: str) -> str:
    unit = unit_of(name)
    return f"{name} ({unit})" if unit else name


def load_values(project: Project, names: list[str], query: StructureQuery) -> dict[str, dict[int, float]]:
    """{property: {structure id: value}} for ``names`` over ``query`` (runs in a worker thread)."""
    try:
        return {name: dict(project.property_values(name, query)) for name in names if name}
    finally:
        project.close()


class PropertyPlots(QWidget):
    """Histogram of one property beside a scatter of two, over the current table query."""

    structure_clicked = Signal(int)
    ids_selected = Signal(object)  # list of ids, or None when the box selection is removed

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True, background="w", foreground="#333")
        self.project: Project | None = None
        self.query = StructureQuery()
        self.values: dict[str, dict[int, float]] = {}
        self._job: Job | None = None  # the latest; its result is the one drawn
        self._jobs: list[Job] = []  # references keep running jobs alive
        self._scatter_ids = np.zeros(0, dtype=np.int64)
        self._scatter_xy = np.zeros((0, 2))
        self.roi: pg.RectROI | None = None

        self.hist_combo = QComboBox()
        self.x_combo = QComboBox()
        self.y_combo = QComboBox()
        for combo in (self.hist_combo, self.x_combo, self.y_combo):
            combo.setMinimumContentsLength(12)
            combo.currentTextChanged.connect(lambda _: self.reload())
        self.box_button = QPushButton("Box select")
        self.box_button.setCheckable(True)
        self.box_button.setToolTip("Drag a box over the scatter to show only those structures in the table")
        self.box_button.toggled.connect(self._toggle_box)
        self.status = QLabel("")
        self.status.setStyleSheet("color: #666;")

        self.hist_plot = pg.PlotWidget()
        self.hist_plot.setLabel("left", "count")
        self.hist_curve = self.hist_plot.plot([0, 1], [0], stepMode="center", fillLevel=0,
                                              brush=(70, 130, 180, 160), pen=pg.mkPen("#2f5f8a", width=1))
        self.scatter_plot = pg.PlotWidget()
        self.scatter = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(70, 130, 180, 110))
        self.scatter.sigClicked.connect(self._clicked)
        self.highlighted = pg.ScatterPlotItem(size=10, pen=pg.mkPen("#c8423a", width=2), brush=None)
        self.scatter_plot.addItem(self.scatter)
        self.scatter_plot.addItem(self.highlighted)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Histogram:"))
        controls.addWidget(self.hist_combo)
        controls.addSpacing(16)
        controls.addWidget(QLabel("Scatter x:"))
        controls.addWidget(self.x_combo)
        controls.addWidget(QLabel("y:"))
        controls.addWidget(self.y_combo)
        controls.addWidget(self.box_button)
        controls.addWidget(self.status, 1)
        splitter = QSplitter()
        splitter.addWidget(self.hist_plot)
        splitter.addWidget(self.scatter_plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(splitter, 1)

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.values = {}
        self._draw()

    def set_properties(self, names: list[str]) -> None:
        """Offer ``names`` in the combos (keeping choices that still exist)."""
        defaults = (0, 0, 1)  # histogram and x: the first property; y: the second
        for default, combo in zip(defaults, (self.hist_combo, self.x_combo, self.y_combo), strict=True):
            keep = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if keep in names:
                combo.setCurrentText(keep)
            elif names:
                combo.setCurrentIndex(min(default, len(names) - 1))
            combo.blockSignals(False)

    def set_query(self, query: StructureQuery) -> None:
        """Plot the structures matching ``query`` (its id restriction is ignored)."""
        self.query = dataclasses.replace(query, ids=None)
        self.reload()

    def reload(self) -> None:
        """Read the chosen properties in the background, then redraw."""
        if self.project is None:
            return
        if self._job is not None and self._job.running:
            self._job.cancel()
        self._jobs = [j for j in self._jobs if j.running]
        names = sorted({self.hist_combo.currentText(), self.x_combo.currentText(), self.y_combo.currentText()} - {""})
        project, query = self.project, self.query
        self.status.setText("loading…")
        job = Job("Reading property values", lambda progress, cancel: load_values(project, names, query))
        job.succeeded.connect(lambda values, j=job: self._loaded(j, values))
        job.failed.connect(lambda message, _details: self.status.setText(message))
        self._job = job
        self._jobs.append(job)
        job.start()

    def _loaded(self, job: Job, values: dict) -> None:
        if job is not self._job:
            return
        self.values = values
        self._draw()

    def _draw(self) -> None:
        name = self.hist_combo.currentText()
        data = np.fromiter(self.values.get(name, {}).values(), dtype=float)
        data = data[np.isfinite(data)]
        if data.size:
            counts, edges = np.histogram(data, bins=HISTOGRAM_BINS)
            self.hist_curve.setData(edges, counts)
        else:
            self.hist_curve.setData([0, 1], [0])
        self.hist_plot.setLabel("bottom", _label(name) if name else "")
        xs, ys = self.values.get(self.x_combo.currentText(), {}), self.values.get(self.y_combo.currentText(), {})
        ids = np.array(sorted(xs.keys() & ys.keys()), dtype=np.int64)
        if ids.size > MAX_SCATTER_POINTS:
            ids = np.sort(np.random.default_rng(0).choice(ids, MAX_SCATTER_POINTS, replace=False))
        self._scatter_ids = ids
        self._scatter_xy = np.array([[xs[i], ys[i]] for i in ids.tolist()]).reshape(-1, 2)
        self.scatter.setData(x=self._scatter_xy[:, 0], y=self._scatter_xy[:, 1], data=ids)
        self.scatter_plot.setLabel("bottom", _label(self.x_combo.currentText()))
        self.scatter_plot.setLabel("left", _label(self.y_combo.currentText()))
        self.highlighted.setData([], [])
        shown = f"{ids.size:,} points" + (" (random subset)" if ids.size == MAX_SCATTER_POINTS else "")
        self.status.setText(f"{data.size:,} values; {shown}" if self.values else "")

    def highlight(self, ids: list[int]) -> None:
        """Ring the scatter points of ``ids`` (the selected table rows)."""
        if not ids or not self._scatter_ids.size:
            self.highlighted.setData([], [])
            return
        mask = np.isin(self._scatter_ids, np.asarray(ids, dtype=np.int64))
        self.highlighted.setData(x=self._scatter_xy[mask, 0], y=self._scatter_xy[mask, 1])

    def _clicked(self, _item, points, *_args) -> None:
        if len(points):
            self.structure_clicked.emit(int(points[0].data()))

    def _toggle_box(self, on: bool) -> None:
        if on:
            (x0, x1), (y0, y1) = self.scatter_plot.viewRange()
            self.roi = pg.RectROI([x0 + 0.25 * (x1 - x0), y0 + 0.25 * (y1 - y0)],
                                  [0.5 * (x1 - x0), 0.5 * (y1 - y0)], pen=pg.mkPen("#c8423a", width=2))
            self.scatter_plot.addItem(self.roi)
            self.roi.sigRegionChangeFinished.connect(self._box_changed)
            self._box_changed()
        elif self.roi is not None:
            self.scatter_plot.removeItem(self.roi)
            self.roi = None
            self.ids_selected.emit(None)

    def box_ids(self) -> list[int]:
        """Ids of the scatter points inside the selection box."""
        if self.roi is None or not self._scatter_ids.size:
            return []
        (x, y), (w, h) = self.roi.pos(), self.roi.size()
        xy = self._scatter_xy
        inside = (xy[:, 0] >= x) & (xy[:, 0] <= x + w) & (xy[:, 1] >= y) & (xy[:, 1] <= y + h)
        return self._scatter_ids[inside].tolist()

    def _box_changed(self) -> None:
        self.ids_selected.emit(self.box_ids())
