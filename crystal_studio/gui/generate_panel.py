"""Generate panel: sample formulas from a composition VAE (or whole crystals from a crystal VAE), filter
them, compare them with the data, and send the chosen formulas on to crystal-structure prediction.

A crystal VAE's draws are crystals: the run stores them as candidates (the Candidates panel shows them,
announced with :attr:`GeneratePanel.structures_predicted`), the funnel adds the structural check
(sampled → decoded → structurally valid → also compositionally valid → unique → novel) and the table
lists the formulas of the structurally valid draws.

Sampling is :func:`crystal_studio.design.sampling.sample_model` in a :class:`~crystal_studio.gui.jobs.Job`
(progress and cancel), which stores a ``sampling`` run. The same job reads the run's distinct formulas back
(:func:`crystal_studio.store.samples.list_samples`) and computes what the plots need, so nothing slow runs
on the GUI thread: the element prevalence (share of formulas containing each element) of the model's
training dataset (its distinct formulas) against the compositionally valid draws, and the distribution
of the number of elements of both. Past sampling runs can be reopened the same way.

The result shows the validity funnel (sampled → decoded → compositionally valid → unique → novel), a
sortable table of the distinct formulas (formula, how often drawn, valid, novel, number of elements,
decomposition class) narrowed by filters (elements that must / must not be present, through the
periodic-table picker of the Datasets panel; a range of the number of elements; only valid; only
novel), and the two plots. **Compute dataset hull** runs
:func:`crystal_studio.store.derived.compute_dataset_hull` for the chosen dataset (the decomposition
classes a new model is trained on). **Predict structures** sends the selected formulas to the
**Structure prediction** tab and runs it.

The Structure prediction tab (:class:`StructurePrediction`) predicts crystal structures of typed formulas
(or the selected sampled ones) with :func:`crystal_studio.design.csp.predict_structures` in a job
(:func:`csp_work`): random search, or LCOMs on a csp_vae's conservative surrogate (or its MSE ablation)
at the same CHGNet budget, optionally followed by the random baseline with the same seed and budget. The
live plots (:class:`CspCurves`) show the latent descent (surrogate mean and min per step, the CHGNet
energy of the decodes every k steps as points) and every relaxation's energy with the best so far; the
result table lists per formula the best energy, space group, origin and run, the line under it compares
the run with its baseline, and the best structures export as CIF. The finished run is announced with
:attr:`GeneratePanel.structures_predicted` and the main window shows its candidates in the Candidates panel.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
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
from crystal_studio.gui.combos import refill_combo
from crystal_studio.gui.jobs import Job, JobManager
from crystal_studio.gui.live_plots import DEVICES, LiveCurves, LiveJobMixin
from crystal_studio.gui.periodic_table import ElementFilterButton
from crystal_studio.gui.table_view import ResponsiveTableView
from crystal_studio.ml.kinds import KINDS, PREDICTOR_KINDS
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project, StructureQuery

FUNNEL_LABELS = (("sampled", "sampled"), ("decoded", "decoded"), ("compositionally_valid", "valid"),
                 ("unique", "unique"), ("novel", "novel"))
CRYSTAL_FUNNEL_LABELS = (("sampled", "sampled"), ("decoded", "decoded"), ("structurally_valid", "structurally valid"),
                         ("compositionally_valid", "also compositionally"), ("unique", "unique"), ("novel", "novel"))
SAMPLE_COLUMNS = ("Formula", "Count", "Valid", "Novel", "Elements", "Class")
FORMULA_GENERATOR_KINDS = tuple(k.name for k in KINDS.values() if "generator:composition" in k.roles)
CRYSTAL_GENERATOR_KINDS = tuple(k.name for k in KINDS.values() if "generator:crystal" in k.roles)
PREVALENCE_TOP = 40  # elements shown in the prevalence chart (most common in the data first)
DATA_COLOR = (120, 120, 120, 190)
SAMPLE_COLOR = (31, 119, 180, 210)


@dataclass
class SampleRow:
    """One distinct sampled formula as the table shows it."""

    formula: str
    count: int
    valid: bool
    novel: bool
    n_elements: int
    decomposition_class: int | None
    elements: frozenset[str]


@dataclass
class GenerateResult:
    """What a sampling job hands the panel: the run, its funnel, its formulas and the plot data."""

    run_id: int
    model_id: int
    dataset: str | None
    funnel: dict[str, int]
    rows: list[SampleRow]
    symbols: list[str] = field(default_factory=list)  # elements of the prevalence chart, data order
    data_prevalence: list[float] = field(default_factory=list)
    sample_prevalence: list[float] = field(default_factory=list)
    data_counts: dict[int, float] = field(default_factory=dict)  # number of elements → share of formulas
    sample_counts: dict[int, float] = field(default_factory=dict)  # ... share of valid draws
    note: str = ""
    crystals: bool = False  # a crystal VAE's run: the draws are crystals, stored as the run's candidates

    @property
    def funnel_labels(self) -> tuple[tuple[str, str], ...]:
        """(funnel key, label) in order: the formula funnel, or the crystal funnel the run reported
        (crystal and voxel VAEs check different stages)."""
        if not self.crystals:
            return FUNNEL_LABELS
        known = dict(CRYSTAL_FUNNEL_LABELS)
        return tuple((key, known.get(key, key.replace("_", " "))) for key in self.funnel)


def _close_after(project: Project, fn):
    def work(progress: ProgressCallback, cancel: CancelToken):
        try:
            return fn(progress, cancel)
        finally:
            project.close()

    return work


def _dataset_formulas(project: Project, dataset: str | None) -> list[str]:
    if dataset is None or dataset not in project.dataset_names():
        return []
    query = StructureQuery(dataset=dataset)
    rows = project.page(query, limit=project.count(query), with_properties=False)
    return sorted({r["reduced_formula"] for r in rows})


def _shares(counter: Counter) -> dict[int, float]:
    total = sum(counter.values())
    return {k: v / total for k, v in sorted(counter.items())} if total else {}


def build_result(project: Project, run_id: int, progress: ProgressCallback, cancel: CancelToken,
                 funnel: dict[str, int] | None = None, note: str = "") -> GenerateResult:
    """The stored formulas of sampling run ``run_id`` with the plot data (runs in the worker thread)."""
    from pymatgen.core import Composition

    from crystal_studio.design.sampling import element_prevalence
    from crystal_studio.ml.elements import ELEMENTS
    run = model_store.get_run(project, run_id)
    if run.kind != "sampling":
        raise CrystalStudioError(f"run #{run_id} is a '{run.kind}' run, not a sampling run")
    p = run.parameters
    crystals = p.get("kind", "composition_vae") in CRYSTAL_GENERATOR_KINDS
    progress(ProgressEvent(0, 3, "reading the sampled formulas"))
    if crystals:
        rows, stored_funnel = _crystal_rows(project, run_id, int(p.get("n", 0)), cancel,
                                            voxels=p.get("kind") == "voxel_vae",
                                            targeted=p.get("target_model") is not None)
        funnel = funnel or stored_funnel
    else:
        rows = _formula_rows(project, run_id, cancel)
    if funnel is None:  # a reopened run: the funnel again from its stored formulas
        valid = [r for r in rows if r.valid]
        funnel = {"sampled": int(p.get("n", sum(r.count for r in rows))), "decoded": sum(r.count for r in rows),
                  "compositionally_valid": sum(r.count for r in valid), "unique": len(valid),
                  "novel": sum(1 for r in valid if r.novel)}
    progress(ProgressEvent(1, 3, "element statistics of the training data"))
    cancel.check()
    dataset = p.get("dataset")
    data_formulas = [f for f in _dataset_formulas(project, dataset)
                     if all(e.symbol in ELEMENTS for e in Composition(f).elements)]
    data_prev = element_prevalence(data_formulas, ELEMENTS) if data_formulas else np.zeros(len(ELEMENTS))
    index = {s: i for i, s in enumerate(ELEMENTS)}
    sample_prev = np.zeros(len(ELEMENTS))
    valid_draws = 0
    sample_counts: Counter = Counter()
    for r in rows:
        if r.valid:
            for e in r.elements:
                if e in index:
                    sample_prev[index[e]] += r.count
            valid_draws += r.count
            sample_counts[r.n_elements] += r.count
    sample_prev /= max(valid_draws, 1)
    progress(ProgressEvent(2, 3, "element counts"))
    data_counts = Counter(len(Composition(f).elements) for f in data_formulas)
    order = np.argsort(-(data_prev + 1e-9 * sample_prev), kind="stable")  # by data; ties by samples
    if not data_formulas:
        order = np.argsort(-sample_prev, kind="stable")
    top = [int(i) for i in order[:PREVALENCE_TOP] if data_prev[i] > 0 or sample_prev[i] > 0]
    progress(ProgressEvent(3, 3, "done"))
    return GenerateResult(run_id=run_id, model_id=int(p.get("model_id", -1)), dataset=dataset, funnel=funnel,
                          rows=rows, symbols=[ELEMENTS[i] for i in top],
                          data_prevalence=[float(data_prev[i]) for i in top],
                          sample_prevalence=[float(sample_prev[i]) for i in top],
                          data_counts=_shares(data_counts), sample_counts=_shares(sample_counts), note=note,
                          crystals=crystals)


def _formula_rows(project: Project, run_id: int, cancel: CancelToken) -> list[SampleRow]:
    """The distinct formulas a composition model's run stored, with their checks."""
    from pymatgen.core import Composition

    from crystal_studio.store.samples import list_samples

    rows = []
    for k, s in enumerate(list_samples(project, run_id)):
        if k % 500 == 0:
            cancel.check()
        c = s.checks
        rows.append(SampleRow(s.formula, s.count, bool(c.get("compositionally_valid")), bool(c.get("novel")),
                              int(c.get("n_elements", 0)), c.get("decomposition_class"),
                              frozenset(e.symbol for e in Composition(s.formula).elements)))
    return rows


