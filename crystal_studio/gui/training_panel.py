"""Training panel: train property predictors and generative models on a dataset, watch live curves, read
parity plots, manage models.

The run is :func:`crystal_studio.ml.training.train_model` (or :func:`~crystal_studio.ml.training.resume_training`
for a cancelled, failed or killed run) in a :class:`~crystal_studio.gui.jobs.Job` thread; torch is only
imported inside the job functions. The job's progress callback is wrapped so that every epoch's metrics
(and each batch's loss) are queued in a relay *before* the job runner's progress throttling, so no epoch is
lost; a 10 Hz timer redraws the curves with ``setData`` (one ``PlotDataItem`` per metric): train/val loss
(with the batch loss faintly behind) and MAE per target (validation solid, training dashed), vs epoch
(members of an ensemble follow each other on the same axis, as their metrics are stored).

After a run completes, the test ids stored with the run (``parameters['split']['test']``) are predicted
again with the stored model (another job), and each target gets a parity plot (predicted vs true, MAE in
the corner) and a histogram of its residuals. The models table lists every model with its test metrics,
dataset and date; models can be renamed, deleted, exported to a file and imported from one (weights-only).

The kinds on offer come from the registry (:mod:`crystal_studio.ml.kinds`). A generative kind (the
composition VAE) predicts no properties: its targets list is disabled with a note, the predictor's
split/ensemble/size fields give way to a table of the kind's own settings (built from
``describe_options(config_class(kind))``, as the Optimization panel shows a method's settings), and
the curves show its loss terms (reconstruction, KL, classification; validation solid, training dashed)
and validation accuracies instead of MAE per target. The csp_vae (role 'csp', for LCOMs structure
prediction in the Generate panel) is trained the same way: its own settings, its VAE terms and then its
two energy surrogates' terms on the curves, no parity plot.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent
from crystal_studio.core.properties import unit_of
from crystal_studio.gui.combos import refill_combo
from crystal_studio.gui.jobs import Job, JobManager
from crystal_studio.gui.live_plots import DEVICES, PALETTE, LiveCurves, LiveJobMixin
from crystal_studio.gui.settings_table import SettingsTable
from crystal_studio.ml.kinds import CSP_KINDS, GENERATOR_KINDS, KIND_DEFAULTS, KINDS, PREDICTOR_KINDS
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project, StructureQuery

RESUMABLE = ("cancelled", "failed", "interrupted", "running")  # interrupted: its process ended (marked on open)
MODEL_FILE_FILTER = "Crystal Studio model (*.pt);;All files (*)"
ROLE_ID = Qt.ItemDataRole.UserRole
MODEL_COLUMNS = ("ID", "Name", "Targets", "Test MAE", "Dataset", "Created")
# kinds trained with their own settings table and no parity plot: generative models and the csp_vae
# (role 'csp': the composition-conditioned crystal VAE with energy surrogates of LCOMs structure prediction)
OWN_SETTINGS_KINDS = {**GENERATOR_KINDS, **{k: KINDS[k].title for k in CSP_KINDS}}
TRAINABLE_KINDS = {k: KINDS[k].title for k in KINDS if k in PREDICTOR_KINDS or k in OWN_SETTINGS_KINDS}
KIND_FORM_SKIPS = ("kind", "device", "targets")  # a kind's own settings the form sets elsewhere
ACCURACY_WORDS = ("accuracy", "validity")  # a generative kind's metrics with these go to the accuracy plot
ACCURACY_LABELS = {"formula_accuracy": "exact formula (reconstruction)", "class_accuracy": "decomposition class"}


def kind_label(kind: str) -> str:
    """The short name of a kind in the kind box (its title up to the parenthesis; a csp kind: '… · LCOMs')."""
    label = TRAINABLE_KINDS[kind].split(" (")[0]
    return f"{label.split(' + ')[0]} · LCOMs" if kind in CSP_KINDS else label


def _with_unit(name: str) -> str:
    unit = unit_of(name)
    return f"{name} ({unit})" if unit else name


def _close_after(project: Project, fn):
    """A job function that runs ``fn(progress, cancel)`` and closes the worker thread's store connection."""

    def work(progress: ProgressCallback, cancel: CancelToken):
        try:
            return fn(progress, cancel)
        finally:
            project.close()

    return work


