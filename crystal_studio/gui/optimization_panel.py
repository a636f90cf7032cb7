"""Optimization panel: choose method, models and budget, run the optimization job, watch live curves.

The run is :func:`crystal_studio.design.job.run_optimization` in a
:class:`~crystal_studio.gui.jobs.Job` thread. Its ``on_step`` callback runs in that thread and only
queues the :class:`~crystal_studio.design.optimizers.base.StepReport`; a signal (emitted at most once
per batch of queued reports) brings them to the GUI thread, and a 10 Hz timer redraws the curves with
``setData`` (one ``PlotDataItem`` per metric): total loss best/mean, each loss term and BO metric
(``bo/``, e.g. the log acquisition), and each
``rate/`` criterion's satisfaction rate vs step. The same timer redraws a scatter of the current
candidates (``StepReport.proposals``) in the space of two chosen properties, with the spec's target
window drawn. Past runs are listed and can be reopened from the
store (their metrics, summary and candidates; the scatter then shows the stored candidates).

Latent-space methods (those needing a 'generator') get a **Crystal VAE** choice; while such a run goes,
the latent codes of its queries (``StepReport.latents``) are re-emitted as :attr:`OptimizationPanel.latent_queries`
for the latent map.

The method's settings are listed in a table (name, value, the help as tooltip) built from the
method's config class; only edited values are passed on. An optional **judge** (a second model the
run did not optimize against) re-predicts the final candidates, and the summary shows its verdict
beside the optimizer's own, so exploitation of the optimizing model shows at once.
"""

from __future__ import annotations

import html
import math

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGraphicsRectItem,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent
from crystal_studio.core.properties import unit_of
from crystal_studio.design.job import method_config, method_settings, run_summary
from crystal_studio.design.methods import METHODS
from crystal_studio.design.spec import DesignSpec
from crystal_studio.gui.combos import refill_combo
from crystal_studio.gui.jobs import Job, JobManager
from crystal_studio.gui.live_plots import DEVICES, PALETTE, LiveCurves, LiveJobMixin
from crystal_studio.gui.settings_table import SettingsTable
from crystal_studio.ml.kinds import DIFFERENTIABLE_KINDS, PREDICTOR_KINDS
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project

ROLE_MODEL_ID = Qt.ItemDataRole.UserRole
ROLE_TARGETS = Qt.ItemDataRole.UserRole + 1