def _crystal_rows(project: Project, run_id: int, n: int, cancel: CancelToken, voxels: bool = False,
                  targeted: bool = False) -> tuple[list[SampleRow], dict]:
    """The formulas of a crystal model's structurally valid draws (its stored candidates), one row per
    formula (count of draws, compositional validity, novel when any of its unique crystals is), and
    the run's funnel recounted from the candidates' checks (``n``: the draws): the crystal VAE's stages,
    or with ``voxels`` the voxel VAE's (``targeted``: with the within-target stage)."""
    from pymatgen.core import Composition

    from crystal_studio.design.sampling import CRYSTAL_FUNNEL, VOXEL_FUNNEL, VOXEL_TARGET_FUNNEL
    from crystal_studio.store.candidates import list_candidates

    stages = (VOXEL_TARGET_FUNNEL if targeted else VOXEL_FUNNEL) if voxels else CRYSTAL_FUNNEL
    grouped: dict[str, list[dict]] = {}
    funnel = dict.fromkeys(stages[1:], 0)
    for k, record in enumerate(list_candidates(project, run_id)):
        if k % 500 == 0:
            cancel.check()
        doc = record.evaluation
        funnel["decoded"] += 1
        if not doc.get("valid"):
            continue
        funnel["structurally_valid"] += 1
        if voxels:
            funnel["same_stoichiometry"] += bool(doc.get("same_stoichiometry"))
            funnel["not_in_training_set"] += doc.get("in_training_set") is False
            if targeted:
                funnel["within_target"] += bool((doc.get("target") or {}).get("ok"))
            funnel["unique"] += bool(doc.get("success"))
        else:
            funnel["compositionally_valid"] += bool(doc.get("compositionally_valid"))
            funnel["unique"] += bool(doc.get("unique"))
            funnel["novel"] += bool(doc.get("unique") and doc.get("novel"))
        grouped.setdefault(record.formula, []).append(doc)
    rows = []
    for formula, docs in grouped.items():
        elements = frozenset(e.symbol for e in Composition(formula).elements)
        rows.append(SampleRow(formula, len(docs), bool(docs[0].get("compositionally_valid")),
                              any(bool(d.get("novel")) for d in docs), len(elements), None, elements))
    return rows, {"sampled": n, **funnel}


def sampling_work(project: Project, model_id: int, n: int, seed: int, around: int | None, sigma: float,
                  decomposition_class: int | None, device: str, condition_decile: int | None = None,
                  target_model: int | None = None, within: float = 0.2):
    """Job function: sample ``n`` formulas or crystals from model ``model_id`` (a stored run), then
    :func:`build_result`; the voxel VAE's condition and target check as :func:`sample_model` takes them."""

    def fn(progress: ProgressCallback, cancel: CancelToken) -> GenerateResult:
        from crystal_studio.design.sampling import sample_model

        summary = sample_model(project, model_id, n, seed=seed, around=around, sigma=sigma,
                               decomposition_class=decomposition_class, device=device, progress=progress,
                               cancel=cancel, condition_decile=condition_decile, target_model=target_model,
                               within=within)
        return build_result(project, summary.run_id, progress, cancel, dict(summary.funnel), summary.note)

    return _close_after(project, fn)


def open_run_work(project: Project, run_id: int):
    """Job function: a stored sampling run as a :class:`GenerateResult`."""
    return _close_after(project, lambda progress, cancel: build_result(project, run_id, progress, cancel))


def hull_work(project: Project, dataset: str):
    """Job function: :func:`~crystal_studio.store.derived.compute_dataset_hull` of ``dataset``."""

    def fn(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.store.derived import compute_dataset_hull

        return compute_dataset_hull(project, dataset, progress, cancel)

    return _close_after(project, fn)


@dataclass
class CspRuns:
    """What a structure-prediction job hands back: the run asked for and, when asked, the random
    baseline run at the same CHGNet budget (:class:`crystal_studio.design.csp.CspResult` each)."""

    main: object
    baseline: object | None = None


def csp_work(project: Project, formulas: list[str], trials: int, seed: int, device: str,
             dataset: str | None = None, source: dict | None = None, method: str = "random",
             model_ids: list[int] | None = None, relax_steps: int = 200, lcoms: dict | None = None,
             baseline: bool = False, on_event=None):
    """Job function: predict structures for ``formulas`` (:mod:`crystal_studio.design.csp`); returns :class:`CspRuns`.
    ``dataset``: the novelty reference; ``source``: where the formulas came from (stored with the run);
    ``method``: 'random', 'lcoms' or 'mse' (these need one csp_vae among ``model_ids``); ``lcoms``: the
    latent stage's settings; ``baseline``: after a latent method, run random search on the same formulas
    with the same seed and number of relaxations (its source names the run it is the baseline of);
    ``on_event((phase, event))``: every progress event, phase 'main' or 'baseline', in the worker thread
    before the job's throttled progress sees it (the live curves lose nothing)."""

    def fn(progress: ProgressCallback, cancel: CancelToken):
        try:
            from crystal_studio.design.csp import SURROGATE_OF, predict_structures
        except ImportError as exc:
            raise CrystalStudioError(f"structure prediction is not available in this installation ({exc})") from None

        def relay(phase: str):
            def report(event: ProgressEvent) -> None:
                if on_event is not None:
                    on_event((phase, event))
                if phase == "baseline" and event.message:
                    event = replace(event, message=f"random baseline: {event.message}")
                progress(event)

            return report

        ids = list(model_ids or [])
        main = predict_structures(project, formulas, trials=trials, model_ids=ids, seed=seed, relax_steps=relax_steps,
                                  device=device, progress=relay("main"), cancel=cancel, dataset=dataset,
                                  source=source, method=method, lcoms=lcoms if method in SURROGATE_OF else None)
        if not baseline or method not in SURROGATE_OF:
            return CspRuns(main)
        from crystal_studio.ml.kinds import CSP_KINDS

        predictors = [m for m in ids if model_store.get_model(project, m, with_checkpoint=False).kind not in CSP_KINDS]
        reference = dataset or model_store.get_run(project, main.run_id).parameters.get("reference_dataset")
        base = predict_structures(project, formulas, trials=trials, model_ids=predictors, seed=seed,
                                  relax_steps=relax_steps, device=device, progress=relay("baseline"), cancel=cancel,
                                  dataset=reference, source={**(source or {}), "baseline_of": main.run_id},
                                  method="random")
        return CspRuns(main, base)

    return _close_after(project, fn)


class SamplesModel(QAbstractTableModel):
    """The distinct sampled formulas that pass the filters, sortable by any column."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.all_rows: list[SampleRow] = []
        self.rows: list[SampleRow] = []
        self._sort: tuple[int, Qt.SortOrder] = (1, Qt.SortOrder.DescendingOrder)

    def set_rows(self, rows: list[SampleRow]) -> None:
        self.all_rows = list(rows)

    def apply(self, keep) -> None:
        """Show the rows for which ``keep(row)`` is true, in the current sort order."""
        self.beginResetModel()
        self.rows = [r for r in self.all_rows if keep(r)]
        self._sort_rows()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(SAMPLE_COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt override
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return SAMPLE_COLUMNS[section]
        return None

    @staticmethod
    def _value(row: SampleRow, column: int):
        return (row.formula, row.count, row.valid, row.novel, row.n_elements,
                -1 if row.decomposition_class is None else row.decomposition_class)[column]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column in (2, 3):
                return "✓" if self._value(row, column) else "✗"
            if column == 5:
                return "" if row.decomposition_class is None else str(row.decomposition_class)
            return str(self._value(row, column))
        if role == Qt.ItemDataRole.ForegroundRole and column in (2, 3):
            return pg.mkColor("#2e7d32" if self._value(row, column) else "#b00020")
        if role == Qt.ItemDataRole.TextAlignmentRole and column:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole and column == 5:
            return ("decomposition class the formula was drawn with: 1 = on the hull, k = decomposes into k "
                    "phases (the last class: that many or more)")
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        self._sort = (column, order)
        self.layoutAboutToBeChanged.emit()
        self._sort_rows()
        self.layoutChanged.emit()

    def _sort_rows(self) -> None:
        column, order = self._sort
        self.rows.sort(key=lambda r: r.formula)  # ties stay alphabetical (the sort is stable)
        self.rows.sort(key=lambda r: self._value(r, column), reverse=order == Qt.SortOrder.DescendingOrder)

    def formulas(self) -> list[str]:
        return [r.formula for r in self.rows]


class GenerationPlots(QWidget):
    """The funnel (draws left after each check, as horizontal bars), element prevalence (data vs
    samples, top elements by data prevalence) and the distribution of the number of elements (data vs
    samples), as grouped bar charts."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True, background="w", foreground="#333")
        self.funnel_plot = pg.PlotWidget(title="Funnel")
        self.funnel_plot.setLabel("bottom", "draws")
        self.funnel_plot.getAxis("left").setWidth(110)
        self.funnel_plot.getAxis("left").setStyle(tickFont=_small_font())
        self.funnel_plot.setMouseEnabled(x=False, y=False)
        self.funnel_plot.hideButtons()
        self.funnel_plot.setMinimumWidth(230)
        self.prevalence_plot = pg.PlotWidget(title=f"Element prevalence (top {PREVALENCE_TOP} in the data)")
        self.prevalence_plot.setLabel("left", "formulas containing it (%)")
        self.counts_plot = pg.PlotWidget(title="Elements per formula")
        self.counts_plot.setLabel("left", "formulas (%)")
        self.counts_plot.setLabel("bottom", "number of elements")
        for plot in (self.prevalence_plot, self.counts_plot):
            plot.showGrid(y=True, alpha=0.2)
            plot.setMouseEnabled(x=True, y=False)
            plot.setMinimumHeight(150)
            for axis in ("left", "bottom"):
                plot.getAxis(axis).enableAutoSIPrefix(False)
        self.prevalence_plot.setMinimumWidth(260)
        self.counts_plot.setMinimumWidth(190)
        self.bars: dict[str, pg.BarGraphItem] = {}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.funnel_plot, 3)
        layout.addWidget(self.prevalence_plot, 5)
        layout.addWidget(self.counts_plot, 2)

    def clear(self) -> None:
        self.funnel_plot.clear()
        for plot in (self.prevalence_plot, self.counts_plot):
            plot.clear()
            if plot.plotItem.legend is not None:
                plot.plotItem.legend.scene().removeItem(plot.plotItem.legend)
                plot.plotItem.legend = None
        self.bars = {}

    def _grouped(self, plot: pg.PlotWidget, xs: list[float], data: list[float], samples: list[float],
                 key: str, data_label: str, sample_label: str) -> None:
        legend = plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
        width = 0.4
        data_bars = pg.BarGraphItem(x=np.asarray(xs) - width / 2, height=100 * np.asarray(data), width=width,
                                    brush=pg.mkBrush(DATA_COLOR), pen=pg.mkPen(None))
        sample_bars = pg.BarGraphItem(x=np.asarray(xs) + width / 2, height=100 * np.asarray(samples), width=width,
                                      brush=pg.mkBrush(SAMPLE_COLOR), pen=pg.mkPen(None))
        plot.addItem(data_bars)
        plot.addItem(sample_bars)
        legend.addItem(data_bars, data_label)
        legend.addItem(sample_bars, sample_label)
        self.bars[f"{key}/data"] = data_bars
        self.bars[f"{key}/samples"] = sample_bars

    def _funnel(self, result: GenerateResult) -> None:
        """One bar per funnel stage, top to bottom, with its count at the bar's end."""
        stages = result.funnel_labels
        counts = [result.funnel.get(key, 0) for key, _ in stages]
        ys = np.arange(len(stages))[::-1]
        bars = pg.BarGraphItem(x0=0, y=ys, height=0.7, width=counts, brush=pg.mkBrush(SAMPLE_COLOR),
                               pen=pg.mkPen(None))
        self.funnel_plot.addItem(bars)
        self.bars["funnel"] = bars
        top = max([*counts, 1])
        for y, count in zip(ys, counts, strict=True):
            text = pg.TextItem(str(count), color="#333", anchor=(0, 0.5))
            text.setPos(count + 0.01 * top, y)
            self.funnel_plot.addItem(text)
        self.funnel_plot.getAxis("left").setTicks([[(y, label) for y, (_, label) in zip(ys, stages, strict=True)]])
        self.funnel_plot.setXRange(0, top * 1.25, padding=0)
        self.funnel_plot.setYRange(-0.6, len(stages) - 0.4, padding=0)

    def set_result(self, result: GenerateResult) -> None:
        self.clear()
        self._funnel(result)
        data_label = f"data ({result.dataset})" if result.dataset else "data"
        n = len(result.symbols)
        xs = list(range(n))
        self._grouped(self.prevalence_plot, xs, result.data_prevalence, result.sample_prevalence, "prevalence",
                      data_label, "samples (valid draws)")
        axis = self.prevalence_plot.getAxis("bottom")
        axis.setTicks([[(i, s) for i, s in enumerate(result.symbols)]])
        axis.setStyle(tickFont=_small_font())
        self.prevalence_plot.setXRange(-0.6, max(n, 1) - 0.4, padding=0)
        top = max([*result.data_prevalence, *result.sample_prevalence, 0.01])
        self.prevalence_plot.setYRange(0, 100 * top * 1.08, padding=0)
        ks = sorted(set(result.data_counts) | set(result.sample_counts))
        self._grouped(self.counts_plot, ks, [result.data_counts.get(k, 0.0) for k in ks],
                      [result.sample_counts.get(k, 0.0) for k in ks], "counts", data_label, "samples")
        self.counts_plot.getAxis("bottom").setTicks([[(k, str(k)) for k in ks]])
        if ks:
            self.counts_plot.setXRange(min(ks) - 0.6, max(ks) + 0.6, padding=0)
            top = max([*result.data_counts.values(), *result.sample_counts.values(), 0.01])
            self.counts_plot.setYRange(0, 100 * top * 1.12, padding=0)


