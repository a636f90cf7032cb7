"""Latent map: a dataset's latent codes under a VAE, projected to 2-D and coloured by a property, with the
queries of a running latent-space optimization drawn live on top.

Encoding the dataset (at most :data:`MAX_POINTS` structures, a seeded random subset beyond that) and
fitting the projection run as a :class:`~crystal_studio.gui.jobs.Job`; the GUI thread only draws. The
projection is PCA (numpy SVD), or UMAP when the ``umap`` package is importable. The optimization panel
feeds queries (``StepReport.latents``) through :meth:`LatentMap.add_queries`; they are drawn, projected
with the same projection, while the map shows the latent space of the run's crystal VAE.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent
from crystal_studio.core.properties import unit_of
from crystal_studio.gui.jobs import Job, JobManager
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project, StructureQuery

MAX_POINTS = 5000  # a seeded random subset of larger datasets is encoded
LATENT_KINDS = ("crystal_vae", "composition_vae")
CHUNK = 500  # structures read and encoded at a time
NO_COLOUR = "(none)"
COLOUR_MAP = "viridis"
COLOUR_PERCENTILES = (1, 99)  # the colour range, so that a few outliers do not wash out the map
DATASET_ROLE = Qt.ItemDataRole.UserRole + 1  # a model's training dataset, in the model combo


def projection_methods() -> list[str]:
    """The projections on offer: PCA, and UMAP when ``umap`` is installed."""
    return ["PCA"] + (["UMAP"] if importlib.util.find_spec("umap") is not None else [])


class Projection:
    """A 2-D projection fitted on latent codes (n, d); :attr:`points` are the fitted codes' coordinates."""

    def __init__(self, method: str, latents: np.ndarray, seed: int = 0):
        self.method = method
        if method == "UMAP":
            import umap

            self._umap = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, len(latents) - 1)), random_state=seed)
            self.points = self._umap.fit_transform(latents)
            self.transform(latents[:1])  # compiles the transform here, in the worker thread
            self.axis_labels = ("UMAP 1", "UMAP 2")
            return
        self.mean = latents.mean(axis=0)
        _, s, vt = np.linalg.svd(latents - self.mean, full_matrices=False)
        self.components = np.zeros((2, latents.shape[1]))
        self.components[:len(vt[:2])] = vt[:2]
        explained = (s[:2] ** 2 / max(float((s ** 2).sum()), 1e-300)).tolist() + [0.0, 0.0]
        self.axis_labels = tuple(f"PC {k + 1} ({explained[k]:.0%} of variance)" for k in range(2))
        self.points = self.transform(latents)

    def transform(self, latents) -> np.ndarray:
        """(n, 2) coordinates of latent codes (n, d)."""
        z = np.asarray(latents, dtype=float).reshape(len(latents), -1)
        if self.method == "UMAP":
            return self._umap.transform(z)
        return (z - self.mean) @ self.components.T


@dataclass
class LatentCodes:
    """A dataset's latent codes under one model, the structures' properties, and the fitted projection."""

    model_id: int
    dataset: str
    ids: np.ndarray  # structure ids, one per code
    latents: np.ndarray  # (n, latent)
    properties: dict[str, np.ndarray]  # name -> value per code (NaN where missing)
    total: int  # encodable-sized structures in the dataset, before subsampling
    skipped: int  # structures of the subset the model cannot encode
    projection: Projection | None = None


def _encode_chunk(project: Project, model, kind: str, ids: list[int]) -> tuple[list[int], np.ndarray]:
    """(ids encoded, latent means) of structures ``ids`` under ``model`` (those it cannot encode left out)."""
    import torch

    from crystal_studio.core.formulas import fraction_vector
    from crystal_studio.ml.elements import ELEMENTS
    from crystal_studio.ml.models.crystal_vae import structure_arrays

    with torch.no_grad():
        if kind == "crystal_vae":
            pairs = list(project.iter_structures(StructureQuery(ids=ids)))
            arrays, kept, _ = structure_arrays([s for _, s in pairs], model.config.max_sites)
            encoded = [pairs[k][0]["id"] for k in kept]
            z = model.encode(*model.tensors(arrays)) if kept else None
        else:
            encoded, vectors = [], []
            for row in project.page(StructureQuery(ids=ids), limit=len(ids), with_properties=False):
                try:
                    vectors.append(fraction_vector(row["reduced_formula"], ELEMENTS))
                except KeyError:
                    continue
                encoded.append(row["id"])
            z = model.encode(torch.as_tensor(np.array(vectors), dtype=torch.float32))[0] if vectors else None
    return encoded, (z.cpu().numpy() if z is not None else np.zeros((0, model.config.latent)))