def optimization_work(project: Project, spec: DesignSpec, method: str, model_ids: list[int], n_candidates: int,
                      n_steps: int, seed: int, device: str, dataset: str | None, on_step,
                      settings: dict | None = None, judge_model: int | None = None,
                      generator_model: int | None = None):
    """Job function running one optimization (closes the worker thread's store connection at the end)."""

    def work(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.design.job import run_optimization

        try:
            return run_optimization(project, spec, method, model_ids, n_candidates, n_steps, seed, device, dataset,
                                    progress=progress, cancel=cancel, on_step=on_step, settings=settings,
                                    judge_model=judge_model, generator_model=generator_model)
        finally:
            project.close()

    return work


def summary_html(run_id: int, method: str, n: int, summary: dict) -> str:
    """The run summary as a small HTML table (rates in %): the optimizer's model, and the judge's
    verdict in a second column when the run was judged."""
    judge = summary.get("judge") or {}

    def rows_of(doc: dict) -> list[tuple[str, object]]:
        rows = [("Success (all criteria)", doc.get("success_rate"))]
        rows += [(f"&nbsp;&nbsp;{html.escape(name)}", rate) for name, rate in (doc.get("criteria") or {}).items()]
        rows += [("Structurally valid", doc.get("valid_rate")),
                 ("Compositionally valid", doc.get("compositional_validity")),
                 ("Unique", doc.get("unique_rate")), ("Novel", doc.get("novel_rate")),
                 ("Unique and successful", doc.get("unique_success_rate"))]
        if "relaxation_survival" in doc:
            rows.append(("Success survives relaxation", doc.get("relaxation_survival")))
        return rows

    judged = dict(rows_of(judge)) if judge else {}

    def cell(rate) -> str:
        return f"<td align='right'>&nbsp;&nbsp;<b>{rate:.0%}</b></td>" if isinstance(rate, int | float) else "<td></td>"

    header = (f"<tr><td></td><td align='right'>&nbsp;&nbsp;own model</td>"
              f"<td align='right'>&nbsp;&nbsp;judge #{judge.get('model_id')}</td></tr>") if judge else ""
    cells = "".join(f"<tr><td>{label}</td>{cell(rate)}{cell(judged.get(label)) if judge else ''}</tr>"
                    for label, rate in rows_of(summary) if isinstance(rate, int | float))
    return (f"<b>Run #{run_id}</b> ({html.escape(method)}): {n} candidates"
            f"<table cellspacing='0'>{header}{cells}</table>")


# curves of the total-loss plot: (colour, line style); the dataset's best (latent methods) is the bar to beat
LOSS_CURVES = {"loss/best": ("#1f4e8c", Qt.PenStyle.SolidLine), "loss/mean": ("#888888", Qt.PenStyle.DashLine),
               "loss/dataset_best": ("#d62728", Qt.PenStyle.DotLine)}


class CurvePlots(LiveCurves):
    """Three live plots vs step: total loss (best, mean), loss terms with the BO metrics (``bo/``), criteria
    satisfaction rates."""

    def _make_plots(self) -> list[pg.PlotWidget]:
        self.loss_plot = self._plot("Total loss", "loss")
        self.terms_plot = self._plot("Loss terms · BO acquisition", "value")
        self.rates_plot = self._plot("Criteria satisfied", "fraction of candidates")
        self.rates_plot.setYRange(-0.02, 1.05, padding=0)
        self.rates_plot.getViewBox().setLimits(yMin=-0.05, yMax=1.1)
        return [self.loss_plot, self.terms_plot, self.rates_plot]

    def plot_for(self, name: str) -> pg.PlotWidget | None:
        if name in LOSS_CURVES:
            return self.loss_plot
        if name.startswith(("loss/", "bo/")):
            return self.terms_plot
        if name.startswith("rate/"):
            return self.rates_plot
        return None  # e.g. temperature: stored, not plotted

    def _new_curve(self, plot: pg.PlotWidget, name: str) -> pg.PlotDataItem:
        label = name.split("/", 1)[1]
        if plot is self.loss_plot:
            colour, style = LOSS_CURVES[name]
            pen = pg.mkPen(colour, width=2, style=style)
        else:
            index = sum(1 for n in self.curves if self.plot_for(n) is plot)
            pen = pg.mkPen(PALETTE[index % len(PALETTE)], width=2)
        return plot.plot([], [], pen=pen, name=label)


class ProposalScatter(QWidget):
    """Live scatter of the current candidates in the space of two chosen properties.

    Each :class:`StepReport` carries ``proposals`` ({property: [values]}); the latest one is kept and
    drawn on :meth:`redraw` (called by the panel's 10 Hz timer). The spec's window is drawn for each
    axis: a band (value ± tolerance) for a 'target' objective, a rectangle where both axes have one, a
    dashed line at the bound for 'below'/'above'. Points meeting both shown criteria are green.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec: DesignSpec | None = None
        self.values: dict[str, list[float]] = {}
        self.step: int | None = None
        self.dirty = False
        self.x_combo = QComboBox()
        self.x_combo.setObjectName("scatterX")
        self.y_combo = QComboBox()
        self.y_combo.setObjectName("scatterY")
        for combo in (self.x_combo, self.y_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
            combo.currentIndexChanged.connect(self._axes_changed)
        self.plot = pg.PlotWidget(title="Candidates")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setMinimumSize(240, 220)
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)  # the units are in the label
        self.points = pg.ScatterPlotItem(size=7, pen=pg.mkPen("#333", width=0.5))
        self.plot.addItem(self.points)
        self.window_items: list = []
        row = QHBoxLayout()
        row.addWidget(QLabel("x"))
        row.addWidget(self.x_combo, 1)
        row.addWidget(QLabel("y"))
        row.addWidget(self.y_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.plot, 1)

    # ---------------------------------------------------------------- axes

    def properties(self) -> list[str]:
        return [self.x_combo.itemData(i) for i in range(self.x_combo.count())]

    def axes(self) -> tuple[str | None, str | None]:
        return self.x_combo.currentData(), self.y_combo.currentData()

    def set_axes(self, x: str, y: str) -> None:
        for combo, name in ((self.x_combo, x), (self.y_combo, y)):
            index = combo.findData(name)
            if index >= 0:
                combo.setCurrentIndex(index)

    def set_properties(self, names: list[str], spec: DesignSpec | None = None) -> None:
        """Offer ``names`` (the spec's properties first) on both axes, keeping the current choice."""
        self.spec = spec
        ordered = [o.property for o in spec.objectives] if spec is not None else []
        ordered += [n for n in names if n not in ordered]
        x, y = self.axes()
        if ordered != self.properties():
            for combo in (self.x_combo, self.y_combo):
                combo.blockSignals(True)
                combo.clear()
                for name in ordered:
                    unit = unit_of(name)
                    combo.addItem(f"{name} ({unit})" if unit else name, name)
                combo.blockSignals(False)
            x = x if x in ordered else (ordered[0] if ordered else None)
            y = y if y in ordered and y != x else next((n for n in ordered if n != x), x)
            self.set_axes(x, y)
        self._axes_changed()

    def _axes_changed(self, *_args) -> None:
        x, y = self.axes()
        for axis, name in (("bottom", x), ("left", y)):
            unit = unit_of(name) if name else ""
            self.plot.setLabel(axis, f"{name} ({unit})" if unit else (name or ""))
        self._draw_window()
        self.dirty = True
        self.redraw()

    # ---------------------------------------------------------------- data

    def clear(self) -> None:
        self.values = {}
        self.step = None
        self.points.setData([], [])
        self.plot.setTitle("Candidates")
        self.dirty = False

    def add(self, step: int | None, proposals: dict[str, list[float]]) -> None:
        """Keep the latest proposals; drawn on the next :meth:`redraw`."""
        if not proposals:
            return
        self.values = {k: [float(v) for v in vs] for k, vs in proposals.items()}
        self.step = step
        missing = [k for k in self.values if k not in self.properties()]
        if missing:
            self.set_properties(self.properties() + missing, self.spec)
        self.dirty = True

    def redraw(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        x, y = self.axes()
        xs, ys = self.values.get(x, []), self.values.get(y, [])
        n = min(len(xs), len(ys))
        pairs = [(a, b) for a, b in zip(xs[:n], ys[:n], strict=True) if math.isfinite(a) and math.isfinite(b)]
        objectives = {o.property: o for o in self.spec.objectives} if self.spec is not None else {}
        brushes = []
        for a, b in pairs:
            ok = all(o.passes(v) for o, v in ((objectives.get(x), a), (objectives.get(y), b)) if o is not None)
            brushes.append(pg.mkBrush("#2ca02c" if ok else "#1f77b4"))
        self.points.setData([a for a, _ in pairs], [b for _, b in pairs], brush=brushes)
        if self.step is not None:
            self.plot.setTitle(f"Candidates at step {self.step} ({len(pairs)})")
        else:
            self.plot.setTitle(f"Candidates ({len(pairs)})")

    def point_count(self) -> int:
        data = self.points.getData()[0]
        return 0 if data is None else len(data)

    # ---------------------------------------------------------------- spec window

    def _draw_window(self) -> None:
        for item in self.window_items:
            self.plot.removeItem(item)
        self.window_items = []
        if self.spec is None:
            return
        objectives = {o.property: o for o in self.spec.objectives if o.has_criterion}
        x, y = self.axes()
        ox, oy = objectives.get(x), (objectives.get(y) if y != x else None)
        fill = pg.mkBrush(44, 160, 44, 40)
        if ox is not None and oy is not None and ox.kind == oy.kind == "target":
            rect = QGraphicsRectItem(ox.value - ox.tolerance, oy.value - oy.tolerance, 2 * ox.tolerance,
                                     2 * oy.tolerance)
            rect.setPen(pg.mkPen("#2ca02c", width=2, cosmetic=True))
            rect.setBrush(fill)
            self._add_window_item(rect)
            return
        for objective, vertical in ((ox, True), (oy, False)):
            if objective is None:
                continue
            if objective.kind == "target":
                band = pg.LinearRegionItem((objective.value - objective.tolerance,
                                            objective.value + objective.tolerance),
                                           orientation="vertical" if vertical else "horizontal", movable=False,
                                           brush=fill, pen=pg.mkPen("#2ca02c"))
                self._add_window_item(band)
            else:
                sign = "<" if objective.kind == "below" else ">"
                line = pg.InfiniteLine(objective.value, angle=90 if vertical else 0, movable=False,
                                       pen=pg.mkPen("#2ca02c", width=2, style=Qt.PenStyle.DashLine),
                                       label=f"{sign} {objective.value:g}",
                                       labelOpts={"position": 0.92 if vertical else 0.08, "color": "#2ca02c"})
                self._add_window_item(line)

    def _add_window_item(self, item) -> None:
        item.setZValue(-10)
        self.plot.addItem(item, ignoreBounds=False)
        self.window_items.append(item)


class OptimizationPanel(LiveJobMixin, QWidget):
    """Method, models and budget; start/cancel; live curves; past runs. See the module docstring."""

    run_finished = Signal(int)  # run id of a completed run
    run_opened = Signal(int)  # a past run reopened from the list
    latent_run_started = Signal(int)  # a latent-space run started: its crystal VAE's model id
    latent_queries = Signal(int, object)  # its crystal VAE's id, [(step, latents of the step's queries)]

    def __init__(self, jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.spec: DesignSpec | None = None
        self.job: Job | None = None
        self.last_result = None
        self.reports_seen = 0
        self.generator_running: int | None = None  # the crystal VAE of the running job
        self._init_live()

        self.spec_label = QLabel("No valid target: edit it in the Targets panel.")
        self.spec_label.setWordWrap(True)
        self.spec_label.setObjectName("optimizationSpec")

        self.method_combo = QComboBox()
        for info in METHODS.values():
            self.method_combo.addItem(f"{info.title.split(':')[0]} ({info.family})", info.name)
            self.method_combo.setItemData(self.method_combo.count() - 1, info.title, Qt.ItemDataRole.ToolTipRole)
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.settings_table = SettingsTable()
        self.judge_combo = QComboBox()
        self.judge_combo.setObjectName("judgeModel")
        self.judge_combo.setToolTip("A second model, not optimized against, that re-predicts the final candidates: "
                                    "its verdict is shown beside the optimizer's own")
        self.generator_combo = QComboBox()
        self.generator_combo.setObjectName("generatorModel")
        self.generator_combo.setPlaceholderText("(no crystal VAE: train one in the Training panel)")
        self.generator_combo.setToolTip("The crystal VAE whose latent space the method searches")
        self.dataset_combo = QComboBox()
        self.dataset_combo.setToolTip("Screened by 'Dataset screening'; the novelty reference of every method "
                                      "(default: the first model's training dataset)")
        self.models_list = QListWidget()
        self._judge_candidates: list[tuple[int, str, list[str]]] = []  # (model id, label, targets)
        self.models_list.setObjectName("modelsList")
        self.models_list.setMaximumHeight(110)
        self.models_list.itemChanged.connect(self._models_changed)
        self.candidates_spin = QSpinBox()
        self.candidates_spin.setRange(1, 100_000)
        self.candidates_spin.setValue(64)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100_000)
        self.steps_spin.setValue(200)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        budget = QHBoxLayout()
        for label, widget in (("Candidates", self.candidates_spin), ("Steps", self.steps_spin),
                              ("Seed", self.seed_spin)):
            budget.addWidget(QLabel(label))
            budget.addWidget(widget, 1)
        form = QFormLayout()
        form.addRow("Method", self.method_combo)
        form.addRow("Settings", self.settings_table)
        form.addRow("Models", self.models_list)
        form.addRow("Crystal VAE", self.generator_combo)
        self.form = form
        form.addRow("Judge", self.judge_combo)
        form.addRow(budget)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(QLabel("Dataset"))
        device_row.addWidget(self.dataset_combo, 1)
        form.addRow("Device", device_row)

        self.start_button = QPushButton("▶ Start")
        self.start_button.setObjectName("startOptimization")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("■ Cancel")
        self.cancel_button.setEnabled(False)
        run_row = self._build_run_row()

        self.runs_combo = QComboBox()
        self.runs_combo.setObjectName("pastRuns")
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show this run's curves and summary, and its candidates")
        self.open_button.clicked.connect(lambda: self.open_run(self.runs_combo.currentData()))
        runs_row = QHBoxLayout()
        runs_row.addWidget(QLabel("Past runs"))
        runs_row.addWidget(self.runs_combo, 1)
        runs_row.addWidget(self.open_button)
        self.compare_button = QPushButton("Compare runs…")
        self.compare_button.setToolTip("The runs of this run's target side by side: success under the own models and "
                                       "the judge, after relaxation, unique rate, time")
        self.compare_button.clicked.connect(self.compare_runs_dialog)
        runs_row.addWidget(self.compare_button)

        self.summary_label = QLabel("")
        self.summary_label.setObjectName("runSummary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.plots = CurvePlots()
        self.scatter = ProposalScatter()

        controls = QWidget()
        top = QVBoxLayout(controls)
        top.setContentsMargins(4, 4, 4, 4)
        top.addWidget(self.spec_label)
        box = QGroupBox("Run")
        box.setLayout(form)
        top.addWidget(box)
        top.addLayout(run_row)
        top.addWidget(self.status_label)
        top.addLayout(runs_row)
        results = QWidget()
        bottom = QHBoxLayout(results)
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.plots, 3)
        side = QVBoxLayout()
        side.addWidget(self.scatter, 1)
        side.addWidget(self.summary_label)
        bottom.addLayout(side, 2)
        self.summary_label.setVisible(False)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(controls)
        splitter.addWidget(results)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._method_changed()

    # ---------------------------------------------------------------- inputs

    def set_project(self, project: Project | None) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
        self.project = project
        self.plots.clear()
        self.scatter.clear()
        self.summary_label.setVisible(False)
        self.status_label.setText("")
        self.refresh()

    def set_spec(self, spec: DesignSpec | None) -> None:
        self.spec = spec
        if spec is None:
            self.spec_label.setText("<span style='color:#b00020'>No valid target: fix it in the Targets panel.</span>")
        else:
            self.spec_label.setText(f"<b>Target:</b> {html.escape(spec.name)}<br>"
                                    f"<span style='color:#555'>{html.escape(spec.summary())}</span>")
        self._mark_models()
        self._update_scatter_axes()
        self._sync_enabled()

    def refresh(self) -> None:
        """Re-read models, datasets and past runs from the project."""
        checked = set(self.selected_model_ids())
        self.models_list.blockSignals(True)
        self.models_list.clear()
        self._judge_candidates = []
        self.runs_combo.clear()
        generator = self.generator_combo.currentData()
        self.generator_combo.clear()
        if self.project is not None:
            all_models = model_store.list_models(self.project)
            self._judge_candidates = [(m.id, self._model_label(m), list(m.targets)) for m in all_models
                                      if m.kind in PREDICTOR_KINDS]
            models = [m for m in all_models if m.kind in DIFFERENTIABLE_KINDS]
            for m in models:
                metrics = ", ".join(f"{t} MAE {v['mae']:.3g}" for t, v in m.metrics.items()
                                    if isinstance(v, dict) and isinstance(v.get("mae"), int | float))
                item = QListWidgetItem(self._model_label(m))
                item.setData(ROLE_MODEL_ID, m.id)
                item.setData(ROLE_TARGETS, list(m.targets))
                item.setToolTip(metrics or "no test metrics stored")
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if m.id in checked else Qt.CheckState.Unchecked)
                self.models_list.addItem(item)
            if not checked and models:
                self._check_default_model()
            for m in (m for m in all_models if m.kind == "crystal_vae"):
                self.generator_combo.addItem(f"#{m.id} {m.name or m.kind}" + (f" · {m.dataset}" if m.dataset else ""),
                                             m.id)
            self.set_generator(generator if generator is not None else self.generator_combo.itemData(
                self.generator_combo.count() - 1))
            for run in model_store.list_runs(self.project, "optimization"):
                p = run.parameters
                self.runs_combo.addItem(f"#{run.id} {p.get('method', '?')} · {p.get('n_candidates', '?')} cand. × "
                                        f"{p.get('n_steps', '?')} steps · {run.status}", run.id)
                self.runs_combo.setItemData(self.runs_combo.count() - 1, run.message or run.started,
                                            Qt.ItemDataRole.ToolTipRole)
        self.models_list.blockSignals(False)
        self.refresh_datasets()
        self._mark_models()
        self._fill_judges()
        self._update_scatter_axes()
        self._sync_enabled()

    def refresh_datasets(self) -> None:
        """Re-read the dataset choices (after an import, rename or delete), keeping the chosen one."""
        items = [] if self.project is None else [("(the first model's dataset)", None)] + [
            (name, name) for name in self.project.dataset_names()]
        refill_combo(self.dataset_combo, items)

    def _spec_properties(self) -> set[str]:
        return {o.property for o in self.spec.objectives} if self.spec is not None else set()

    def _check_default_model(self) -> None:
        """Check the newest model that predicts every property of the spec (else the newest)."""
        need = self._spec_properties()
        items = [self.models_list.item(i) for i in range(self.models_list.count())]
        fitting = [it for it in items if need <= set(it.data(ROLE_TARGETS))]
        (fitting or items)[-1].setCheckState(Qt.CheckState.Checked)

    def _mark_models(self) -> None:
        """Grey the models lacking a property the target needs, and uncheck those predicting none of
        them (a model chosen for an earlier target), saying so in the status line."""
        need = self._spec_properties()
        unchecked = []
        self.models_list.blockSignals(True)
        for i in range(self.models_list.count()):
            item = self.models_list.item(i)
            targets = set(item.data(ROLE_TARGETS))
            missing = sorted(need - targets)
            item.setForeground(Qt.GlobalColor.darkGray if missing else Qt.GlobalColor.black)
            tip = item.toolTip().split("\n")[0]
            item.setToolTip(tip + (f"\nlacks {', '.join(missing)} needed by the target" if missing else ""))
            if need and not need & targets and item.checkState() == Qt.CheckState.Checked:
                item.setCheckState(Qt.CheckState.Unchecked)
                unchecked.append(f"#{item.data(ROLE_MODEL_ID)}")
        self.models_list.blockSignals(False)
        if unchecked:
            self.status_label.setText(f"Unchecked model{'s' if len(unchecked) > 1 else ''} {', '.join(unchecked)}: "
                                      f"{'they predict' if len(unchecked) > 1 else 'it predicts'} none of "
                                      f"{', '.join(sorted(need))}, which the target needs.")
            self._models_changed()

    def _models_changed(self, _item=None) -> None:
        self._fill_judges()
        self._update_scatter_axes()
        self._sync_enabled()

    def _fill_judges(self) -> None:
        """Judges on offer: unchecked models predicting every property of the spec."""
        current = self.judge_combo.currentData()
        need = self._spec_properties()
        self.judge_combo.blockSignals(True)
        self.judge_combo.clear()
        self.judge_combo.addItem("(none)", None)
        checked = set(self.selected_model_ids())
        for model_id, label, targets in self._judge_candidates:
            if model_id not in checked and need <= set(targets):
                self.judge_combo.addItem(label, model_id)
        index = self.judge_combo.findData(current)
        self.judge_combo.setCurrentIndex(max(index, 0))
        self.judge_combo.blockSignals(False)

    @staticmethod
    def _model_label(m) -> str:
        return f"#{m.id} {m.name or m.kind} — {', '.join(m.targets)}" + (f" · {m.dataset}" if m.dataset else "")

    def judge_model(self) -> int | None:
        return self.judge_combo.currentData()

    def set_judge(self, model_id: int | None) -> None:
        self.judge_combo.setCurrentIndex(max(self.judge_combo.findData(model_id), 0))

    def generator_model(self) -> int | None:
        """The chosen crystal VAE when the method needs one, else None."""
        return self.generator_combo.currentData() if self.needs_generator() else None

    def set_generator(self, model_id: int | None) -> None:
        index = self.generator_combo.findData(model_id)
        if index >= 0:
            self.generator_combo.setCurrentIndex(index)

    def needs_generator(self) -> bool:
        return "generator" in METHODS[self.method()].needs

    def _method_changed(self) -> None:
        self.settings_table.show_options(method_settings(self.method()))
        self.form.setRowVisible(self.generator_combo, self.needs_generator())
        self._sync_enabled()

    def _update_scatter_axes(self) -> None:
        """The scatter offers the spec's properties and the checked models' targets."""
        names: list[str] = []
        for i in range(self.models_list.count()):
            item = self.models_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                names += [t for t in item.data(ROLE_TARGETS) if t not in names]
        names += [n for n in self.scatter.values if n not in names]
        self.scatter.set_properties(names, self.spec)

    def selected_model_ids(self) -> list[int]:
        return [self.models_list.item(i).data(ROLE_MODEL_ID) for i in range(self.models_list.count())
                if self.models_list.item(i).checkState() == Qt.CheckState.Checked]

    def set_model_checked(self, model_id: int, checked: bool = True) -> None:
        for i in range(self.models_list.count()):
            item = self.models_list.item(i)
            if item.data(ROLE_MODEL_ID) == model_id:
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def method(self) -> str:
        return self.method_combo.currentData()

    def set_method(self, method: str) -> None:
        self.method_combo.setCurrentIndex(max(self.method_combo.findData(method), 0))

    def _sync_enabled(self) -> None:
        running = self.running
        for widget in (self.method_combo, self.models_list, self.candidates_spin, self.steps_spin, self.seed_spin,
                       self.device_combo, self.dataset_combo, self.runs_combo, self.open_button, self.settings_table,
                       self.judge_combo, self.generator_combo):
            widget.setEnabled(not running and self.project is not None)
        self.steps_spin.setEnabled(not running and self.method() != "screen")
        self.start_button.setEnabled(not running and self.project is not None and self.spec is not None
                                     and bool(self.selected_model_ids()))
        self.cancel_button.setEnabled(running)
        self.open_button.setEnabled(not running and self.runs_combo.count() > 0)
        self.compare_button.setEnabled(self.runs_combo.count() > 0)

    def compare_runs_dialog(self):
        """Open the comparison of the past runs that share the chosen run's target (returned for tests)."""
        from crystal_studio.gui.compare_runs import CompareRunsDialog

        if self.project is None:
            return None
        dialog = CompareRunsDialog(self.project, self.runs_combo.currentData(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    # ---------------------------------------------------------------- running

    def start(self) -> Job | None:
        """Start an optimization with the form's settings; returns the job (None if it cannot start)."""
        if self.running or self.project is None:
            return None
        if self.spec is None:
            self.status_label.setText("The target has problems: fix them in the Targets panel first.")
            return None
        model_ids = self.selected_model_ids()
        if not model_ids:
            self.status_label.setText("Check at least one model.")
            return None
        method = self.method()
        generator = self.generator_model()
        if self.needs_generator() and generator is None:
            self.status_label.setText(f"{method} searches a crystal VAE's latent space, and this project has none: "
                                      "train a Crystal VAE in the Training panel first.")
            return None
        n_steps = self.steps_spin.value() if method != "screen" else 1
        settings = self.settings_table.changed()
        try:
            method_config(method, settings)  # bad settings are reported here, before a job starts
        except CrystalStudioError as exc:
            self.status_label.setText(str(exc))
            return None
        self.plots.clear()
        self.scatter.clear()
        self.summary_label.setVisible(False)
        self.reports_seen = 0
        self.last_result = None
        self._relay.take()
        self.progress_bar.setRange(0, n_steps)
        self.progress_bar.setValue(0)
        self.status_label.setText(f"Starting {method} (loading models)…")
        work = optimization_work(self.project, self.spec, method, model_ids, self.candidates_spin.value(), n_steps,
                                 self.seed_spin.value(), self.device_combo.currentText(),
                                 self.dataset_combo.currentData(), self._relay.push, settings, self.judge_model(),
                                 generator)
        job = self._launch_live(f"Optimizing ({method})", work, "Cancelled; the steps so far are stored with the run.")
        self.generator_running = generator
        if generator is not None:
            self.latent_run_started.emit(generator)
        return job

    def _drain(self) -> None:
        queries = []
        for report in self._relay.take():
            self.reports_seen += 1
            self.plots.add(report.step, report.metrics)
            self.scatter.add(report.step, report.proposals)
            if report.latents:
                queries.append((report.step, report.latents))
        if queries and self.generator_running is not None:
            self.latent_queries.emit(self.generator_running, queries)

    def _tick(self) -> None:
        self.plots.redraw()
        self.scatter.redraw()

    def _progress(self, event: ProgressEvent) -> None:
        if event.total:
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.step, event.total))
        best = (event.metrics or {}).get("loss/best")
        text = f"Step {event.step}/{event.total}" if event.total else ""
        if event.message and event.message not in METHODS:
            text = f"{text} · {event.message}" if text else event.message
        if isinstance(best, int | float):
            text += f" · best loss {best:.4g}"
        self.status_label.setText(text)

    def _succeeded(self, result) -> None:
        self._finish_curves()
        self.last_result = result
        self.progress_bar.setValue(self.progress_bar.maximum())
        judge = result.summary.get("judge")
        verdict = f" (judge: {judge['success_rate']:.0%})" if judge else ""
        self.status_label.setText(f"Done: run #{result.run_id}, {result.n_candidates} candidates, "
                                  f"{result.summary.get('success_rate', 0):.0%} successful{verdict}.")
        self.summary_label.setText(summary_html(result.run_id, result.method, result.n_candidates, result.summary))
        self.summary_label.setVisible(True)
        self.refresh()
        self._select_run(result.run_id)
        self.run_finished.emit(result.run_id)

    def _stopped(self, text: str) -> None:
        self._finish_curves()
        self.status_label.setText(text)
        self.refresh()

    def _select_run(self, run_id: int) -> None:
        index = self.runs_combo.findData(run_id)
        if index >= 0:
            self.runs_combo.setCurrentIndex(index)

    # ---------------------------------------------------------------- past runs

    def open_run(self, run_id: int | None) -> None:
        """Show a stored run: its settings in the form, its curves and (when completed) its summary."""
        if self.project is None or run_id is None or self.running:
            return
        loaded = self._load_run(run_id)
        if loaded is None:
            return
        run, metrics = loaded
        p = run.parameters
        if p.get("method") in METHODS:
            self.set_method(p["method"])
            self.settings_table.set_values(p.get("config") or {})
        for spin, key in ((self.candidates_spin, "n_candidates"), (self.steps_spin, "n_steps"),
                          (self.seed_spin, "seed")):
            if isinstance(p.get(key), int):
                spin.setValue(p[key])
        if isinstance(p.get("models"), list):
            for i in range(self.models_list.count()):
                item = self.models_list.item(i)
                item.setCheckState(Qt.CheckState.Checked if item.data(ROLE_MODEL_ID) in p["models"]
                                   else Qt.CheckState.Unchecked)
        self.set_judge(p.get("judge_model"))
        self.set_generator(p.get("generator_model"))
        self.plots.set_history(metrics)
        self._show_stored_candidates(run_id)
        self._select_run(run_id)
        summary = None
        if run.status == "completed":
            try:
                summary = run_summary(self.project, run_id)
            except (CrystalStudioError, KeyError, ZeroDivisionError):
                summary = None
        if summary is not None:
            self.summary_label.setText(summary_html(run_id, p.get("method", "?"), summary.get("n", 0), summary))
        self.summary_label.setVisible(summary is not None)
        self.status_label.setText(f"Run #{run_id}: {run.status}" + (f" — {run.message}" if run.message else ""))
        self.run_opened.emit(run_id)

    def _show_stored_candidates(self, run_id: int) -> None:
        """Scatter a stored run's final candidates (their evaluated properties)."""
        from crystal_studio.store.candidates import list_candidates

        self.scatter.clear()
        try:
            records = list_candidates(self.project, run_id)
        except CrystalStudioError:
            return
        values: dict[str, list[float]] = {}
        names = [n for r in records for n in (r.evaluation.get("properties") or {})]
        for name in dict.fromkeys(names):
            column = [(r.evaluation.get("properties") or {}).get(name) for r in records]
            values[name] = [float(v) if isinstance(v, int | float) else math.nan for v in column]
        self.scatter.add(None, values)
        self.scatter.redraw()