def _small_font():
    from PySide6.QtGui import QFont

    font = QFont()
    font.setPointSize(7)
    return font


def funnel_html(result: GenerateResult) -> str:
    """The validity funnel as one row of counts with each stage's share of the previous one."""
    cells, previous = [], None
    for key, label in result.funnel_labels:
        value = result.funnel.get(key, 0)
        share = f"<br><span style='color:#666'>{value / previous:.0%}</span>" if previous else "<br>&nbsp;"
        cells.append(f"<td align='center'>{label}<br><b>{value}</b>{share}</td>")
        previous = value if value else None
    arrows = "<td valign='middle' style='color:#888'>&nbsp;→&nbsp;</td>".join(cells)
    return (f"<b>Run #{result.run_id}</b> (model #{result.model_id}) · validity funnel "
            "<span style='color:#666'>(share of the previous stage)</span>"
            f"<table cellspacing='0' cellpadding='3'><tr>{arrows}</tr></table>"
            + (f"<span style='color:#666'>{html.escape(result.note)}</span>" if result.note else ""))


CSP_METHOD_CHOICES = (("random", "Random search"), ("lcoms", "LCOMs (conservative surrogate)"),
                      ("mse", "LCOMs, MSE surrogate (ablation)"))
CSP_RESULT_COLUMNS = ("Formula", "Method", "Energy (eV/atom)", "Space group", "Best from", "Run")
CSP_METHOD_NAMES = {"csp_random": "random", "csp_lcoms": "LCOMs", "csp_mse": "LCOMs (MSE)"}
NO_CSP_MODEL_TIP = ("This project has no csp_vae model yet. Train one in the Training panel: kind “Composition-"
                    "conditioned crystal VAE · LCOMs”, on a dataset of crystals with energy_per_atom (a polymorphs "
                    "dataset made with 'crystal-studio polymorphs' suits it), then choose it here. Random search "
                    "needs no model.")
# live curves of structure prediction: name → (label, pen or None, symbol or None, brush)
CSP_CURVES = {
    "lcoms/surrogate_mean": ("surrogate (mean)", ("#1f4e8c", 2, Qt.PenStyle.SolidLine), None, None),
    "lcoms/surrogate_min": ("surrogate (min)", ("#1f4e8c", 1, Qt.PenStyle.DashLine), None, None),
    "lcoms/true_mean": ("CHGNet (mean of decodes)", None, "o", "#d62728"),
    # the baseline's squares under the starts' circles: with the same seed its first crystals are the starts
    "relax/baseline": ("random baseline", None, "s", (255, 127, 14, 200)),
    "relax/start": ("random start", None, "o", (90, 90, 90, 230)),
    "relax/decode": ("LCOMs decode", None, "t", "#2ca02c"),
    "best/main": ("best so far", ("#2ca02c", 2, Qt.PenStyle.SolidLine), None, None),
    "best/baseline": ("best so far (baseline)", ("#ff7f0e", 2, Qt.PenStyle.DashLine), None, None),
}


def parse_formula_list(text: str) -> list[str]:
    """The formulas typed in ``text``, separated by commas, semicolons or white space (duplicates once)."""
    out: list[str] = []
    for part in re.split(r"[,;\s]+", text.strip()):
        if part and part not in out:
            out.append(part)
    return out


def formula_problems(formulas: list[str]) -> list[str]:
    """Those of ``formulas`` that are not chemical formulas of real elements (typos such as 'NaCI', 'Xq2')."""
    from pymatgen.core import Composition, Element

    bad = []
    for f in formulas:
        try:
            composition = Composition(f)
            ok = composition.num_atoms > 0 and all(isinstance(e, Element) for e in composition.elements)
        except Exception:  # pymatgen raises ValueError, KeyError, ... for text that is not a formula
            ok = False
        if not ok:
            bad.append(f)
    return bad


class CspCurves(LiveCurves):
    """Live plots of structure prediction: the latent descent of LCOMs (surrogate energy of the current
    latents per step, mean and min, and the CHGNet energy of their decodes every k steps as points) and
    the CHGNet energy of every relaxation (random starts, LCOMs decodes, the random baseline) with the
    best so far, vs relaxation; formulas follow each other on both axes."""

    def _make_plots(self) -> list[pg.PlotWidget]:
        self.latent_plot = self._plot("LCOMs latent descent", "energy (eV/atom)")
        self.latent_plot.setLabel("bottom", "latent step (formulas in turn)")
        self.relax_plot = self._plot("CHGNet relaxations", "energy (eV/atom)")
        self.relax_plot.setLabel("bottom", "relaxation (formulas in turn)")
        for plot in (self.latent_plot, self.relax_plot):
            plot.setMinimumHeight(90)
            plot.getViewBox().setDefaultPadding(0.06)  # markers at the extremes stay whole
            for axis in ("left", "bottom"):
                plot.getAxis(axis).enableAutoSIPrefix(False)
            # the legend in a row under the plot: inside it would hide points (energies go anywhere)
            item = plot.plotItem
            item.legend.scene().removeItem(item.legend)
            item.legend = pg.LegendItem(colCount=3, labelTextSize="8pt", verSpacing=-6, horSpacing=12)
            item.layout.addItem(item.legend, 4, 1)
        self.labels = {name: spec[0] for name, spec in CSP_CURVES.items()}
        self._reset_counters()
        return [self.latent_plot, self.relax_plot]

    def _reset_counters(self) -> None:
        self.latent_steps = 0
        self.relaxations = {"main": 0, "baseline": 0}
        self.best: dict[str, tuple[str, float]] = {}  # phase → (formula, lowest energy so far)

    def start(self, method: str, baseline: bool) -> None:
        """Clear the plots for a new run of ``method``; the latent plot only for a latent method."""
        self.clear()
        latent = method != "random"
        self.latent_plot.setVisible(latent)
        self.labels["relax/start"] = "random start" if latent else "random trial"
        self.labels["best/main"] = "best so far (LCOMs)" if latent and baseline else "best so far"

    def clear(self) -> None:
        super().clear()
        self._reset_counters()

    def add_point(self, name: str, x: float, y: float) -> None:
        xs, ys = self.series.setdefault(name, ([], []))
        xs.append(float(x))
        ys.append(float(y))
        self.dirty = True

    def add_event(self, phase: str, event: ProgressEvent) -> None:
        """Queue the metrics of one progress event of phase 'main' or 'baseline'."""
        m = event.metrics or {}
        if "lcoms/surrogate_mean" in m:
            self.latent_steps += 1
            for key in ("lcoms/surrogate_mean", "lcoms/surrogate_min", "lcoms/true_mean"):
                value = m.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    self.add_point(key, self.latent_steps, value)
        energy = m.get("energy_per_atom")
        if isinstance(energy, int | float) and math.isfinite(energy):
            self.relaxations[phase] += 1
            x = self.relaxations[phase]
            kind = "relax/baseline" if phase == "baseline" else (
                "relax/decode" if "lcoms/improvement" in m else "relax/start")
            self.add_point(kind, x, energy)
            formula = (event.message or "").split(":", 1)[0]
            best_key = f"best/{phase}"
            previous = self.best.get(phase)
            if previous is None or previous[0] != formula:
                if previous is not None:
                    self.add_point(best_key, x - 0.5, math.nan)  # a new formula starts its own line
                best = energy
            else:
                best = min(previous[1], energy)
            self.best[phase] = (formula, best)
            self.add_point(best_key, x, best)

    def plot_for(self, name: str) -> pg.PlotWidget | None:
        if name.startswith("lcoms/"):
            return self.latent_plot
        if name.startswith(("relax/", "best/")):
            return self.relax_plot
        return None

    def _draw_order(self) -> list[str]:
        return [n for n in CSP_CURVES if n in self.series]

    def _new_curve(self, plot: pg.PlotWidget, name: str) -> pg.PlotDataItem:
        curve = self._make_curve(plot, name)
        curve.setZValue(list(CSP_CURVES).index(name))  # stacked in CSP_CURVES order whichever comes first
        return curve

    def _make_curve(self, plot: pg.PlotWidget, name: str) -> pg.PlotDataItem:
        _, pen, symbol, brush = CSP_CURVES[name]
        label = self.labels[name]
        if symbol is not None:
            return plot.plot([], [], pen=None, symbol=symbol, symbolSize={"o": 7, "t": 11}.get(symbol, 10),
                             symbolBrush=pg.mkBrush(brush), symbolPen=pg.mkPen("w", width=0.5), name=label)
        colour, width, style = pen
        return plot.plot([], [], pen=pg.mkPen(colour, width=width, style=style), name=label, connect="finite")