def encode_dataset(project: Project, model_id: int, dataset: str, progress: ProgressCallback, cancel: CancelToken,
                   max_points: int = MAX_POINTS, seed: int = 0) -> LatentCodes:
    """The latent means of ``dataset`` (a seeded subset of at most ``max_points``) under VAE ``model_id``,
    on the CPU."""
    from crystal_studio.ml.kinds import get_kind
    from crystal_studio.ml.predictor import load_state

    record = model_store.get_model(project, model_id)
    if record.kind not in LATENT_KINDS:
        raise CrystalStudioError(f"model {model_id} is a '{record.kind}' model; the latent map needs a "
                                 f"{' or '.join(LATENT_KINDS)}")
    if dataset not in project.dataset_names():
        raise CrystalStudioError(f"no dataset '{dataset}' in {project.path.name}")
    where = f"model {model_id}"
    model = get_kind(record.kind).load().rebuild(record.hyperparameters, record.targets,
                                                 load_state(record.checkpoint, where), where).cpu()
    max_sites = model.config.max_sites if record.kind == "crystal_vae" else None
    ids = project.ids(StructureQuery(dataset=dataset, nsites_max=max_sites))
    total = len(ids)
    if total > max_points:
        ids = sorted(np.random.default_rng(seed).choice(ids, max_points, replace=False).tolist())
    encoded: list[int] = []
    latents = []
    for start in range(0, len(ids), CHUNK):
        cancel.check()
        chunk_ids, z = _encode_chunk(project, model, record.kind, ids[start:start + CHUNK])
        encoded += chunk_ids
        latents.append(z)
        done = min(start + CHUNK, len(ids))
        progress(ProgressEvent(done, len(ids), f"encoded {done:,} of {len(ids):,} structures"))
    if not encoded:
        raise CrystalStudioError(f"model {model_id} ({record.kind}) can encode no structure of '{dataset}'")
    values = project.properties_of(encoded)
    names = sorted({n for v in values.values() for n, x in v.items() if isinstance(x, int | float)})
    properties = {n: np.array([float(values.get(i, {}).get(n, math.nan)) for i in encoded]) for n in names}
    return LatentCodes(model_id, dataset, np.array(encoded, dtype=np.int64), np.concatenate(latents), properties,
                       total, len(ids) - len(encoded))


def latent_map_work(project: Project, model_id: int, dataset: str, method: str, codes: LatentCodes | None = None):
    """Job function: encode ``dataset`` under ``model_id`` (unless ``codes`` of them are given) and fit the
    ``method`` projection; closes the worker thread's store connection at the end."""

    def work(progress: ProgressCallback, cancel: CancelToken) -> LatentCodes:
        try:
            done = codes if codes is not None else encode_dataset(project, model_id, dataset, progress, cancel)
            progress(ProgressEvent(0, 0, f"fitting the {method} projection"))
            return replace(done, projection=Projection(method, done.latents))
        finally:
            project.close()

    return work


def colours(values: np.ndarray, colour_map: pg.ColorMap) -> tuple[list, tuple[float, float]]:
    """A brush per value (grey where NaN) on ``colour_map`` over the 1st–99th percentile of the finite
    values (outliers get the end colours), and that range."""
    finite = values[np.isfinite(values)]
    low, high = (float(v) for v in np.percentile(finite, COLOUR_PERCENTILES)) if finite.size else (0.0, 1.0)
    span = high - low if high > low else 1.0
    mapped = colour_map.map(np.clip((np.nan_to_num(values, nan=low) - low) / span, 0, 1), mode="qcolor")
    grey = pg.mkBrush(170, 170, 170, 120)
    return [pg.mkBrush(c) if math.isfinite(v) else grey for c, v in zip(mapped, values, strict=True)], (low, high)