def training_work(project: Project, dataset: str, config: dict, name: str | None, on_event):
    """Job function: train a new model (``config`` holds :class:`TrainConfig` fields); ``on_event`` sees
    every progress event (in the worker thread) before the throttled job progress does."""

    def fn(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.ml.training import TrainConfig, train_model

        def relay(event: ProgressEvent) -> None:
            on_event(event)
            progress(event)

        return train_model(project, dataset, TrainConfig(**config), name or None, relay, cancel)

    return _close_after(project, fn)


def kind_training_work(project: Project, dataset: str, kind: str, settings: dict, name: str | None, on_event,
                       targets: list[str] | None = None):
    """Job function: train a new model of a kind with its own settings class (a generative kind);
    ``settings`` (name → value or text) are applied to the kind's defaults and checked; ``targets``: the
    optional property heads of a kind that has them."""

    def fn(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.ml.training import train_model

        def relay(event: ProgressEvent) -> None:
            on_event(event)
            progress(event)

        return train_model(project, dataset, kind_config(kind, settings, targets), name or None, relay, cancel)

    return _close_after(project, fn)


def kind_takes_targets(kind: str) -> bool:
    """Whether the settings of generative ``kind`` have optional property targets (imports its module)."""
    from crystal_studio.core.options import describe_options
    from crystal_studio.ml.kinds import config_class

    return any(o["name"] == "targets" for o in describe_options(config_class(kind)))


def kind_options(kind: str) -> list[dict]:
    """The settings of ``kind`` the Training panel lists in its table (imports the kind's module)."""
    from crystal_studio.core.options import describe_options
    from crystal_studio.ml.kinds import config_class

    return [o for o in describe_options(config_class(kind)) if o["name"] not in KIND_FORM_SKIPS]


def kind_config(kind: str, settings: dict, targets: list[str] | None = None):
    """The settings dataclass of ``kind`` with ``targets`` and ``settings`` applied and checked (OptionsError
    naming a bad one)."""
    from crystal_studio.core.options import apply_options
    from crystal_studio.ml.kinds import config_for

    return apply_options(config_for(kind, list(targets or [])), settings, kind)


def resume_work(project: Project, run_id: int, device: str | None, on_event):
    """Job function: continue training run ``run_id`` from its last checkpoint."""

    def fn(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.ml.training import resume_training

        def relay(event: ProgressEvent) -> None:
            on_event(event)
            progress(event)

        return resume_training(project, run_id, relay, cancel, device=device)

    return _close_after(project, fn)


@dataclass
class ParityData:
    """Test-split predictions of one model: per target the true values, the predictions and their spread."""

    model_id: int
    name: str
    run_id: int | None
    targets: list[str]
    true: dict[str, np.ndarray] = field(default_factory=dict)
    pred: dict[str, np.ndarray] = field(default_factory=dict)
    spread: dict[str, np.ndarray] = field(default_factory=dict)

    def mae(self, target: str) -> float:
        t, p = self.true[target], self.pred[target]
        return float(np.mean(np.abs(p - t))) if len(t) else float("nan")


def stored_test_ids(project: Project, record: model_store.ModelRecord) -> list[int]:
    """The test ids stored with the run that trained ``record``; CrystalStudioError when there are none."""
    if record.run_id is None:
        raise CrystalStudioError(f"model #{record.id} ({record.name}) was imported: this project holds no "
                                 "test split for it, so there is no parity plot")
    run = model_store.get_run(project, record.run_id)
    ids = (run.parameters.get("split") or {}).get("test") or []
    if not ids:
        raise CrystalStudioError(f"run #{run.id} stored no test split")
    return [int(i) for i in ids]


def parity_work(project: Project, model_id: int):
    """Job function: predict the stored test split of model ``model_id`` again; returns :class:`ParityData`."""

    def fn(progress: ProgressCallback, cancel: CancelToken) -> ParityData:
        from crystal_studio.ml.predictor import load_predictor, predict_structures

        record, predictor = load_predictor(project, model_id)
        ids = stored_test_ids(project, record)
        rows, structures = [], []
        for row, structure in project.iter_structures(StructureQuery(ids=ids)):
            rows.append(row)
            structures.append(structure)
        if not structures:
            raise CrystalStudioError(f"the test structures of model #{model_id} are no longer in the project")
        mean, std = predict_structures(predictor, structures, progress=progress, cancel=cancel)
        data = ParityData(model_id, record.name, record.run_id, list(predictor.targets))
        for k, target in enumerate(predictor.targets):
            true = np.array([row["properties"].get(target, np.nan) for row in rows], dtype=float)
            known = np.isfinite(true)
            data.true[target], data.pred[target], data.spread[target] = true[known], mean[known, k], std[known, k]
        return data

    return _close_after(project, fn)


def export_work(project: Project, model_id: int, path: str):
    def fn(_progress, _cancel):
        from crystal_studio.ml.predictor import export_model_file

        return str(export_model_file(project, model_id, path))

    return _close_after(project, fn)


def import_work(project: Project, path: str):
    def fn(_progress, _cancel):
        from crystal_studio.ml.predictor import import_model_file

        return import_model_file(project, path)

    return _close_after(project, fn)


class TrainingCurves(LiveCurves):
    """Live plots vs epoch: train/val loss (and batch loss) and MAE per target (val solid, train dashed);
    for a generative kind (:meth:`set_generator`) its loss terms instead of the MAE, and its validation
    accuracies in a third plot."""

    X_LABEL = "epoch (ensemble members in turn)"
    X_OFFSET = 1  # stored steps count from 0, epochs from 1

    def _make_plots(self) -> list[pg.PlotWidget]:
        self.loss_plot = self._plot("Loss (standardized)", "loss")
        self.mae_plot = self._plot("MAE per target", "MAE")
        self.accuracy_plot = self._plot("Validation accuracy", "fraction")
        self.accuracy_plot.setYRange(-0.02, 1.02, padding=0)
        self.accuracy_plot.setVisible(False)
        self.generator = False
        return [self.loss_plot, self.mae_plot, self.accuracy_plot]

    def set_generator(self, generator: bool) -> None:
        """Show the plots of a generative kind (loss terms, accuracies) or of a predictor (MAE per target)."""
        self.generator = generator
        self.loss_plot.setTitle("Loss (weighted sum)" if generator else "Loss (standardized)")
        self.mae_plot.setTitle("Loss terms (val solid, train dashed)" if generator else "MAE per target")
        self.mae_plot.setLabel("left", "loss" if generator else "MAE")
        self.accuracy_plot.setVisible(generator)
        for plot in self._plots:
            plot.setLabel("bottom", "epoch" if generator else self.X_LABEL)

    def add_epoch(self, step: int, metrics: dict[str, float]) -> None:
        """Queue one epoch's metrics (stored ``step``, from 0); drawn at x = step + 1 on the next redraw."""
        self.add(step, metrics)

    def add_batch(self, x: float, loss: float) -> None:
        xs, ys = self.series.setdefault("batch_loss", ([], []))
        xs.append(x)
        ys.append(loss)
        self.dirty = True

    def plot_for(self, name: str) -> pg.PlotWidget | None:
        if name in ("train_loss", "val_loss", "batch_loss"):
            return self.loss_plot
        if name.startswith(("val_mae/", "train_mae/")):
            return self.mae_plot
        split, _, term = name.partition("_")
        if self.generator and split in ("train", "val") and term and "/" not in term:
            # a generative kind's loss terms (reconstruction, kl, ...) and accuracies (formula, class, validity)
            return self.accuracy_plot if any(w in term for w in ACCURACY_WORDS) else self.mae_plot
        return None  # e.g. lr: stored, not plotted

    def _draw_order(self) -> list[str]:
        # batch loss first so that it lies behind the epoch curves
        return sorted(self.series, key=lambda n: n != "batch_loss")

    def _new_curve(self, plot: pg.PlotWidget, name: str) -> pg.PlotDataItem:
        if name == "batch_loss":
            return plot.plot([], [], pen=pg.mkPen((150, 150, 150, 90), width=1), name="batch")
        if name == "train_loss":
            return plot.plot([], [], pen=pg.mkPen("#1f4e8c", width=2), name="train")
        if name == "val_loss":
            return plot.plot([], [], pen=pg.mkPen("#d62728", width=2), name="validation")
        if plot is self.accuracy_plot or "/" not in name:  # a generative kind's term: val_kl, train_kl, ...
            split, term = name.split("_", 1)
            terms = sorted({n.split("_", 1)[1] for n in self.series if self.plot_for(n) is plot})
            color = PALETTE[(terms.index(term) if term in terms else 0) % len(PALETTE)]
            label = ACCURACY_LABELS.get(term, term.replace("_", " "))
            if split == "val":
                return plot.plot([], [], pen=pg.mkPen(color, width=2), name=label)
            return plot.plot([], [], pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))
        split, target = name.split("/", 1)
        targets = sorted({n.split("/", 1)[1] for n in self.series if n.startswith(("val_mae/", "train_mae/"))})
        color = PALETTE[targets.index(target) % len(PALETTE)] if target in targets else PALETTE[0]
        if split == "val_mae":
            return plot.plot([], [], pen=pg.mkPen(color, width=2), name=f"val {_with_unit(target)}")
        return plot.plot([], [], pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))


def calibration_curve(true: np.ndarray, pred: np.ndarray, spread: np.ndarray, points: int = 31
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(expected, observed) fractions of errors within k ensemble standard deviations for k in [0, 3]:
    expected for Gaussian errors, erf(k / sqrt 2); observed on the data. A curve below the diagonal
    means the spread is overconfident. Empty arrays when the spread is zero everywhere (one member)."""
    from math import erf, sqrt

    if not len(true) or not np.any(spread > 0):
        return np.zeros(0), np.zeros(0)
    ratio = np.abs(pred - true) / np.maximum(spread, 1e-12)
    ks = np.linspace(0.0, 3.0, points)
    expected = np.array([erf(k / sqrt(2.0)) for k in ks])
    observed = np.array([np.mean(ratio <= k) for k in ks])
    return expected, observed


class ParityPlots(pg.GraphicsLayoutWidget):
    """Per target: predicted vs true on the test split (MAE in the corner) above a residual histogram
    and, for ensembles, the calibration of the spread."""

    COLUMNS = 3

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground("w")
        self.data: ParityData | None = None
        self.parity: dict[str, pg.PlotItem] = {}
        self.histograms: dict[str, pg.PlotItem] = {}
        self.calibration: dict[str, pg.PlotItem] = {}
        self.mae_labels: dict[str, pg.TextItem] = {}
        self.setMinimumHeight(200)
        self.show_message("Train a model (or select one in Models and press “Parity”) to see its parity plots.")

    def show_message(self, text: str) -> None:
        self.clear()
        self.data = None
        self.parity.clear()
        self.histograms.clear()
        self.calibration.clear()
        self.mae_labels.clear()
        self.message = text
        self.addLabel(text, color="#555", size="9pt")

    def set_data(self, data: ParityData) -> None:
        self.clear()
        self.parity.clear()
        self.histograms.clear()
        self.calibration.clear()
        self.mae_labels.clear()
        self.data = data
        self.message = ""
        self.addLabel(f"Model #{data.model_id} {html.escape(data.name)} — test split"
                      + (f" of run #{data.run_id}" if data.run_id else ""), color="#333", size="9pt",
                      colspan=min(self.COLUMNS, max(1, len(data.targets))))
        for k, target in enumerate(data.targets):
            row, col = 1 + 3 * (k // self.COLUMNS), k % self.COLUMNS
            color = PALETTE[k % len(PALETTE)]
            true, pred = data.true[target], data.pred[target]
            unit = unit_of(target)
            p = self.addPlot(row=row, col=col, title=target)
            p.setLabel("bottom", f"true{f' ({unit})' if unit else ''}")
            p.setLabel("left", "predicted")
            p.showGrid(x=True, y=True, alpha=0.2)
            if len(true):
                lo = float(min(true.min(), pred.min()))
                hi = float(max(true.max(), pred.max()))
                pad = 0.05 * (hi - lo or 1.0)
                lo, hi = lo - pad, hi + pad
                p.plot([lo, hi], [lo, hi], pen=pg.mkPen("#888", width=1, style=Qt.PenStyle.DashLine))
                p.addItem(pg.ScatterPlotItem(true, pred, size=6, pen=None, brush=pg.mkBrush(color)))
                p.setRange(xRange=(lo, hi), yRange=(lo, hi), padding=0)
                label = pg.TextItem(f"MAE {data.mae(target):.3g}{f' {unit}' if unit else ''}\nn = {len(true)}",
                                    color="#000", anchor=(0, 0), fill=pg.mkBrush(255, 255, 255, 200))
                label.setPos(lo, hi)
                p.addItem(label)
                self.mae_labels[target] = label
            self.parity[target] = p
            h = self.addPlot(row=row + 1, col=col)
            h.setLabel("bottom", f"residual{f' ({unit})' if unit else ''}")
            h.setLabel("left", "count")
            h.setMaximumHeight(150)
            if len(true):
                residual = pred - true
                counts, edges = np.histogram(residual, bins=max(5, min(40, len(residual) // 2)))
                h.plot(edges, counts, stepMode="center", fillLevel=0, brush=pg.mkBrush(color), pen=pg.mkPen(color))
            self.histograms[target] = h
            expected, observed = calibration_curve(true, pred, data.spread[target])
            if len(expected):
                c = self.addPlot(row=row + 2, col=col)
                c.setLabel("bottom", "expected fraction within kσ")
                c.setLabel("left", "observed")
                c.setMaximumHeight(170)
                c.showGrid(x=True, y=True, alpha=0.2)
                c.plot([0, 1], [0, 1], pen=pg.mkPen("#888", width=1, style=Qt.PenStyle.DashLine))
                c.plot(expected, observed, pen=pg.mkPen(color, width=2))
                c.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
                self.calibration[target] = c


def _generator_scores(metrics: dict) -> tuple[str, str]:
    """(table cell, tooltip) of a generative model's stored validation metrics."""
    values = next((v for v in metrics.values() if isinstance(v, dict)), {})
    accuracy = values.get("val_formula_accuracy")
    surrogate = values.get("val_conservative_mae")  # a csp_vae's conservative energy surrogate
    cell = (f"recon. {accuracy:.0%} (val)" if isinstance(accuracy, int | float) else
            f"surrogate {surrogate:.3g} eV/atom (val)" if isinstance(surrogate, int | float) else "")
    details = "\n".join(f"{k}: {v:.4g}" for k, v in values.items() if isinstance(v, int | float))
    return cell, details


class TrainingPanel(LiveJobMixin, QWidget):
    """Dataset, targets and settings; start/cancel/resume; live curves; parity plots; trained models.
    See the module docstring."""

    cancelling_text = "Cancelling (at the end of the current batch)…"

    model_trained = Signal(int)  # id of a model a run of this panel just stored
    models_changed = Signal()  # a model was added, renamed, deleted or imported
    epoch_recorded = Signal(int)  # stored step of an epoch whose metrics just reached the curves

    def __init__(self, jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.job: Job | None = None
        self.side_job: Job | None = None  # parity, export or import
        self.run_id: int | None = None  # run shown in the curves
        self.last_result = None
        self.parity_data: ParityData | None = None
        self.config_overrides: dict = {}  # further TrainConfig fields (e.g. cutoff, lr, patience)
        self.epochs_seen = 0
        self._datasets: dict[str, dict] = {}
        self._init_live(accept=lambda event: bool(event.metrics) or event.run_id is not None)

        # ---- settings
        self.dataset_combo = QComboBox()
        self.dataset_combo.setObjectName("trainingDataset")
        self.dataset_combo.currentIndexChanged.connect(self._fill_targets)
        self.kind_combo = QComboBox()
        self.kind_combo.setObjectName("trainingKind")
        for kind, text in TRAINABLE_KINDS.items():
            self.kind_combo.addItem(kind_label(kind), kind)
            self.kind_combo.setItemData(self.kind_combo.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.targets_note = QLabel("")
        self.targets_note.setObjectName("targetsNote")
        self.targets_note.setWordWrap(True)
        self.targets_note.setStyleSheet("color:#555")
        self.targets_note.setVisible(False)
        self.kind_settings = SettingsTable(object_name="kindSettings")
        self.kind_settings.setMaximumHeight(16777215)  # the rows a generative kind hides leave it room
        self._kind_shown: str | None = None  # kind whose settings the table lists
        self.optional_targets = False  # the chosen generative kind has optional property targets
        self.targets_list = QListWidget()
        self.targets_list.setObjectName("trainingTargets")
        self.targets_list.setMaximumHeight(72)
        self.targets_list.itemChanged.connect(lambda _item: self._sync_enabled())
        self.val_spin = self._spin(0, 80, 10, " %")
        self.test_spin = self._spin(0, 80, 10, " %")
        self.train_label = QLabel()
        self.val_spin.valueChanged.connect(self._update_split_label)
        self.test_spin.valueChanged.connect(self._update_split_label)
        self.epochs_spin = self._spin(1, 100_000, 100)
        self.ensemble_spin = self._spin(1, 32, 3)
        self.seed_spin = self._spin(0, 2**31 - 1, 0)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.hidden_spin = self._spin(1, 1024, 64)
        self.layers_spin = self._spin(1, 12, 3)
        self.batch_spin = self._spin(1, 4096, 64)
        self.kind_combo.currentIndexChanged.connect(self._apply_kind_defaults)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(5)
        self.lr_spin.setRange(1e-5, 1.0)
        self.lr_spin.setSingleStep(1e-4)
        self.lr_spin.setValue(1e-3)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("(automatic)")

        form = QFormLayout()
        self.form = form
        dataset_row = QHBoxLayout()
        dataset_row.addWidget(self.dataset_combo, 1)
        dataset_row.addWidget(QLabel("Model"))
        dataset_row.addWidget(self.kind_combo, 1)
        form.addRow("Dataset", dataset_row)
        form.addRow("Targets", self.targets_list)
        form.addRow(self.targets_note)
        split_row = QHBoxLayout()
        split_row.addWidget(self.train_label)
        split_row.addWidget(QLabel("val"))
        split_row.addWidget(self.val_spin)
        split_row.addWidget(QLabel("test"))
        split_row.addWidget(self.test_spin)
        split_row.addStretch(1)
        form.addRow("Split", split_row)
        run_settings = QHBoxLayout()
        for label, widget in (("Epochs", self.epochs_spin), ("Ensemble", self.ensemble_spin),
                              ("Seed", self.seed_spin)):
            run_settings.addWidget(QLabel(label))
            run_settings.addWidget(widget, 1)
        form.addRow(run_settings)
        model_settings = QHBoxLayout()
        for label, widget in (("Hidden", self.hidden_spin), ("Layers", self.layers_spin),
                              ("Batch", self.batch_spin), ("LR", self.lr_spin)):
            model_settings.addWidget(QLabel(label))
            model_settings.addWidget(widget, 1)
        form.addRow(model_settings)
        self._predictor_rows = (split_row, run_settings, model_settings)
        form.addRow("Settings", self.kind_settings)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(QLabel("Name"))
        device_row.addWidget(self.name_edit, 1)
        form.addRow("Device", device_row)
        self._update_split_label()

        # ---- run controls
        self.start_button = QPushButton("▶ Start")
        self.start_button.setObjectName("startTraining")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("■ Cancel")
        run_row = self._build_run_row()
        self.status_label.setObjectName("trainingStatus")

        self.runs_combo = QComboBox()
        self.runs_combo.setObjectName("trainingRuns")
        self.runs_combo.currentIndexChanged.connect(lambda _i: self._sync_enabled())
        self.show_run_button = QPushButton("Show")
        self.show_run_button.setToolTip("Show this run's curves (and its model's parity plots when it completed)")
        self.show_run_button.clicked.connect(lambda: self.open_run(self.runs_combo.currentData()))
        self.resume_button = QPushButton("⟳ Resume")
        self.resume_button.setToolTip("Continue a cancelled, failed or killed run from its last completed epoch")
        self.resume_button.clicked.connect(lambda: self.resume(self.runs_combo.currentData()))
        runs_row = QHBoxLayout()
        runs_row.addWidget(QLabel("Runs"))
        runs_row.addWidget(self.runs_combo, 1)
        runs_row.addWidget(self.show_run_button)
        runs_row.addWidget(self.resume_button)

        # ---- results
        self.curves = TrainingCurves()
        self.parity = ParityPlots()
        self.models_table = QTableWidget(0, len(MODEL_COLUMNS))
        self.models_table.setObjectName("modelsTable")
        self.models_table.setHorizontalHeaderLabels(list(MODEL_COLUMNS))
        self.models_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.models_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.models_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.models_table.verticalHeader().setVisible(False)
        header = self.models_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.models_table.setWordWrap(False)
        self.models_table.itemSelectionChanged.connect(self._sync_enabled)
        self.models_table.doubleClicked.connect(lambda _index: self.show_parity(self.selected_model_id()))
        self.parity_button = QPushButton("Parity")
        self.parity_button.setToolTip("Predict the model's test split again and show the parity plots")
        self.parity_button.clicked.connect(lambda: self.show_parity(self.selected_model_id()))
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self.rename_dialog)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_dialog)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the model to a file (weights and metadata only)")
        self.export_button.clicked.connect(self.export_dialog)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Add a model from a Crystal Studio model file (loaded weights-only)")
        self.import_button.clicked.connect(self.import_dialog)
        models_buttons = QHBoxLayout()
        for button in (self.parity_button, self.rename_button, self.delete_button, self.export_button,
                       self.import_button):
            models_buttons.addWidget(button)
        models_buttons.addStretch(1)
        models_page = QWidget()
        models_layout = QVBoxLayout(models_page)
        models_layout.setContentsMargins(2, 2, 2, 2)
        models_layout.addWidget(self.models_table, 1)
        models_layout.addLayout(models_buttons)

        self.results_tabs = QTabWidget()
        self.results_tabs.setDocumentMode(True)
        self.results_tabs.addTab(self.curves, "Curves")
        self.results_tabs.addTab(self.parity, "Parity (test)")
        self.results_tabs.addTab(models_page, "Models")

        controls = QWidget()
        top = QVBoxLayout(controls)
        top.setContentsMargins(4, 4, 4, 4)
        box = QGroupBox("Train a property predictor")
        self.settings_box = box
        box.setLayout(form)
        top.addWidget(box)
        top.addLayout(run_row)
        top.addWidget(self.status_label)
        top.addLayout(runs_row)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(controls)
        splitter.addWidget(self.results_tabs)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._show_kind_form()
        self._sync_enabled()

    @staticmethod
    def _spin(lo: int, hi: int, value: int, suffix: str = "") -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(lo, hi)
        spin.setValue(value)
        if suffix:
            spin.setSuffix(suffix)
        return spin

    def _update_split_label(self) -> None:
        train = 100 - self.val_spin.value() - self.test_spin.value()
        self.train_label.setText(f"train {train} %")
        self.train_label.setStyleSheet("color:#b00020" if train <= 0 else "")
        self._sync_enabled()

    # ---------------------------------------------------------------- project and inputs

    def set_project(self, project: Project | None) -> None:
        if self.running:
            self.job.cancel()
        self.project = project
        self.run_id = None
        self.curves.clear()
        self.parity.show_message("Train a model (or select one in Models and press “Parity”) to see its "
                                 "parity plots.")
        self.status_label.setText("")
        self.refresh()

    def refresh(self) -> None:
        """Re-read datasets, runs and models from the project."""
        self.refresh_datasets()
        self.refresh_runs()
        self.refresh_models()

    def refresh_datasets(self) -> None:
        """Re-read the datasets (after an import, rename or delete), keeping the chosen one and its targets."""
        summaries = self.project.datasets() if self.project is not None else []
        self._datasets = {ds.name: ds.properties for ds in summaries}
        self.dataset_combo.blockSignals(True)
        refill_combo(self.dataset_combo, [(f"{ds.name} ({ds.count})", ds.name) for ds in summaries])
        self.dataset_combo.blockSignals(False)
        self._fill_targets()

    def _fill_targets(self) -> None:
        checked = set(self.targets()) or None
        self.targets_list.blockSignals(True)
        self.targets_list.clear()
        for name, stats in self._datasets.get(self.dataset_combo.currentData() or "", {}).items():
            item = QListWidgetItem(f"{_with_unit(name)} — {stats['count']} values")
            item.setData(ROLE_ID, name)
            item.setToolTip(f"min {stats['min']:.4g}, max {stats['max']:.4g}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if checked is None or name in checked else Qt.CheckState.Unchecked)
            self.targets_list.addItem(item)
        self.targets_list.blockSignals(False)
        self._sync_enabled()

    def set_dataset(self, name: str) -> None:
        index = self.dataset_combo.findData(name)
        if index < 0:
            raise CrystalStudioError(f"no dataset '{name}' in the project")
        self.dataset_combo.setCurrentIndex(index)
        self._fill_targets()

    def targets(self) -> list[str]:
        return [self.targets_list.item(i).data(ROLE_ID) for i in range(self.targets_list.count())
                if self.targets_list.item(i).checkState() == Qt.CheckState.Checked]

    def set_targets(self, targets: list[str]) -> None:
        for i in range(self.targets_list.count()):
            item = self.targets_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(ROLE_ID) in targets else Qt.CheckState.Unchecked)

    def config(self) -> dict:
        """The :class:`~crystal_studio.ml.training.TrainConfig` fields the form (and overrides) give."""
        val, test = self.val_spin.value() / 100, self.test_spin.value() / 100
        config = {"kind": self.kind_combo.currentData(), "targets": self.targets(), "epochs": self.epochs_spin.value(),
                  "ensemble": self.ensemble_spin.value(), "seed": self.seed_spin.value(),
                  "split": (round(1 - val - test, 4), val, test), "device": self.device_combo.currentText(),
                  "hidden": self.hidden_spin.value(), "layers": self.layers_spin.value(),
                  "batch_size": self.batch_spin.value(), "lr": self.lr_spin.value()}
        config.update(self.config_overrides)
        return config

    def _apply_kind_defaults(self) -> None:
        """Put the chosen kind's default sizes, batch and epochs into the form (a generative kind: its own
        settings, with their defaults, into the settings table)."""
        defaults = KIND_DEFAULTS.get(self.kind(), {})
        for key, spin in (("hidden", self.hidden_spin), ("layers", self.layers_spin), ("batch_size", self.batch_spin),
                          ("epochs", self.epochs_spin)):
            if key in defaults:
                spin.setValue(defaults[key])
        self._show_kind_form()

    def kind(self) -> str:
        return self.kind_combo.currentData()

    def set_kind(self, kind: str) -> None:
        index = self.kind_combo.findData(kind)
        if index < 0:
            raise CrystalStudioError(f"the Training panel cannot train '{kind}' models")
        self.kind_combo.setCurrentIndex(index)

    def is_generator(self) -> bool:
        """Whether the chosen kind is generative (no targets; its own settings table)."""
        return self.kind() in OWN_SETTINGS_KINDS

    def _show_kind_form(self) -> None:
        """Show the form rows of the chosen kind: targets, split, ensemble and sizes for a predictor; a
        note and the kind's own settings for a generative kind."""
        generator = self.is_generator()
        self.optional_targets = generator and kind_takes_targets(self.kind())
        for row in self._predictor_rows:
            self.form.setRowVisible(row, not generator)
        self.form.setRowVisible(self.kind_settings, generator)
        self.form.setRowVisible(self.targets_list, not generator or self.optional_targets)
        self.form.setRowVisible(self.targets_note, generator)
        if generator:
            title = kind_label(self.kind())
            if self.kind() in CSP_KINDS:
                self.targets_note.setText(f"{title} learns the dataset's crystals with an energy surrogate on its "
                                          "'energy' property (energy_per_atom, eV/atom: a polymorphs dataset of "
                                          "relaxed random crystals suits it), for LCOMs structure prediction in the "
                                          "Generate panel. Its settings are below (hover a row for its meaning).")
            elif self.optional_targets:
                self.targets_note.setText(f"{title} is a generative model: the checked targets (optional) get "
                                          "property heads. Its settings are below (hover a row for its meaning).")
            else:
                self.targets_note.setText(f"{title} learns the dataset's formulas: it predicts no properties, so "
                                          "there are no targets. Its settings are below (hover a row for its meaning).")
            if self._kind_shown != self.kind():
                self.kind_settings.show_options(kind_options(self.kind()))
                self._kind_shown = self.kind()
        self.settings_box.setTitle("Train a structure-prediction model" if self.kind() in CSP_KINDS else
                                   "Train a generative model" if generator else "Train a property predictor")
        self.curves.set_generator(generator)
        self._sync_enabled()

    def kind_settings_changed(self) -> dict[str, str]:
        """The generative kind's settings edited in the table (name → text) and the chosen device."""
        return {**self.kind_settings.changed(), "device": self.device_combo.currentText()}

    def _selected_run(self) -> model_store.RunRecord | None:
        run_id = self.runs_combo.currentData()
        if self.project is None or run_id is None:
            return None
        try:
            return model_store.get_run(self.project, run_id)
        except CrystalStudioError:
            return None

    def _sync_enabled(self) -> None:
        if not hasattr(self, "import_button"):
            return  # still building
        running = self.running
        idle = not running and self.project is not None
        for widget in (self.dataset_combo, self.kind_combo, self.targets_list, self.val_spin, self.test_spin,
                       self.epochs_spin, self.ensemble_spin, self.seed_spin, self.device_combo, self.hidden_spin,
                       self.layers_spin, self.batch_spin, self.lr_spin, self.name_edit, self.runs_combo,
                       self.kind_settings):
            widget.setEnabled(idle)
        if self.is_generator():
            self.targets_list.setEnabled(idle and self.optional_targets)
            self.start_button.setEnabled(idle and self.dataset_combo.currentData() is not None)
        else:
            split_ok = self.val_spin.value() + self.test_spin.value() < 100
            self.start_button.setEnabled(idle and bool(self.targets()) and split_ok)
        self.cancel_button.setEnabled(running)
        run = self._selected_run() if idle else None
        self.show_run_button.setEnabled(run is not None)
        self.resume_button.setEnabled(run is not None and run.status in RESUMABLE)
        has_model = idle and self.selected_model_id() is not None
        side_busy = self.side_job is not None and self.side_job.running
        for button in (self.parity_button, self.export_button):
            button.setEnabled(has_model and not side_busy)
        for button in (self.rename_button, self.delete_button):
            button.setEnabled(has_model)
        self.import_button.setEnabled(idle and not side_busy)

    # ---------------------------------------------------------------- runs list

    def refresh_runs(self) -> None:
        current = self.runs_combo.currentData()
        self.runs_combo.blockSignals(True)
        self.runs_combo.clear()
        if self.project is not None:
            for run in model_store.list_runs(self.project, "train"):
                p = run.parameters
                cfg = p.get("config") or {}
                status = run.status
                if status == "running" and not (self.running and self.run_id == run.id):
                    status = "interrupted"
                self.runs_combo.addItem(f"#{run.id} {p.get('name', '?')} · {cfg.get('epochs', '?')} ep. × "
                                        f"{cfg.get('ensemble', 1)} · {status}", run.id)
                self.runs_combo.setItemData(self.runs_combo.count() - 1, run.message or run.started,
                                            Qt.ItemDataRole.ToolTipRole)
            index = self.runs_combo.findData(current)
            if index >= 0:
                self.runs_combo.setCurrentIndex(index)
        self.runs_combo.blockSignals(False)
        self._sync_enabled()

    def select_run(self, run_id: int) -> None:
        index = self.runs_combo.findData(run_id)
        if index >= 0:
            self.runs_combo.setCurrentIndex(index)
        self._sync_enabled()

    def open_run(self, run_id: int | None) -> None:
        """Show a stored run's curves; when it completed, its model's parity plots too."""
        if self.project is None or run_id is None or self.running:
            return
        loaded = self._load_run(run_id)
        if loaded is None:
            return
        run, metrics = loaded
        self.run_id = run_id
        kind = run.parameters.get("kind", "gnn")
        if kind in OWN_SETTINGS_KINDS and self.kind_combo.findData(kind) >= 0:
            self.set_kind(kind)  # its settings back in the table, to repeat or vary the run
            self.kind_settings.set_values({k: v for k, v in (run.parameters.get("config") or {}).items()
                                           if k not in KIND_FORM_SKIPS})
        self.curves.set_generator(kind in OWN_SETTINGS_KINDS)
        self.curves.set_history(metrics)
        self.select_run(run_id)
        self.status_label.setText(f"Run #{run_id}: {run.status}" + (f" — {run.message}" if run.message else ""))
        self.results_tabs.setCurrentWidget(self.curves)
        model = next((m for m in model_store.list_models(self.project) if m.run_id == run_id), None)
        if model is not None:
            self.select_model(model.id)

    # ---------------------------------------------------------------- training

    def start(self) -> Job | None:
        """Train a new model with the form's settings; returns the job (None if it cannot start)."""
        if self.running or self.project is None:
            return None
        dataset = self.dataset_combo.currentData()
        if not dataset:
            self.status_label.setText("Choose a dataset (import one first).")
            return None
        if self.is_generator():
            return self._start_kind(dataset)
        config = self.config()
        if not config["targets"]:
            self.status_label.setText("Check at least one target.")
            return None
        self._begin(None, f"Training on {dataset}: reading structures and building graphs…")
        total = config["epochs"] * config["ensemble"]
        self.progress_bar.setRange(0, total)
        work = training_work(self.project, dataset, config, self.name_edit.text().strip(), self._relay.push)
        return self._launch(f"Training ({dataset})", work)

    def _start_kind(self, dataset: str) -> Job | None:
        """Train a generative kind with the settings table's values."""
        kind, settings = self.kind(), self.kind_settings_changed()
        targets = self.targets() if self.optional_targets else []
        try:
            config = kind_config(kind, settings, targets)  # bad settings are reported here, before a job starts
        except CrystalStudioError as exc:
            self.status_label.setText(str(exc))
            return None
        self._begin(None, f"Training a {kind} on {dataset}: reading formulas…")
        self.progress_bar.setRange(0, config.epochs)
        work = kind_training_work(self.project, dataset, kind, settings, self.name_edit.text().strip(),
                                  self._relay.push, targets)
        return self._launch(f"Training {kind} ({dataset})", work)

    def resume(self, run_id: int | None) -> Job | None:
        """Continue a cancelled, failed or killed training run; returns the job."""
        if self.running or self.project is None or run_id is None:
            return None
        try:
            run = model_store.get_run(self.project, run_id)
        except CrystalStudioError as exc:
            self.status_label.setText(str(exc))
            return None
        if run.kind != "train" or run.status not in RESUMABLE:
            self.status_label.setText(f"Run #{run_id} is {run.status}: nothing to resume.")
            return None
        self._begin(run_id, f"Resuming run #{run_id} from its last checkpoint…")
        self.curves.set_generator(run.parameters.get("kind", "gnn") in OWN_SETTINGS_KINDS)
        self.curves.set_history(model_store.run_metrics(self.project, run_id))
        cfg = run.parameters.get("config") or {}
        self.progress_bar.setRange(0, max(1, int(cfg.get("epochs", 1)) * int(cfg.get("ensemble", 1))))
        device = self.device_combo.currentText()
        return self._launch(f"Resuming training run #{run_id}", resume_work(self.project, run_id, device,
                                                                              self._relay.push))

    def _begin(self, run_id: int | None, text: str) -> None:
        self.curves.clear()
        self.run_id = run_id
        self.epochs_seen = 0
        self.last_result = None
        self._relay.take()
        self.progress_bar.setValue(0)
        self.status_label.setText(text)
        self.results_tabs.setCurrentWidget(self.curves)

    def _launch(self, title: str, work) -> Job:
        return self._launch_live(
            title, work, "Cancelled; the run keeps its last completed epoch — select it under Runs and press Resume.")

    def _drain(self) -> None:
        for event in self._relay.take():
            if event.run_id is not None and event.run_id != self.run_id:
                self.run_id = event.run_id
                self.refresh_runs()
                self.select_run(self.run_id)
            metrics = event.metrics
            if "train_loss" in metrics or self._surrogate_epoch(metrics):
                step = event.step - 1  # events count completed epochs; metrics are stored from step 0
                self.curves.add_epoch(step, {k: v for k, v in metrics.items() if k != "lr"})
                self.epochs_seen += 1
                self.epoch_recorded.emit(step)
            elif "batch_loss" in metrics:
                position = event.position if event.position is not None else event.step + 1.0
                self.curves.add_batch(position, float(metrics["batch_loss"]))

    def _surrogate_epoch(self, metrics: dict) -> bool:
        """Whether ``metrics`` are an epoch of a csp_vae's surrogate stage (its terms, no train_loss)."""
        return "batch_loss" not in metrics and any(k.startswith(("train_conservative_", "train_mse_"))
                                                   for k in metrics)

    def _tick(self) -> None:
        self.curves.redraw()

    def _progress(self, event: ProgressEvent) -> None:
        if event.total and event.metrics:
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.step, event.total))
        text = event.message or ""
        val = event.metrics.get("val_loss") if event.metrics else None
        if isinstance(val, int | float) and "val loss" not in text:
            text += f" · val loss {val:.4g}"
        self.status_label.setText(text)

    def _succeeded(self, result) -> None:
        self._finish_curves()
        self.last_result = result
        self.run_id = result.run_id
        self.progress_bar.setValue(self.progress_bar.maximum())
        if result.kind in OWN_SETTINGS_KINDS:
            self.status_label.setText(f"Done: model #{result.model_id} (run #{result.run_id}). {result.message}")
        else:
            maes = ", ".join(f"{t} {m['mae']:.3g} {unit_of(t)}".rstrip() for t, m in result.metrics.items()
                             if isinstance(m.get("mae"), int | float))
            self.status_label.setText(f"Done: model #{result.model_id} (run #{result.run_id}); test MAE: {maes}. "
                                      f"{result.message}")
        self.refresh_runs()
        self.select_run(result.run_id)
        self.refresh_models()
        self.select_model(result.model_id)
        self.model_trained.emit(result.model_id)
        self.models_changed.emit()
        if result.kind not in OWN_SETTINGS_KINDS:
            self.show_parity(result.model_id)

    def _stopped(self, text: str) -> None:
        self._finish_curves()
        self.status_label.setText(text)
        self.refresh_runs()
        if self.run_id is not None:
            self.select_run(self.run_id)

    # ---------------------------------------------------------------- parity

    def show_parity(self, model_id: int | None) -> Job | None:
        """Predict the test split of ``model_id`` (in a job) and show the parity plots."""
        if self.project is None or model_id is None:
            return None
        try:
            record = model_store.get_model(self.project, model_id, with_checkpoint=False)
            if record.kind in OWN_SETTINGS_KINDS:
                use = ("predict structures with it in the Generate panel" if record.kind in CSP_KINDS else
                       "sample it in the Generate panel")
                raise CrystalStudioError(f"model #{model_id} ({record.name}) is a {record.kind}: it predicts no "
                                         f"properties, so there is no parity plot ({use})")
            stored_test_ids(self.project, record)
        except CrystalStudioError as exc:
            self.parity.show_message(str(exc))
            self.results_tabs.setCurrentWidget(self.parity)
            return None
        self.parity.show_message(f"Predicting the test split of model #{model_id}…")
        self.results_tabs.setCurrentWidget(self.parity)
        return self._side_job(f"Parity plots of model #{model_id}", parity_work(self.project, model_id),
                              self._parity_ready)

    def _parity_ready(self, data: ParityData) -> None:
        self.parity_data = data
        self.parity.set_data(data)

    def _side_job(self, title: str, work, on_success) -> Job:
        self.side_job = self.jobs.start(title, work, on_success)
        self.side_job.done.connect(self._sync_enabled)
        self._sync_enabled()
        return self.side_job

    # ---------------------------------------------------------------- models

    def refresh_models(self) -> None:
        selected = self.selected_model_id()
        self.models_table.setRowCount(0)
        if self.project is None:
            self._sync_enabled()
            return
        models = model_store.list_models(self.project)
        self.models_table.setRowCount(len(models))
        for row, m in enumerate(models):
            members = m.hyperparameters.get("members")
            if m.kind in OWN_SETTINGS_KINDS:
                scores, details = _generator_scores(m.metrics)
                targets = "(crystals · energy)" if m.kind in CSP_KINDS else "(formulas)"
            else:
                scores = "; ".join(f"{v['mae']:.3g} {unit_of(t)}".rstrip() for t, v in m.metrics.items()
                                   if isinstance(v, dict) and isinstance(v.get("mae"), int | float))
                details = "\n".join(f"{_with_unit(t)}: MAE {v.get('mae', float('nan')):.4g}, RMSE "
                                    f"{v.get('rmse', float('nan')):.4g}, R² {v.get('r2', float('nan')):.3f}"
                                    for t, v in m.metrics.items() if isinstance(v, dict))
                targets = ", ".join(m.targets)
            cells = (str(m.id), m.name or m.kind + (f" ×{members}" if members and members > 1 else ""),
                     targets, scores or "—", m.dataset or "(imported)", m.created[:16].replace("T", " "))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(ROLE_ID, m.id)
                item.setToolTip(details or "no test metrics stored")
                self.models_table.setItem(row, col, item)
        self.models_table.setColumnWidth(1, min(260, max(120, self.models_table.sizeHintForColumn(1))))
        if selected is not None:
            self.select_model(selected)
        self._sync_enabled()

    def model_ids(self) -> list[int]:
        return [self.models_table.item(r, 0).data(ROLE_ID) for r in range(self.models_table.rowCount())]

    def selected_model_id(self) -> int | None:
        rows = self.models_table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.models_table.item(rows[0].row(), 0).data(ROLE_ID)

    def select_model(self, model_id: int) -> None:
        for r in range(self.models_table.rowCount()):
            if self.models_table.item(r, 0).data(ROLE_ID) == model_id:
                self.models_table.selectRow(r)
                return

    def rename_model(self, model_id: int, name: str) -> None:
        name = name.strip()
        if self.project is None or not name:
            return
        model_store.rename_model(self.project, model_id, name)
        self.refresh_models()
        self.models_changed.emit()

    def delete_model(self, model_id: int) -> None:
        if self.project is None:
            return
        model_store.delete_model(self.project, model_id)
        if self.parity_data is not None and self.parity_data.model_id == model_id:
            self.parity_data = None
            self.parity.show_message(f"Model #{model_id} was deleted.")
        self.refresh_models()
        self.models_changed.emit()

    def rename_dialog(self) -> None:
        model_id = self.selected_model_id()
        if model_id is None:
            return
        record = model_store.get_model(self.project, model_id, with_checkpoint=False)
        name, ok = QInputDialog.getText(self, "Rename model", f"New name of model #{model_id}:", text=record.name)
        if ok:
            self.rename_model(model_id, name)

    def delete_dialog(self) -> None:
        model_id = self.selected_model_id()
        if model_id is None:
            return
        record = model_store.get_model(self.project, model_id, with_checkpoint=False)
        answer = QMessageBox.question(self, "Delete model", f"Delete model #{model_id} “{record.name}”? "
                                      "Its training run and curves stay in the project.")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_model(model_id)

    def export_model(self, model_id: int, path: str) -> Job | None:
        if self.project is None:
            return None
        return self._side_job(f"Exporting model #{model_id}", export_work(self.project, model_id, path),
                              lambda out: self.status_label.setText(f"Model #{model_id} written to {out}"))

    def import_model(self, path: str) -> Job | None:
        if self.project is None:
            return None
        return self._side_job("Importing a model", import_work(self.project, path), self._imported)

    def _imported(self, model_id: int) -> None:
        self.status_label.setText(f"Imported model #{model_id}.")
        self.refresh_models()
        self.select_model(model_id)
        self.models_changed.emit()

    def export_dialog(self) -> None:
        model_id = self.selected_model_id()
        if model_id is None:
            return
        record = model_store.get_model(self.project, model_id, with_checkpoint=False)
        stem = re.sub(r"[^\w.+-]+", "_", record.name or f"model_{model_id}").strip("_") or f"model_{model_id}"
        path, _ = QFileDialog.getSaveFileName(self, "Export model", str(self.project.path.parent / f"{stem}.pt"),
                                              MODEL_FILE_FILTER)
        if path:
            self.export_model(model_id, path)

    def import_dialog(self) -> None:
        if self.project is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import model", str(self.project.path.parent), MODEL_FILE_FILTER)
        if path:
            self.import_model(path)