def cif_export_work(project: Project, items: list[tuple[int, list[int]]], folder: str):
    """Job function: write the candidates (run id, candidate ids) as CIF files into ``folder``."""

    def fn(progress: ProgressCallback, cancel: CancelToken):
        from crystal_studio.store.exporting import export_candidates

        paths = []
        for run_id, ids in items:
            paths += export_candidates(project, run_id, folder, "cif", candidate_ids=ids, progress=progress,
                                       cancel=cancel, overwrite=True)
        return paths

    return _close_after(project, fn)


class StructurePrediction(LiveJobMixin, QWidget):
    """The Generate panel's structure-prediction section: formulas (typed, or the selected sampled ones),
    method (random search, LCOMs on the conservative or the MSE surrogate), the csp_vae, the budget;
    run and cancel; live curves (:class:`CspCurves`); per formula the best structure's energy, space
    group and origin, of the run and of its random baseline; CIF export of those structures.

    A finished run is announced with :attr:`predicted` (its run id; the baseline's with :attr:`baseline_predicted`)."""

    predicted = Signal(int)  # run id of a finished structure-prediction run (its candidates)
    baseline_predicted = Signal(int)  # run id of the random baseline that followed it
    cancelling_text = "Cancelling (after the current relaxation)…"

    def __init__(self, jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.job: Job | None = None
        self.export_job: Job | None = None
        self.last_runs: CspRuns | None = None
        self.last_export: list | None = None
        self.source: tuple[list[str], dict | None, str | None] | None = None  # formulas from a sampling run
        self._phase = "main"  # phase of the events seen last: 'main', then 'baseline'
        self._main_run: int | None = None  # run id of the running job's main run
        self._init_live(accept=lambda report: bool(report[1].metrics) or report[1].run_id is not None)

        self.formula_edit = QLineEdit()
        self.formula_edit.setObjectName("cspFormulas")
        self.formula_edit.setPlaceholderText("e.g. NaCl, SrTiO3 — or select sampled formulas in Sample formulas")
        self.formula_edit.setToolTip("Compositions to predict crystal structures of, separated by commas or spaces")
        self.formula_edit.textChanged.connect(lambda _text: self._sync_enabled())
        self.formula_edit.returnPressed.connect(self.start)
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("cspMethod")
        tips = {"random": "Random symmetric crystals (PyXtal) relaxed by CHGNet; the lowest energy is kept",
                "lcoms": "LCOMs: half the budget relaxed as random starts, their latents descended on the csp_vae's "
                         "conservative energy surrogate, the decodes (exactly the formula's atoms) relaxed",
                "mse": "The LCOMs ablation: the same latent descent on the plain-MSE surrogate (no conservative "
                       "term), to see what the conservative training buys"}
        for key, text in CSP_METHOD_CHOICES:
            self.method_combo.addItem(text, key)
            self.method_combo.setItemData(self.method_combo.count() - 1, tips[key], Qt.ItemDataRole.ToolTipRole)
        self.method_combo.currentIndexChanged.connect(lambda _i: self._sync_enabled())
        self.method_chosen = False  # until the user picks one: LCOMs when the project has a csp_vae, else random
        self.method_combo.activated.connect(lambda _i: setattr(self, "method_chosen", True))
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("cspModel")
        self.budget_spin = GeneratePanel._spin(1, 1000, 8)
        self.budget_spin.setObjectName("cspBudget")
        self.budget_spin.setToolTip("CHGNet relaxations per formula (LCOMs: half random starts, half decodes; the "
                                    "random baseline gets the same number)")
        self.steps_spin = GeneratePanel._spin(1, 10000, 50)
        self.steps_spin.setObjectName("cspSteps")
        self.steps_spin.setToolTip("Gradient steps on the latents (LCOMs paper: 50)")
        self.true_every_spin = GeneratePanel._spin(0, 10000, 10)
        self.true_every_spin.setPrefix("CHGNet every ")
        self.true_every_spin.setToolTip("Score the current decodes with CHGNet every k latent steps (0: never); "
                                        "the points on the latent plot")
        self.relax_steps_spin = GeneratePanel._spin(1, 100000, 200)
        self.relax_steps_spin.setObjectName("cspRelaxSteps")
        self.relax_steps_spin.setToolTip("Most FIRE steps of one CHGNet relaxation (free cell, forces below 0.1 eV/Å)")
        self.seed_spin = GeneratePanel._spin(0, 2**31 - 1, 0)
        self.seed_spin.setToolTip("Seed of the random crystals (per formula); the baseline uses the same one, so its "
                                  "first crystals are LCOMs' starts")
        self.baseline_check = QCheckBox("compare with random search at the same budget")
        self.baseline_check.setObjectName("cspBaseline")
        self.baseline_check.setChecked(True)
        self.baseline_check.setToolTip("After the LCOMs run, relax the same number of random crystals per formula "
                                       "(same seed) as a second run, and compare the best energies")
        self.baseline_check.toggled.connect(lambda _on: self._sync_enabled())
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.use_selected_button = QPushButton("Use selected samples")
        self.use_selected_button.setToolTip("Take the formulas selected in the Sample formulas table")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        formulas = QHBoxLayout()
        formulas.addWidget(self.formula_edit, 1)
        formulas.addWidget(self.use_selected_button)
        form.addRow("Formulas", formulas)
        form.addRow("Method", self.method_combo)
        form.addRow("Model", self.model_combo)
        budget = QHBoxLayout()
        for label, widget in (("Relaxations", self.budget_spin), ("LCOMs steps", self.steps_spin),
                              (None, self.true_every_spin)):
            if label:
                budget.addWidget(QLabel(label))
            budget.addWidget(widget, 1)
        form.addRow("Budget", budget)
        relax = QHBoxLayout()
        for label, widget in (("Relax steps", self.relax_steps_spin), ("Seed", self.seed_spin),
                              ("Device", self.device_combo)):
            relax.addWidget(QLabel(label))
            relax.addWidget(widget, 1)
        form.addRow("", relax)
        form.addRow("", self.baseline_check)
        box = QGroupBox("Structure prediction")
        box.setObjectName("structurePredictionGroup")
        box.setLayout(form)

        self.start_button = QPushButton("▶ Predict")
        self.start_button.setObjectName("runStructurePrediction")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("■ Cancel")
        self.cancel_button.setObjectName("cancelStructurePrediction")
        run_row = self._build_run_row()
        self.status_label.setObjectName("cspStatus")

        self.curves = CspCurves()
        self.result_table = QTableWidget(0, len(CSP_RESULT_COLUMNS))
        self.result_table.setObjectName("cspResults")
        self.result_table.setHorizontalHeaderLabels(list(CSP_RESULT_COLUMNS))
        self.result_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.result_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.result_table.verticalHeader().setVisible(False)
        self.result_table.verticalHeader().setDefaultSectionSize(20)
        header = self.result_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.result_table.itemSelectionChanged.connect(self._sync_enabled)
        self.result_table.setMinimumHeight(50)
        self.compare_label = QLabel("")
        self.compare_label.setObjectName("cspCompare")
        self.compare_label.setWordWrap(True)
        self.compare_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton("Export CIF…")
        self.export_button.setObjectName("cspExportCif")
        self.export_button.setToolTip("Write the best structures (the selected rows, or all) as CIF files; the "
                                      "Candidates panel has every candidate of these runs")
        self.export_button.clicked.connect(self.export_dialog)
        result_row = QHBoxLayout()
        result_row.addWidget(self.compare_label, 1)
        result_row.addWidget(self.export_button, 0, Qt.AlignmentFlag.AlignTop)
        results = QWidget()
        results_layout = QVBoxLayout(results)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.addWidget(self.result_table, 1)
        results_layout.addLayout(result_row)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(self.curves)
        self.split.addWidget(results)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([430, 95])  # the table keeps room for a run and its baseline

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(box)
        layout.addLayout(run_row)
        layout.addWidget(self.status_label)
        layout.addWidget(self.split, 1)
        self._sync_enabled()

    # ---------------------------------------------------------------- inputs

    def set_project(self, project: Project | None) -> None:
        if self.running:
            self.job.cancel()
        self.project = project
        self.source = None
        self.last_runs = None
        self.curves.clear()
        self.result_table.setRowCount(0)
        self.compare_label.setText("")
        self.status_label.setText("")
        self.refresh_models()

    def refresh_models(self) -> None:
        """Re-read the project's csp_vae models into the model box (the newest chosen when none was)."""
        from crystal_studio.ml.kinds import CSP_KINDS

        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        if self.project is not None:
            for m in model_store.list_models(self.project):
                if m.kind not in CSP_KINDS:
                    continue
                self.model_combo.addItem(f"#{m.id} {m.name or m.kind}" + (f" · {m.dataset}" if m.dataset else ""),
                                         m.id)
                values = next((v for v in m.metrics.values() if isinstance(v, dict)), {})
                tip = f"{m.kind}, trained {m.created[:16].replace('T', ' ')}"
                for key, text in (("val_conservative_mae", "conservative surrogate validation MAE"),
                                  ("val_mse_mae", "MSE surrogate validation MAE")):
                    if isinstance(values.get(key), int | float):
                        tip += f"; {text} {values[key]:.3g} eV/atom"
                self.model_combo.setItemData(self.model_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        if not self.model_combo.count():
            self.model_combo.addItem("(no csp_vae model — train one in the Training panel)", None)
        index = self.model_combo.findData(current)
        self.model_combo.setCurrentIndex(index if index >= 0 and current is not None else self.model_combo.count() - 1)
        self.model_combo.blockSignals(False)
        if not self.method_chosen:
            self.method_combo.setCurrentIndex(self.method_combo.findData("random" if self.model_id() is None
                                                                         else "lcoms"))
        self._sync_enabled()

    def method(self) -> str:
        return self.method_combo.currentData()

    def set_method(self, method: str) -> None:
        index = self.method_combo.findData(method)
        if index < 0:
            raise CrystalStudioError(f"unknown structure-prediction method '{method}'")
        self.method_chosen = True
        self.method_combo.setCurrentIndex(index)

    def latent(self) -> bool:
        return self.method() != "random"

    def model_id(self) -> int | None:
        return self.model_combo.currentData()

    def set_model(self, model_id: int) -> None:
        index = self.model_combo.findData(model_id)
        if index < 0:
            raise CrystalStudioError(f"model #{model_id} is not a csp_vae of this project")
        self.model_combo.setCurrentIndex(index)

    def formulas(self) -> list[str]:
        return parse_formula_list(self.formula_edit.text())

    def set_formulas(self, formulas: list[str], source: dict | None = None, dataset: str | None = None) -> None:
        """Put ``formulas`` in the formula field; ``source`` and ``dataset`` (where they came from, the novelty
        reference) go with the run while the field holds exactly these formulas."""
        self.formula_edit.setText(", ".join(formulas))
        self.source = (parse_formula_list(", ".join(formulas)), source, dataset)

    def focus_formulas(self) -> None:
        self.formula_edit.setFocus(Qt.FocusReason.OtherFocusReason)
        self.formula_edit.selectAll()

    def _sync_enabled(self) -> None:
        if not hasattr(self, "export_button"):
            return  # still building
        idle = not self.running and self.project is not None
        latent = self.latent()
        has_model = self.model_id() is not None
        for widget in (self.formula_edit, self.method_combo, self.budget_spin, self.relax_steps_spin, self.seed_spin,
                       self.device_combo):
            widget.setEnabled(idle)
        self.use_selected_button.setEnabled(idle and self.use_selected_button.property("available") is True)
        self.model_combo.setEnabled(idle and latent and has_model)
        if latent and not has_model:
            self.model_combo.setToolTip(NO_CSP_MODEL_TIP)
        elif not latent:
            self.model_combo.setToolTip("Random search uses no model; LCOMs uses the chosen csp_vae")
        else:
            self.model_combo.setToolTip("The csp_vae whose latent space and energy surrogate LCOMs descends")
        for widget in (self.steps_spin, self.true_every_spin, self.baseline_check):
            widget.setEnabled(idle and latent)
        self.budget_spin.setMinimum(2 if latent else 1)
        self.start_button.setEnabled(idle and bool(self.formulas()) and (has_model or not latent))
        self.start_button.setToolTip(NO_CSP_MODEL_TIP if latent and not has_model else
                                     "Predict the structures of the formulas (a background job)")
        self.cancel_button.setEnabled(self.running)
        exporting = self.export_job is not None and self.export_job.running
        self.export_button.setEnabled(self.project is not None and not exporting and bool(self._export_items()))

    def set_selection_available(self, available: bool) -> None:
        """Whether the Sample formulas table has selected formulas to take."""
        self.use_selected_button.setProperty("available", bool(available))
        self._sync_enabled()

    # ---------------------------------------------------------------- the run

    def start(self) -> Job | None:
        """Predict the structures of the typed formulas with the form's settings; the job, or None (with the
        reason in the status line) when it cannot start."""
        if self.running or self.project is None:
            return None
        formulas = self.formulas()
        if not formulas:
            self.status_label.setText("Type one or more formulas (e.g. NaCl, SrTiO3).")
            return None
        problems = formula_problems(formulas)
        if problems:
            self.status_label.setText(f"Not a chemical formula: {', '.join(problems)}")
            return None
        method = self.method()
        latent = self.latent()
        model_ids: list[int] = []
        if latent:
            if self.model_id() is None:
                self.status_label.setText(NO_CSP_MODEL_TIP)
                return None
            model_ids = [self.model_id()]
        source, dataset = None, None
        if self.source is not None and self.source[0] == formulas:
            source, dataset = self.source[1], self.source[2]
        baseline = latent and self.baseline_check.isChecked()
        lcoms = {"steps": self.steps_spin.value(), "true_every": self.true_every_spin.value()} if latent else None
        trials = self.budget_spin.value()
        self.curves.start(method, baseline)
        self._relay.take()
        self._phase, self._main_run = "main", None
        self.last_runs = None
        self.result_table.setRowCount(0)
        self.compare_label.setText("")
        per_formula = trials + (self.steps_spin.value() if latent else 0)
        self.progress_bar.setRange(0, max(1, per_formula * len(formulas)))
        self.progress_bar.setValue(0)
        name = dict(CSP_METHOD_CHOICES)[method]
        self.status_label.setText(f"{name} for {', '.join(formulas)}: loading CHGNet…")
        work = csp_work(self.project, formulas, trials, self.seed_spin.value(), self.device_combo.currentText(),
                        dataset, source, method, model_ids, self.relax_steps_spin.value(), lcoms, baseline,
                        self._relay.push)
        what = f"{len(formulas)} formulas" if len(formulas) > 1 else formulas[0]
        return self._launch_live(f"Predicting structures of {what} ({name})", work,
                                 "Cancelled; nothing was stored.")

    def _drain(self) -> None:
        for phase, event in self._relay.take():
            self._phase = phase
            if event.run_id is not None and phase == "main":
                self._main_run = event.run_id
            if event.metrics:
                self.curves.add_event(phase, event)

    def _tick(self) -> None:
        self.curves.redraw()

    def _progress(self, event: ProgressEvent) -> None:
        if event.total:
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.step, event.total))
        if event.message:
            self.status_label.setText(event.message)

    def _succeeded(self, runs: CspRuns) -> None:
        self._finish_curves()
        self.last_runs = runs
        self.progress_bar.setValue(self.progress_bar.maximum())
        self.show_runs(runs)
        main = runs.main
        done = sum(1 for f in main.formulas if f.status == "ok")
        text = (f"Done: run #{main.run_id}: structures for {done} of {len(main.formulas)} formula(s)"
                + (f", random baseline run #{runs.baseline.run_id}" if runs.baseline is not None else "")
                + " — the candidates are in the Candidates panel.")
        self.status_label.setText(text)
        self._sync_enabled()
        self.predicted.emit(main.run_id)
        if runs.baseline is not None:
            self.baseline_predicted.emit(runs.baseline.run_id)

    def _stopped(self, text: str) -> None:
        self._finish_curves()
        if text.startswith("Cancelled") and self._phase == "baseline" and self._main_run is not None:
            self.status_label.setText(f"Cancelled the random baseline; run #{self._main_run} is stored (Candidates "
                                      "panel).")
            self.predicted.emit(self._main_run)
        else:
            self.status_label.setText(text)
        self._sync_enabled()

    # ---------------------------------------------------------------- results

    def show_runs(self, runs: CspRuns) -> None:
        """Per formula the best structure of the run (and of its baseline), and how they compare."""
        rows = [(runs.main, f) for f in runs.main.formulas]
        if runs.baseline is not None:
            rows += [(runs.baseline, f) for f in runs.baseline.formulas]
        self.result_table.setRowCount(len(rows))
        for r, (result, f) in enumerate(rows):
            ok = f.status == "ok"
            sg = f"{f.spacegroup} ({f.spacegroup_number})" if f.spacegroup else "—"
            origin = f.best_from if ok else f"failed: {f.reason}"
            cells = (f.formula, CSP_METHOD_NAMES.get(result.method, result.method),
                     f"{f.energy_per_atom:.4f}" if f.energy_per_atom is not None else "—", sg, origin,
                     f"#{result.run_id}")
            tip = f"candidate #{f.candidate_id}" if f.candidate_id is not None else f.reason
            if f.improvements:
                tip += ("\nLCOMs decodes vs their starts (eV/atom, positive = lower): "
                        + ", ".join(f"{v:+.3f}" for v in f.improvements))
            if f.reason and ok:
                tip += f"\n{f.reason}"
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, (result.run_id, f.candidate_id))
                item.setToolTip(tip)
                if c == 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if not ok:
                    item.setForeground(pg.mkColor("#b00020"))
                self.result_table.setItem(r, c, item)
        self.compare_label.setText(comparison_html(runs))
        self._sync_enabled()

    def _export_items(self) -> list[tuple[int, list[int]]]:
        """(run id, candidate ids) of the selected result rows, or of every row, that have a structure."""
        rows = sorted({i.row() for i in self.result_table.selectionModel().selectedRows()}) or range(
            self.result_table.rowCount())
        grouped: dict[int, list[int]] = {}
        for r in rows:
            item = self.result_table.item(r, 0)
            run_id, cid = item.data(Qt.ItemDataRole.UserRole) if item is not None else (None, None)
            if cid is not None:
                grouped.setdefault(run_id, []).append(cid)
        return list(grouped.items())

    def export_cif(self, folder: str) -> Job | None:
        """Write the best structures (selected rows, or all) as CIF files into ``folder`` (a job)."""
        items = self._export_items()
        if self.project is None or not items or (self.export_job is not None and self.export_job.running):
            return None
        self.export_job = self.jobs.start("Exporting CIF files", cif_export_work(self.project, items, folder),
                                          self._exported)
        self.export_job.done.connect(self._sync_enabled)
        self._sync_enabled()
        return self.export_job

    def _exported(self, paths: list) -> None:
        self.last_export = paths
        where = paths[0].parent if paths else ""
        self.status_label.setText(f"Wrote {len(paths)} CIF file(s) to {where}.")

    def export_dialog(self) -> None:
        if self.project is None:
            return
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Export the predicted structures as CIF",
                                                  str(self.project.path.parent))
        if folder:
            self.export_cif(folder)