class LatentMap(QWidget):
    """The map: model, dataset, projection and colour choices; the scatter with a colour bar; the queries of
    the followed run. See the module docstring."""

    structure_clicked = Signal(int)  # a dataset point was clicked: its structure id

    def __init__(self, jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True, background="w", foreground="#333")
        self.jobs = jobs
        self.project: Project | None = None
        self.codes: LatentCodes | None = None
        self.job: Job | None = None
        self.job_model: int | None = None  # the model the job maps
        self.queries_model: int | None = None  # the crystal VAE whose latent space the queries are in
        self.queries: list[tuple[int, np.ndarray]] = []  # (step, latents (q, d)) of the followed run
        self._query_xy = np.zeros((0, 2))  # projected queries, in order
        self._query_steps = np.zeros(0, dtype=np.int64)

        self.model_combo = QComboBox()
        self.model_combo.setObjectName("latentModel")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(18)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.dataset_combo = QComboBox()
        self.dataset_combo.setObjectName("latentDataset")
        self.projection_combo = QComboBox()
        self.projection_combo.addItems(projection_methods())
        self.colour_combo = QComboBox()
        self.colour_combo.setObjectName("latentColour")
        self.colour_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.colour_combo.currentIndexChanged.connect(self._draw_dataset)
        self.map_button = QPushButton("Map")
        self.map_button.setObjectName("latentMapButton")
        self.map_button.setToolTip(f"Encode the dataset (at most {MAX_POINTS:,} structures, a random subset beyond) "
                                   "with the model and project the codes to 2-D")
        self.map_button.clicked.connect(self.start)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(160)
        self.progress_bar.setVisible(False)
        self.status_label = QLabel("Choose a VAE model and a dataset, then Map.")
        self.status_label.setObjectName("latentStatus")
        self.status_label.setWordWrap(True)

        self.plot = pg.PlotWidget(title="Latent map")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.legend = self.plot.addLegend(offset=(5, 5), labelTextSize="8pt")
        self.points = pg.ScatterPlotItem(size=5, pen=None, name="dataset")
        self.points.sigClicked.connect(self._clicked)
        self.query_points = pg.ScatterPlotItem(size=9, symbol="star", pen=pg.mkPen("#7a1f00", width=0.8),
                                               brush=pg.mkBrush(255, 127, 14, 200), name="BO queries")
        self.latest_points = pg.ScatterPlotItem(size=16, symbol="star", pen=pg.mkPen("#000", width=1.5),
                                                brush=pg.mkBrush("#d62728"), name="latest step")
        for item in (self.points, self.query_points, self.latest_points):
            self.plot.addItem(item)
        self.colour_map = pg.colormap.get(COLOUR_MAP)
        self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap=self.colour_map, interactive=False, width=14)
        self.plot.plotItem.layout.addItem(self.colour_bar, 2, 5)
        self.colour_bar.setVisible(False)

        controls = QHBoxLayout()
        for label, widget in (("Model", self.model_combo), ("Dataset", self.dataset_combo),
                              ("Projection", self.projection_combo)):
            controls.addWidget(QLabel(label))
            controls.addWidget(widget, 1 if widget is self.model_combo else 0)
        controls.addWidget(self.map_button)
        status = QHBoxLayout()
        status.addWidget(QLabel("Colour"))
        status.addWidget(self.colour_combo)
        status.addWidget(self.status_label, 1)
        status.addWidget(self.progress_bar)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addLayout(status)
        layout.addWidget(self.plot, 1)
        self._sync_enabled()

    # ---------------------------------------------------------------- inputs

    def set_project(self, project: Project | None) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
        self.project = project
        self.codes = None
        self.clear_queries()
        self._draw_dataset()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the VAE models and datasets, keeping the current choices."""
        model, dataset = self.model_id(), self.dataset_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.dataset_combo.clear()
        if self.project is not None:
            for m in model_store.list_models(self.project):
                if m.kind in LATENT_KINDS:
                    self.model_combo.addItem(f"#{m.id} {m.name or m.kind} ({m.kind})"
                                             + (f" · {m.dataset}" if m.dataset else ""), m.id)
                    self.model_combo.setItemData(self.model_combo.count() - 1, m.dataset, DATASET_ROLE)
            self.dataset_combo.addItems(self.project.dataset_names())
        self.model_combo.setCurrentIndex(max(self.model_combo.findData(model), 0))
        self.model_combo.blockSignals(False)
        if dataset and self.dataset_combo.findText(dataset) >= 0:
            self.dataset_combo.setCurrentText(dataset)
        else:
            self._model_changed()
        self._sync_enabled()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.refresh()  # datasets may have been imported meanwhile
        super().showEvent(event)

    def model_id(self) -> int | None:
        return self.model_combo.currentData()

    def set_model(self, model_id: int) -> None:
        """Choose model ``model_id`` (and its training dataset) when it is listed."""
        index = self.model_combo.findData(model_id)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)

    def _model_changed(self, *_args) -> None:
        dataset = self.model_combo.currentData(DATASET_ROLE)
        if dataset and self.dataset_combo.findText(dataset) >= 0:
            self.dataset_combo.setCurrentText(dataset)
        self._draw_queries()

    def _sync_enabled(self) -> None:
        running = self.job is not None and self.job.running
        self.map_button.setEnabled(not running and self.model_combo.count() > 0 and self.dataset_combo.count() > 0)
        if self.project is not None and not self.model_combo.count():
            self.status_label.setText("No crystal or composition VAE in this project: train one in the Training panel.")

    # ---------------------------------------------------------------- mapping

    def start(self) -> Job | None:
        """Encode and project in the background with the current choices (the codes are reused when only
        the projection changed); returns the job."""
        if self.project is None or self.model_id() is None or not self.dataset_combo.currentText():
            return None
        if self.job is not None and self.job.running:
            self.job.cancel()
        model_id, dataset = self.model_id(), self.dataset_combo.currentText()
        codes = self.codes if self.codes is not None and (self.codes.model_id, self.codes.dataset) == (
            model_id, dataset) else None
        method = self.projection_combo.currentText()
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self.status_label.setText(f"Encoding '{dataset}' with model #{model_id}…" if codes is None
                                  else f"Fitting the {method} projection…")
        work = latent_map_work(self.project, model_id, dataset, method, codes)
        job = self.jobs.start("Mapping the latent space", work, self._mapped)
        job.progress.connect(lambda event, j=job: self._progress(j, event))
        job.failed.connect(lambda message, _details, j=job: self._ended(j, f"Failed: {message}"))
        job.cancelled.connect(lambda j=job: self._ended(j, "Cancelled."))
        self.job, self.job_model = job, model_id
        self._sync_enabled()
        return job

    def follow(self, model_id: int) -> None:
        """A latent-space run on crystal VAE ``model_id`` starts: forget older queries and map that model
        (unless it is mapped already)."""
        self.clear_queries()
        self.queries_model = model_id
        self.set_model(model_id)
        mapped = self.codes is not None and self.codes.model_id == model_id
        mapping = self.job is not None and self.job.running and self.job_model == model_id
        if self.model_id() == model_id and not mapped and not mapping:
            self.start()

    def _progress(self, job: Job, event: ProgressEvent) -> None:
        if job is not self.job:
            return
        self.progress_bar.setRange(0, event.total)
        self.progress_bar.setValue(min(event.step, event.total))
        self.status_label.setText(event.message)

    def _ended(self, job: Job, text: str) -> None:
        if job is self.job:
            self.progress_bar.setVisible(False)
            self.status_label.setText(text)
            self._sync_enabled()

    def _mapped(self, codes: LatentCodes) -> None:
        if self.job is not None and self.job.result is not codes:
            return  # a later job replaced this one
        self.codes = codes
        self.progress_bar.setVisible(False)
        names = list(codes.properties)
        keep = self.colour_combo.currentText()
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        self.colour_combo.addItems(names + [NO_COLOUR])
        self.colour_combo.setCurrentText(keep if keep in names else (names[0] if names else NO_COLOUR))
        self.colour_combo.blockSignals(False)
        x_label, y_label = codes.projection.axis_labels
        self.plot.setLabel("bottom", x_label)
        self.plot.setLabel("left", y_label)
        subset = f" (random subset of {codes.total:,})" if codes.total > MAX_POINTS else ""
        skipped = f", {codes.skipped:,} not encodable" if codes.skipped else ""
        self.status_label.setText(f"{len(codes.ids):,} structures of '{codes.dataset}'{subset}{skipped}, "
                                  f"model #{codes.model_id}, {codes.latents.shape[1]}-d latent, "
                                  f"{codes.projection.method}.")
        self._draw_dataset()
        self._project_queries()
        self.plot.autoRange()
        self._sync_enabled()

    # ---------------------------------------------------------------- drawing

    def colour_property(self) -> str | None:
        name = self.colour_combo.currentText()
        return None if name in ("", NO_COLOUR) else name

    def _draw_dataset(self, *_args) -> None:
        if self.codes is None:
            self.points.setData([], [])
            self.colour_bar.setVisible(False)
            self.plot.setTitle("Latent map")
            return
        xy = self.codes.projection.points
        name = self.colour_property()
        if name is None:
            self.points.setData(x=xy[:, 0], y=xy[:, 1], data=self.codes.ids, brush=pg.mkBrush(70, 130, 180, 150))
            self.colour_bar.setVisible(False)
        else:
            brushes, levels = colours(self.codes.properties[name], self.colour_map)
            self.points.setData(x=xy[:, 0], y=xy[:, 1], data=self.codes.ids, brush=brushes)
            unit = unit_of(name)
            self.colour_bar.setLevels(levels)
            self.colour_bar.axis.setLabel(f"{name} ({unit})" if unit else name)
            self.colour_bar.setVisible(True)
        self.plot.setTitle(f"'{self.codes.dataset}' in the latent space of model #{self.codes.model_id}")

    def clear_queries(self) -> None:
        self.queries_model = None
        self.queries = []
        self._query_xy = np.zeros((0, 2))
        self._query_steps = np.zeros(0, dtype=np.int64)
        self._draw_queries()

    def add_queries(self, model_id: int, steps: list[tuple[int, list[list[float]]]]) -> None:
        """Queries of a running latent-space method on crystal VAE ``model_id``: (step, latents) pairs."""
        if model_id != self.queries_model:
            self.clear_queries()
            self.queries_model = model_id
        new = [(step, np.asarray(z, dtype=float)) for step, z in steps if len(z)]
        self.queries += new
        if self._showing_queries() and new:
            self._append_projected(new)
        self._draw_queries()

    def _showing_queries(self) -> bool:
        return self.codes is not None and self.codes.model_id == self.queries_model

    def _append_projected(self, steps: list[tuple[int, np.ndarray]]) -> None:
        xy = [self.codes.projection.transform(z) for _, z in steps]
        self._query_xy = np.concatenate([self._query_xy, *xy])
        self._query_steps = np.concatenate([self._query_steps, *[np.full(len(z), s) for s, z in steps]])

    def _project_queries(self) -> None:
        """Project every query again (a new projection was fitted)."""
        self._query_xy = np.zeros((0, 2))
        self._query_steps = np.zeros(0, dtype=np.int64)
        if self._showing_queries() and self.queries:
            self._append_projected(self.queries)
        self._draw_queries()

    def _draw_queries(self) -> None:
        shown = self._showing_queries() and len(self._query_xy) > 0
        xy = self._query_xy if shown else np.zeros((0, 2))
        latest = self._query_steps == self._query_steps.max() if shown else np.zeros(0, dtype=bool)
        self.query_points.setData(x=xy[~latest, 0], y=xy[~latest, 1])
        self.latest_points.setData(x=xy[latest, 0], y=xy[latest, 1])

    def query_count(self) -> int:
        """Queries drawn on the map."""
        return len(self.query_points.data) + len(self.latest_points.data)

    def _clicked(self, _item, points, *_args) -> None:
        if len(points):
            self.structure_clicked.emit(int(points[0].data()))