def comparison_html(runs: CspRuns) -> str:
    """One line per formula: the best energy of the run against its random baseline's (eV/atom)."""
    if runs.baseline is None:
        best = [f for f in runs.main.formulas if f.status == "ok"]
        return "<br>".join(f"<b>{html.escape(f.formula)}</b>: {f.energy_per_atom:.4f} eV/atom, {f.spacegroup} "
                           f"(run #{runs.main.run_id})" for f in best)
    name = CSP_METHOD_NAMES.get(runs.main.method, runs.main.method)
    base = {f.formula: f for f in runs.baseline.formulas}
    lines = []
    for f in runs.main.formulas:
        b = base.get(f.formula)
        if f.energy_per_atom is None or b is None or b.energy_per_atom is None:
            continue
        delta = b.energy_per_atom - f.energy_per_atom
        verdict = (f"{name} lower by {delta:.3f}" if delta > 5e-4 else
                   f"random lower by {-delta:.3f}" if delta < -5e-4 else "the same within 0.001")
        colour = "#2e7d32" if delta > 5e-4 else "#b00020" if delta < -5e-4 else "#555"
        lines.append(f"<b>{html.escape(f.formula)}</b>: {name} {f.energy_per_atom:.4f} ({f.spacegroup}) vs random "
                     f"{b.energy_per_atom:.4f} eV/atom ({b.spacegroup}) — <span style='color:{colour}'>{verdict} "
                     "eV/atom</span>")
    return "<br>".join(lines)


class GeneratePanel(LiveJobMixin, QWidget):
    """Model, number of samples, seed, class and centre; sample/cancel; funnel, filtered formulas, plots;
    dataset hull; structure prediction for the selected formulas. See the module docstring."""

    sampled = Signal(int)  # run id of a sampling run just stored
    structures_predicted = Signal(int)  # run id of a finished run whose draws are crystals (structure prediction,
    # crystal-VAE sampling): its candidates
    hull_computed = Signal(str)  # dataset whose hull was just stored

    def __init__(self, jobs: JobManager, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.job: Job | None = None
        self.side_job: Job | None = None  # the dataset hull (structure prediction runs in self.csp)
        self.result: GenerateResult | None = None
        self.last_csp_result = None
        self.last_hull = None
        self.structure_id: int | None = None  # the structure selected in the Datasets panel
        self.crystal_model = False  # the chosen model draws crystals (a crystal VAE), not formulas
        self._init_live()

        # ---- sampling settings
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("generateModel")
        self.model_combo.setToolTip("Generative models (train one in the Training panel): a composition VAE draws "
                                    "formulas, a crystal VAE draws whole crystals (stored as candidates)")
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.n_spin = self._spin(1, 1_000_000, 1000)
        self.n_spin.setSingleStep(100)
        self.seed_spin = self._spin(0, 2**31 - 1, 0)
        self.class_combo = QComboBox()
        self.class_combo.setObjectName("decompositionClass")
        self.class_combo.setToolTip("Draw only formulas of this decomposition class (1: on the dataset's hull; k: "
                                    "decomposes into k phases), or as often as in the training data")
        self.around_check = QCheckBox("around the selected structure")
        self.around_check.setToolTip("Draw around the latent mean of the structure selected in the Datasets panel "
                                     "(its formula for a composition VAE, the crystal itself for a crystal VAE), with "
                                     "spread σ, instead of from the prior")
        self.around_check.toggled.connect(lambda _on: self._sync_enabled())
        self.around_label = QLabel("(select a structure in Datasets)")
        self.around_label.setStyleSheet("color:#555")
        self.sigma_spin = QDoubleSpinBox()
        self.sigma_spin.setRange(0.01, 10.0)
        self.sigma_spin.setSingleStep(0.1)
        self.sigma_spin.setValue(1.0)
        self.sigma_spin.setPrefix("σ ")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        # a conditional voxel VAE's condition and the funnel's within-target check
        self.decile_combo = QComboBox()
        self.decile_combo.setObjectName("conditionDecile")
        self.decile_combo.setToolTip("Condition every draw on this decile of the property the model was trained "
                                     "on, or draw a decile per sample uniformly (around a structure: its own)")
        self.target_combo = QComboBox()
        self.target_combo.setObjectName("targetModel")
        self.target_combo.setToolTip("A property predictor of the condition property: the funnel then keeps the "
                                     "draws whose predicted value lies within the tolerance of their target (the "
                                     "decile's median, or the base structure's value) — the paper's stage")
        self.target_combo.currentIndexChanged.connect(lambda _i: self._sync_enabled())
        self.within_spin = QSpinBox()
        self.within_spin.setRange(1, 500)
        self.within_spin.setValue(20)
        self.within_spin.setPrefix("± ")
        self.within_spin.setSuffix(" %")
        self.within_spin.setToolTip("Allowed deviation of the predicted property from the target")
        self.condition_row = QWidget()
        condition = QHBoxLayout(self.condition_row)
        condition.setContentsMargins(0, 0, 0, 0)
        condition.addWidget(self.decile_combo, 2)
        condition.addWidget(QLabel("Check by"))
        condition.addWidget(self.target_combo, 2)
        condition.addWidget(self.within_spin)

        form = QFormLayout()
        self.form = form
        form.addRow("Model", self.model_combo)
        budget = QHBoxLayout()
        for label, widget in (("Samples", self.n_spin), ("Seed", self.seed_spin), ("Class", self.class_combo)):
            budget.addWidget(QLabel(label))
            budget.addWidget(widget, 1)
        form.addRow(budget)
        around = QHBoxLayout()
        around.addWidget(self.around_check)
        around.addWidget(self.around_label, 1)
        around.addWidget(self.sigma_spin)
        around.addWidget(QLabel("Device"))
        around.addWidget(self.device_combo)
        form.addRow("Centre", around)
        form.addRow("Condition", self.condition_row)

        self.start_button = QPushButton("▶ Sample")
        self.start_button.setObjectName("startSampling")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("■ Cancel")
        run_row = self._build_run_row()
        self.status_label.setObjectName("generateStatus")

        self.runs_combo = QComboBox()
        self.runs_combo.setObjectName("samplingRuns")
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show this sampling run's formulas, funnel and plots")
        self.open_button.clicked.connect(lambda: self.open_run(self.runs_combo.currentData()))
        runs_row = QHBoxLayout()
        runs_row.addWidget(QLabel("Past runs"))
        runs_row.addWidget(self.runs_combo, 1)
        runs_row.addWidget(self.open_button)

        # ---- dataset hull
        self.hull_dataset_combo = QComboBox()
        self.hull_dataset_combo.setObjectName("hullDataset")
        self.hull_button = QPushButton("Compute dataset hull")
        self.hull_button.setObjectName("computeHull")
        self.hull_button.setToolTip("Energy above this dataset's own convex hull and the decomposition of every "
                                    "structure with a formation energy (stored as derived properties; a composition "
                                    "VAE trained afterwards learns these decomposition classes)")
        self.hull_button.clicked.connect(lambda: self.compute_hull(self.hull_dataset_combo.currentData()))
        hull_row = QHBoxLayout()
        hull_row.addWidget(QLabel("Dataset"))
        hull_row.addWidget(self.hull_dataset_combo, 1)
        hull_row.addWidget(self.hull_button)

        # ---- results: funnel, filters, table, plots
        self.funnel_label = QLabel("Sample a model to see the validity funnel.")
        self.funnel_label.setObjectName("funnel")
        self.funnel_label.setWordWrap(True)
        self.funnel_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.element_filter = ElementFilterButton()
        self.element_filter.setObjectName("generateElements")
        self.element_filter.changed.connect(self.apply_filters)
        self.min_elements = self._spin(1, 20, 1)
        self.max_elements = self._spin(1, 20, 20)
        self.min_elements.setPrefix("≥ ")
        self.max_elements.setPrefix("≤ ")
        for spin in (self.min_elements, self.max_elements):
            spin.valueChanged.connect(self.apply_filters)
        self.valid_check = QCheckBox("valid")
        self.valid_check.setToolTip("Only compositionally valid formulas (SMACT charge neutrality and "
                                    "electronegativity)")
        self.novel_check = QCheckBox("novel")
        self.novel_check.setToolTip("Only formulas that are not in the training dataset")
        for check in (self.valid_check, self.novel_check):
            check.toggled.connect(self.apply_filters)
        self.count_label = QLabel("")
        self.count_label.setStyleSheet("color:#555")
        filters = QHBoxLayout()
        filters.addWidget(self.element_filter, 2)
        filters.addWidget(QLabel("Elements"))
        filters.addWidget(self.min_elements)
        filters.addWidget(self.max_elements)
        filters.addWidget(QLabel("Only"))
        filters.addWidget(self.valid_check)
        filters.addWidget(self.novel_check)
        filters.addWidget(self.count_label, 1)

        self.samples_model = SamplesModel(self)
        self.table = ResponsiveTableView()
        self.table.setObjectName("samplesTable")
        self.table.setModel(self.samples_model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(lambda *_a: self._sync_enabled())

        # ---- structure prediction (its own tab): the selected formulas go there
        self.csp = StructurePrediction(jobs)
        self.csp.predicted.connect(self._csp_done)
        self.csp.use_selected_button.clicked.connect(self.use_selected_formulas)
        self.trials_spin = self.csp.budget_spin  # relaxations per formula
        self.csp_button = QPushButton("Predict structures…")
        self.csp_button.setObjectName("predictStructures")
        self.csp_button.setToolTip("Predict crystal structures of the selected formulas with the settings of the "
                                   "Structure prediction tab (random search or LCOMs, relaxed with CHGNet); the "
                                   "candidates appear in the Candidates panel")
        self.csp_button.clicked.connect(self.predict_selected)
        self.side_cancel = QPushButton("■")
        self.side_cancel.setToolTip("Cancel the hull computation")
        self.side_cancel.setFixedWidth(28)
        self.side_cancel.clicked.connect(self.cancel_side_job)
        self.side_label = QLabel("")
        self.side_label.setObjectName("generateSideStatus")
        self.side_label.setWordWrap(True)
        self.side_label.setStyleSheet("color:#555")
        csp_row = QHBoxLayout()
        csp_row.addWidget(self.csp_button)
        csp_row.addWidget(self.side_cancel)
        csp_row.addWidget(self.side_label, 1)

        self.plots = GenerationPlots()

        controls = QWidget()
        top = QVBoxLayout(controls)
        top.setContentsMargins(4, 4, 4, 4)
        box = QGroupBox("Sample a generative model")
        box.setLayout(form)
        top.addWidget(box)
        top.addLayout(run_row)
        top.addWidget(self.status_label)
        top.addLayout(runs_row)
        top.addLayout(hull_row)

        table_page = QWidget()
        table_layout = QVBoxLayout(table_page)
        table_layout.setContentsMargins(2, 2, 2, 2)
        table_layout.addLayout(filters)
        table_layout.addWidget(self.table, 1)
        table_layout.addLayout(csp_row)
        self.results_split = QSplitter(Qt.Orientation.Vertical)
        self.results_split.addWidget(table_page)
        self.results_split.addWidget(self.plots)
        self.results_split.setStretchFactor(0, 1)
        self.results_split.setStretchFactor(1, 1)
        self.results_split.setSizes([420, 260])
        results = QWidget()
        results_layout = QVBoxLayout(results)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.addWidget(self.funnel_label)
        results_layout.addWidget(self.results_split, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(controls)
        splitter.addWidget(results)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        self.sections = QTabWidget()
        self.sections.setObjectName("generateSections")
        self.sections.setDocumentMode(True)
        self.sections.addTab(splitter, "Sample formulas")
        self.sections.addTab(self.csp, "Structure prediction")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.sections)
        self._sync_enabled()

    @staticmethod
    def _spin(lo: int, hi: int, value: int) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(lo, hi)
        spin.setValue(value)
        return spin

    # ---------------------------------------------------------------- project and inputs

    def set_project(self, project: Project | None) -> None:
        if self.running:
            self.job.cancel()
        self.project = project
        self.result = None
        self.structure_id = None
        self.samples_model.set_rows([])
        self.samples_model.apply(lambda _r: True)
        self.plots.clear()
        self.funnel_label.setText("Sample a model to see the validity funnel.")
        self.status_label.setText("")
        self.side_label.setText("")
        self.csp.set_project(project)
        self.set_structure(-1)
        self.refresh()

    def refresh(self) -> None:
        """Re-read generative models, datasets and past sampling runs from the project."""
        current = self.model_combo.currentData()
        run = self.runs_combo.currentData()
        for combo in (self.model_combo, self.runs_combo):
            combo.blockSignals(True)
            combo.clear()
        if self.project is not None:
            for m in model_store.list_models(self.project):
                if m.kind not in FORMULA_GENERATOR_KINDS + CRYSTAL_GENERATOR_KINDS:
                    continue
                self.model_combo.addItem(f"#{m.id} {m.name or m.kind}" + (f" · {m.dataset}" if m.dataset else ""),
                                         m.id)
                values = next((v for v in m.metrics.values() if isinstance(v, dict)), {})
                tip = f"{m.kind}, trained {m.created[:16].replace('T', ' ')}"
                for key, text in (("val_formula_accuracy", "validation exact-formula reconstruction"),
                                  ("val_prior_validity", "structural validity of prior draws")):
                    if isinstance(values.get(key), int | float):
                        tip += f"; {text} {values[key]:.1%}"
                self.model_combo.setItemData(self.model_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            for r in model_store.list_runs(self.project, "sampling"):
                p = r.parameters
                self.runs_combo.addItem(f"#{r.id} model #{p.get('model_id', '?')} · {p.get('n', '?')} samples · "
                                        f"seed {p.get('seed', '?')} · {r.status}", r.id)
                self.runs_combo.setItemData(self.runs_combo.count() - 1, r.message or r.started,
                                            Qt.ItemDataRole.ToolTipRole)
        self.refresh_datasets()
        for combo, value in ((self.model_combo, current), (self.runs_combo, run)):
            index = combo.findData(value)
            if index >= 0:
                combo.setCurrentIndex(index)
            elif combo is self.model_combo and combo.count():
                combo.setCurrentIndex(combo.count() - 1)  # the newest model
            combo.blockSignals(False)
        self.csp.refresh_models()
        self._model_changed()

    def refresh_datasets(self) -> None:
        """Re-read the hull's dataset choices (after an import, rename or delete), keeping the chosen one."""
        names = self.project.dataset_names() if self.project is not None else []
        refill_combo(self.hull_dataset_combo, [(name, name) for name in names])
        self._sync_enabled()

    def model_ids(self) -> list[int]:
        return [self.model_combo.itemData(i) for i in range(self.model_combo.count())]

    def set_model(self, model_id: int) -> None:
        index = self.model_combo.findData(model_id)
        if index < 0:
            raise CrystalStudioError(f"model #{model_id} is not a generative model of this project")
        self.model_combo.setCurrentIndex(index)

    def _model_changed(self, *_args) -> None:
        """Offer the chosen model's decomposition classes; default the hull's dataset to its training data."""
        model_id = self.model_combo.currentData()
        n_classes, dataset = 1, None
        self.crystal_model = False
        if self.project is not None and model_id is not None:
            try:
                record = model_store.get_model(self.project, model_id, with_checkpoint=False)
                n_classes = int((record.hyperparameters.get("model") or {}).get("n_classes", 1))
                dataset = record.dataset
                self.crystal_model = record.kind in CRYSTAL_GENERATOR_KINDS
            except CrystalStudioError:
                record = None
        self._fill_condition(record if model_id is not None and self.project is not None else None)
        current = self.class_combo.currentData()
        self.class_combo.clear()
        self.class_combo.addItem("as in training", None)
        for k in range(1, n_classes + 1 if n_classes > 1 else 1):
            text = "1 · on the hull" if k == 1 else f"{k}{'+' if k == n_classes else ''} · phases"
            self.class_combo.addItem(text, k)
        self.class_combo.setCurrentIndex(max(self.class_combo.findData(current), 0))
        if dataset is not None and self.hull_dataset_combo.findData(dataset) >= 0:
            self.hull_dataset_combo.setCurrentIndex(self.hull_dataset_combo.findData(dataset))
        self._sync_enabled()

    def _fill_condition(self, record) -> None:
        """The condition row of a conditional voxel VAE ``record``: its deciles with their property ranges
        and the project's predictors of that property; hidden for other models."""
        from crystal_studio.core.properties import unit_of

        condition = (record.normalization.get("condition", "none") if record is not None
                     and record.kind == "voxel_vae" else "none")
        self.form.setRowVisible(self.condition_row, condition != "none")
        chosen = (self.decile_combo.currentData(), self.target_combo.currentData())
        self.decile_combo.clear()
        self.target_combo.clear()
        if condition == "none":
            return
        edges = [float(e) for e in record.normalization.get("decile_edges", [])]
        unit = unit_of(condition)
        self.decile_combo.addItem(f"{condition}: any decile", None)
        bounds = [None, *edges, None]
        for k in range(len(edges) + 1):
            lo, hi = bounds[k], bounds[k + 1]
            span = (f"< {hi:.3g}" if lo is None else f"≥ {lo:.3g}" if hi is None else f"{lo:.3g} to {hi:.3g}")
            self.decile_combo.addItem(f"decile {k + 1}: {span} {unit}".rstrip(), k + 1)
        self.target_combo.addItem("no target check", None)
        for m in model_store.list_models(self.project):
            if m.kind in PREDICTOR_KINDS and condition in m.targets:
                self.target_combo.addItem(f"#{m.id} {m.name or m.kind}", m.id)
        for combo, value in zip((self.decile_combo, self.target_combo), chosen, strict=True):
            combo.setCurrentIndex(max(combo.findData(value), 0))  # the same choice after a refresh

    def set_structure(self, structure_id: int) -> None:
        """The structure selected in the Datasets panel (-1: none), the centre of 'around' sampling."""
        self.structure_id = structure_id if structure_id is not None and structure_id >= 0 else None
        text = "(select a structure in Datasets)"
        if self.project is not None and self.structure_id is not None:
            rows = self.project.page(StructureQuery(ids=[self.structure_id]), limit=1, with_properties=False)
            if rows:
                text = f"#{self.structure_id} {rows[0]['reduced_formula']}"
        self.around_label.setText(text)
        if self.structure_id is None:
            self.around_check.setChecked(False)
        self._sync_enabled()

    def _sync_enabled(self) -> None:
        if not hasattr(self, "csp_button"):
            return  # still building
        idle = not self.running and self.project is not None
        has_model = self.model_combo.currentData() is not None
        for widget in (self.model_combo, self.n_spin, self.seed_spin, self.device_combo, self.runs_combo):
            widget.setEnabled(idle)
        self.class_combo.setEnabled(idle and not self.crystal_model)
        self.around_check.setEnabled(idle and self.structure_id is not None)
        self.sigma_spin.setEnabled(idle and self.around_check.isChecked())
        self.decile_combo.setEnabled(idle)
        self.target_combo.setEnabled(idle and self.target_combo.count() > 1)
        self.within_spin.setEnabled(idle and self.target_combo.currentData() is not None)
        self.start_button.setEnabled(idle and has_model)
        self.cancel_button.setEnabled(self.running)
        self.open_button.setEnabled(idle and self.runs_combo.count() > 0)
        side_busy = self.side_job is not None and self.side_job.running
        self.hull_button.setEnabled(self.project is not None and not side_busy
                                    and self.hull_dataset_combo.count() > 0)
        crystals_shown = self.result is not None and self.result.crystals  # they have structures already
        selected = not crystals_shown and bool(self.selected_formulas())
        self.csp_button.setEnabled(self.project is not None and not self.csp.running and selected)
        self.csp.set_selection_available(selected)
        self.side_cancel.setVisible(side_busy)

    def set_device(self, device: str) -> None:
        """'auto', 'cpu' or 'cuda', for sampling and structure prediction."""
        super().set_device(device)
        self.csp.set_device(device)

    # ---------------------------------------------------------------- sampling

    def start(self) -> Job | None:
        """Sample the chosen model with the form's settings; returns the job (None if it cannot start)."""
        if self.running or self.project is None:
            return None
        model_id = self.model_combo.currentData()
        if model_id is None:
            self.status_label.setText("Train a composition or crystal VAE in the Training panel first.")
            return None
        around = self.structure_id if self.around_check.isChecked() else None
        n = self.n_spin.value()
        self.progress_bar.setRange(0, n)
        self.progress_bar.setValue(0)
        what = "crystals" if self.crystal_model else "formulas"
        self.status_label.setText(f"Sampling {n} {what} from model #{model_id}…")
        work = sampling_work(self.project, model_id, n, self.seed_spin.value(), around, self.sigma_spin.value(),
                             self.class_combo.currentData(), self.device_combo.currentText(),
                             condition_decile=self.decile_combo.currentData(),
                             target_model=self.target_combo.currentData(), within=self.within_spin.value() / 100)
        return self._launch_live(f"Sampling model #{model_id}", work, "Cancelled; nothing was stored.")

    def open_run(self, run_id: int | None) -> Job | None:
        """Show a stored sampling run (read in a job)."""
        if self.project is None or run_id is None or self.running:
            return None
        self.status_label.setText(f"Reading sampling run #{run_id}…")
        return self._launch_live(f"Opening sampling run #{run_id}", open_run_work(self.project, run_id),
                                 "Cancelled.")

    def _drain(self) -> None:
        self._relay.take()  # no live curves: progress arrives through the job's own signal

    def _tick(self) -> None:
        pass

    def _progress(self, event: ProgressEvent) -> None:
        if event.total:
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.step, event.total))
        if event.message:
            self.status_label.setText(event.message)

    def _succeeded(self, result: GenerateResult) -> None:
        self._finish_curves()
        self.progress_bar.setValue(self.progress_bar.maximum())
        self.show_result(result)
        f = result.funnel
        stages = ", ".join(f"{f.get(key, 0)} {label}" for key, label in result.funnel_labels[1:])
        self.status_label.setText(f"Done: run #{result.run_id}: of {f.get('sampled', 0)} draws {stages}"
                                  + (" — the crystals are in the Candidates panel." if result.crystals else "."))
        self.refresh()
        index = self.runs_combo.findData(result.run_id)
        if index >= 0:
            self.runs_combo.setCurrentIndex(index)
        self.sampled.emit(result.run_id)
        if result.crystals:
            self.structures_predicted.emit(result.run_id)

    def _stopped(self, text: str) -> None:
        self._finish_curves()
        self.status_label.setText(text)
        self.refresh()

    def show_result(self, result: GenerateResult) -> None:
        """Show a sampling result: funnel, table (through the filters) and plots."""
        self.result = result
        self.funnel_label.setText(funnel_html(result))
        self.samples_model.set_rows(result.rows)
        self.apply_filters()
        self.plots.set_result(result)

    # ---------------------------------------------------------------- filters

    def filter_state(self) -> dict:
        return {"required": list(self.element_filter.required), "excluded": list(self.element_filter.excluded),
                "min_elements": self.min_elements.value(), "max_elements": self.max_elements.value(),
                "valid": self.valid_check.isChecked(), "novel": self.novel_check.isChecked()}

    def apply_filters(self, *_args) -> None:
        state = self.filter_state()
        required, excluded = set(state["required"]), set(state["excluded"])
        lo, hi = state["min_elements"], state["max_elements"]

        def keep(row: SampleRow) -> bool:
            return (required <= row.elements and not (excluded & row.elements) and lo <= row.n_elements <= hi
                    and (row.valid or not state["valid"]) and (row.novel or not state["novel"]))

        self.samples_model.apply(keep)
        total = len(self.samples_model.all_rows)
        shown = len(self.samples_model.rows)
        draws = sum(r.count for r in self.samples_model.rows)
        self.count_label.setText(f"{shown} of {total} formulas ({draws} draws)" if total else "")
        self._sync_enabled()

    def shown_formulas(self) -> list[str]:
        return self.samples_model.formulas()

    def selected_formulas(self) -> list[str]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.samples_model.rows[r].formula for r in rows if r < len(self.samples_model.rows)]

    def select_formulas(self, formulas: list[str]) -> None:
        from PySide6.QtCore import QItemSelection, QItemSelectionModel

        wanted = set(formulas)
        selection = QItemSelection()
        for r, row in enumerate(self.samples_model.rows):
            if row.formula in wanted:
                selection.select(self.samples_model.index(r, 0),
                                 self.samples_model.index(r, len(SAMPLE_COLUMNS) - 1))
        self.table.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._sync_enabled()

    # ---------------------------------------------------------------- hull and structure prediction

    def _side_job(self, title: str, work, on_success) -> Job:
        self.side_job = self.jobs.start(title, work, on_success)
        self.side_job.progress.connect(self._side_progress)
        self.side_job.failed.connect(lambda message, _d: self.side_label.setText(f"{title} failed: {message}"))
        self.side_job.cancelled.connect(lambda: self.side_label.setText(f"{title}: cancelled."))
        self.side_job.done.connect(self._sync_enabled)
        self.side_label.setText(f"{title}…")
        self._sync_enabled()
        return self.side_job

    def _side_progress(self, event: ProgressEvent) -> None:
        if self.side_job is None:
            return
        where = f" ({event.step}/{event.total})" if event.total else ""
        self.side_label.setText(f"{self.side_job.title}{where}: {event.message}" if event.message else
                                f"{self.side_job.title}{where}")

    def cancel_side_job(self) -> None:
        if self.side_job is not None and self.side_job.running:
            self.side_job.cancel()
            self.side_label.setText(f"{self.side_job.title}: cancelling…")

    def compute_hull(self, dataset: str | None) -> Job | None:
        """Compute ``dataset``'s own convex hull (a job); the result is stored with the dataset."""
        if self.project is None or not dataset or (self.side_job is not None and self.side_job.running):
            return None
        return self._side_job(f"Hull of {dataset}", hull_work(self.project, dataset), self._hull_done)

    def _hull_done(self, summary) -> None:
        self.last_hull = summary
        self.side_label.setText(f"Hull of {summary.dataset}: {summary.entries} entries, {summary.stable} on the hull, "
                                f"{summary.chemical_systems} chemical systems, {summary.skipped} without a "
                                f"formation energy ({summary.seconds:.1f} s). Models trained from now on learn "
                                "its decomposition classes.")
        self.hull_computed.emit(summary.dataset)

    def show_structure_prediction(self) -> None:
        """Bring the Structure prediction tab into view with the formula field focused."""
        self.sections.setCurrentWidget(self.csp)
        self.csp.focus_formulas()

    def use_selected_formulas(self) -> list[str]:
        """Put the selected sampled formulas into the Structure prediction tab (shown); returns them."""
        formulas = self.selected_formulas()
        if formulas:
            dataset = self.result.dataset if self.result is not None else None
            source = {"sampling_run": self.result.run_id} if self.result is not None else None
            self.csp.set_formulas(formulas, source, dataset)
            self.sections.setCurrentWidget(self.csp)
        return formulas

    def predict_selected(self) -> Job | None:
        """Predict structures for the selected formulas (a job, with the Structure prediction tab's settings,
        shown); see :attr:`structures_predicted`."""
        formulas = self.selected_formulas()
        if not formulas:
            self.side_label.setText("Select formulas in the table first.")
            return None
        return self.predict_structures(formulas)

    def predict_structures(self, formulas: list[str]) -> Job | None:
        """Predict structures for ``formulas`` with the Structure prediction tab's settings (shown), the sampling
        run shown as their source; the job, or None when it cannot start."""
        if self.project is None or not formulas or self.csp.running:
            return None
        dataset = self.result.dataset if self.result is not None else None
        source = {"sampling_run": self.result.run_id} if self.result is not None else None
        self.csp.set_formulas(formulas, source, dataset)
        self.sections.setCurrentWidget(self.csp)
        job = self.csp.start()
        if job is not None:
            title = f"Predicting structures of {len(formulas)} formula{'s' if len(formulas) != 1 else ''}"
            self.side_label.setText(f"{title} (Structure prediction tab)…")
            job.failed.connect(lambda message, _d: self.side_label.setText(f"{title} failed: {message}"))
            job.cancelled.connect(lambda: self.side_label.setText(f"{title}: cancelled."))
            job.done.connect(self._sync_enabled)
        else:
            self.side_label.setText(self.csp.status_label.text())
        self._sync_enabled()
        return job

    def _csp_done(self, run_id: int) -> None:
        runs = self.csp.last_runs
        self.last_csp_result = runs.main if runs is not None and runs.main.run_id == run_id else None
        result = self.last_csp_result
        if result is None:
            self.side_label.setText(f"Structure prediction run #{run_id} is in the Candidates panel.")
        else:
            failed = result.failed
            note = "".join(f"\n{f.formula}: {f.reason}" for f in failed[:3]) + ("\n…" if len(failed) > 3 else "")
            self.side_label.setText(f"Structure prediction run #{result.run_id} finished: {result.n_candidates} "
                                    f"candidate(s), in the Candidates panel"
                                    + (f"; {len(failed)} formula(s) failed:{note}" if failed else "."))
        self._sync_enabled()
        self.structures_predicted.emit(run_id)
