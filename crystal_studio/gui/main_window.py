"""The main window: menus, dock panels, the 3D viewer, and the project it shows.

Layout: the Datasets panel (tabbed with Training, Targets, Optimization, Candidates and Generate) on the left,
the 3D viewer, the compare view and the latent map as central tabs, the structure details on the right and the
property plots below. Geometry, dock layout, recent projects and compute settings persist in
:class:`QSettings`. Everything slow (opening/creating the built-in project, imports, exports, plot
data) runs as a :class:`~crystal_studio.gui.jobs.Job`.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QWidget,
)

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback
from crystal_studio.gui.candidates_panel import CandidatesPanel
from crystal_studio.gui.compare import MAX_COMPARED, CompareView
from crystal_studio.gui.datasets_panel import DatasetsPanel
from crystal_studio.gui.details import StructureDetails
from crystal_studio.gui.export_dialog import ExportDialog
from crystal_studio.gui.generate_panel import GeneratePanel
from crystal_studio.gui.import_dialog import ImportDialog
from crystal_studio.gui.jobs import JobManager, JobsStatusWidget, show_error
from crystal_studio.gui.latent_map import LatentMap
from crystal_studio.gui.optimization_panel import OptimizationPanel
from crystal_studio.gui.plots import PropertyPlots
from crystal_studio.gui.targets_panel import TargetsPanel
from crystal_studio.gui.training_panel import TrainingPanel
from crystal_studio.gui.viewer import StructureViewer
from crystal_studio.gui.xrd_view import XRDView
from crystal_studio.store.project import NewerSchemaError, Project, StructureQuery
from crystal_studio.store.session import ProjectInUseError, claim_session

MAX_RECENT = 8
PROJECT_FILTER = "Crystal Studio projects (*.sqlite);;All files (*)"
TORCH_PANELS = ("Training", "Optimization", "Generate")  # docks whose jobs train or run models


def open_project_work(path: Path | None):
    """Job function: open ``path`` (None: the built-in project, created on first use); returns its path."""

    def work(progress: ProgressCallback, _cancel: CancelToken) -> Path:
        if path is None:
            from crystal_studio.store.builtin import ensure_builtin_project

            project = ensure_builtin_project(progress)
            from crystal_studio.ml.builtin import ensure_builtin_models

            ensure_builtin_models(project)
        else:
            try:
                project = Project.open(path)
            except NewerSchemaError:
                return Path(path)  # shown read-only (_project_ready)
        project.close()  # this thread's connection; the GUI thread opens its own
        return project.path

    return work


def create_project_work(path: Path):
    """Job function: create an empty project at ``path``; returns its path."""

    def work(_progress: ProgressCallback, _cancel: CancelToken) -> Path:
        project = Project.create(path)
        project.close()
        return project.path

    return work


def detect_devices(_progress: ProgressCallback, _cancel: CancelToken) -> dict:
    """Job function: what torch sees (imported here, lazily): CUDA/MPS availability and names. It also
    imports what torch's first optimizer would (:func:`~crystal_studio.ml.runtime.import_lazy_modules`),
    so that a training started later in the window begins warm."""
    import torch

    from crystal_studio.ml.runtime import import_lazy_modules

    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "gpus": [], "mps": False,
            "cpu_threads": torch.get_num_threads()}
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    info["mps"] = bool(mps is not None and mps.is_available())
    import_lazy_modules()
    return info


class MainWindow(QMainWindow):
    """Crystal Studio's main window.

    ``project_path`` None opens the last project (or the built-in one on first launch);
    ``open_default`` False starts with no project (tests). ``settings`` defaults to the user's
    QSettings for Crystal Studio.
    """

    devices_detected = Signal(dict)  # what torch sees, once detect_devices has found out

    def __init__(self, project_path: Path | None = None, settings: QSettings | None = None,
                 open_default: bool = True):
        super().__init__()
        self.settings = settings or QSettings("CrystalStudio", "Crystal Studio")
        self.project: Project | None = None
        self._session = None  # the claimed session of the shown project (store/session.py)
        self.jobs = JobManager(self)
        self.devices: dict | None = None
        self._device_job = None
        self.last_import_dialog: ImportDialog | None = None
        self.last_export_dialog: ExportDialog | None = None
        self.tour = None  # the guided tour, once started
        self.setWindowTitle("Crystal Studio")
        self.setObjectName("mainWindow")
        self.setDockNestingEnabled(True)
        self.setAcceptDrops(True)
        self.resize(1400, 900)

        self.viewer = StructureViewer(self)
        self.compare = CompareView(self)
        self.latent_map = LatentMap(self.jobs)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.viewer, "3D Viewer")
        self.tabs.addTab(self.compare, "Compare")
        self.tabs.addTab(self.latent_map, "Latent Map")
        self.xrd_view = XRDView(self.jobs)
        self.tabs.addTab(self.xrd_view, "XRD")
        self.setCentralWidget(self.tabs)

        self.datasets_panel = DatasetsPanel()
        self.details = StructureDetails()
        self.plots = PropertyPlots()
        self.targets_panel = TargetsPanel(settings=self.settings)
        self.optimization_panel = OptimizationPanel(self.jobs)
        self.candidates_panel = CandidatesPanel(self.jobs)
        self.training_panel = TrainingPanel(self.jobs)
        self.generate_panel = GeneratePanel(self.jobs)
        panels = {"Training": self.training_panel, "Targets": self.targets_panel,
                  "Optimization": self.optimization_panel, "Candidates": self.candidates_panel,
                  "Generate": self.generate_panel}
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}  # the widget of each dock, by dock name
        self._add_dock("Datasets", self.datasets_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        for name in ("Training", "Targets", "Optimization", "Candidates", "Generate"):
            self._add_dock(name, panels[name], Qt.DockWidgetArea.LeftDockWidgetArea,
                           scrollable=name in ("Training", "Optimization", "Generate"))
            self.tabifyDockWidget(self.docks["Datasets"], self.docks[name])
        for name in TORCH_PANELS:
            self.docks[name].visibilityChanged.connect(self._torch_panel_shown)
        self._add_dock("Structure", self.details, Qt.DockWidgetArea.RightDockWidgetArea)
        self.docks["Structure"].setMinimumWidth(240)  # lattice and property rows stay readable
        self._add_dock("Plots", self.plots, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.docks["Datasets"].raise_()
        self.resizeDocks([self.docks["Datasets"], self.docks["Structure"]], [580, 310], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["Plots"]], [260], Qt.Orientation.Vertical)
        self._default_state = self.saveState()

        self.datasets_panel.current_changed.connect(self.show_structure)
        self.datasets_panel.current_changed.connect(self.generate_panel.set_structure)
        self.datasets_panel.selection_changed.connect(self.plots.highlight)
        self.datasets_panel.query_changed.connect(self.plots.set_query)
        self.datasets_panel.properties_changed.connect(self.plots.set_properties)
        self.datasets_panel.import_requested.connect(self.import_dialog)
        self.datasets_panel.export_requested.connect(self.export_dialog)
        self.datasets_panel.compare_requested.connect(self.compare_selected)
        self.datasets_panel.datasets_changed.connect(lambda name: self.datasets_changed(name or None))
        self.plots.structure_clicked.connect(self.show_structure)
        self.plots.ids_selected.connect(self.datasets_panel.set_id_filter)
        self.targets_panel.spec_changed.connect(self.optimization_panel.set_spec)
        self.targets_panel.structure_prediction_requested.connect(self.show_structure_prediction)
        self.optimization_panel.set_spec(self.targets_panel.spec)
        self.optimization_panel.set_device(self.compute_device())
        self.training_panel.set_device(self.compute_device())
        self.generate_panel.set_device(self.compute_device())
        self.generate_panel.structures_predicted.connect(self.show_predicted_structures)
        self.generate_panel.hull_computed.connect(lambda _dataset: self.datasets_changed())
        self.training_panel.models_changed.connect(self._models_changed)
        self.optimization_panel.run_finished.connect(self.show_run_candidates)
        self.optimization_panel.run_opened.connect(self.candidates_panel.set_run)
        self.optimization_panel.latent_run_started.connect(self.follow_latent_run)
        self.optimization_panel.latent_queries.connect(self.latent_map.add_queries)
        self.latent_map.structure_clicked.connect(self.show_structure)
        self.candidates_panel.show_requested.connect(self.show_candidate)
        self.candidates_panel.compare_requested.connect(self.compare_structures)
        self.candidates_panel.status_message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.candidates_panel.runs_changed.connect(lambda: (self.training_panel.refresh_runs(), self._models_changed()))

        self.jobs_status = JobsStatusWidget(self.jobs)
        self.statusBar().addPermanentWidget(self.jobs_status)
        self.project_label = QLabel("No project")
        self.statusBar().addWidget(self.project_label, 1)
        self._build_menus()
        self._restore_settings()
        self.set_project(None)

        if project_path is not None:
            self.open_project(Path(project_path))
        elif open_default:
            last = self.settings.value("project/last", "", str)
            self.open_project(Path(last) if last and Path(last).is_file() else None)

    # ---------------------------------------------------------------- construction

    def _add_dock(self, name: str, widget: QWidget, area: Qt.DockWidgetArea, scrollable: bool = False) -> None:
        """Dock ``widget`` as panel ``name``. A ``scrollable`` panel sits in a scroll area, so its form's
        height never sets the dock area's minimum (the Plots dock below stays resizable)."""
        dock = QDockWidget(name, self)
        dock.setObjectName(f"dock{name}")
        self.panels[name] = widget
        if scrollable:
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(widget)
            widget = scroll
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[name] = dock

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.new_action = self._action("&New Project…", self.new_project_dialog, QKeySequence.StandardKey.New)
        self.open_action = self._action("&Open Project…", self.open_project_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.import_action = self._action("&Import…", self.import_dialog, "Ctrl+I", "Import crystal files")
        self.export_action = self._action("&Export…", self.export_dialog, "Ctrl+E", "Export the selected structures")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        file_menu.insertAction(self.recent_menu.menuAction(), self.new_action)
        file_menu.insertAction(self.recent_menu.menuAction(), self.open_action)
        file_menu.addSeparator()
        file_menu.addAction(self.import_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        view_menu = bar.addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        self.compare_action = self._action("&Compare Selected", self.compare_selected, "Ctrl+K")
        view_menu.addAction(self.compare_action)
        view_menu.addAction(self._action("Reset &Camera", self.viewer.reset_camera, "Ctrl+0"))
        view_menu.addSeparator()
        view_menu.addAction(self._action("&Reset Layout", self.reset_layout))

        settings_menu = bar.addMenu("&Settings")
        device_menu = settings_menu.addMenu("Compute &Device")
        device_menu.aboutToShow.connect(self.detect_devices)
        self.device_group = QActionGroup(self)
        self.device_actions: dict[str, QAction] = {}
        current = self.settings.value("compute/device", "auto", str)
        for key, text in (("auto", "Automatic (GPU if available)"), ("cpu", "CPU"), ("gpu", "GPU")):
            action = QAction(text, self, checkable=True)
            action.setChecked(key == current)
            action.triggered.connect(lambda _=False, k=key: self.set_compute_device(k))
            self.device_group.addAction(action)
            device_menu.addAction(action)
            self.device_actions[key] = action
        device_menu.addSeparator()
        self.device_info_action = QAction("What torch sees: (open this menu to detect)", self)
        self.device_info_action.setEnabled(False)
        device_menu.addAction(self.device_info_action)
        settings_menu.addAction(self._action("Number of &Threads…", self.threads_dialog))

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard Shortcuts", self.show_shortcuts, QKeySequence.StandardKey.HelpContents))
        help_menu.addAction(self._action("&Welcome", self.show_welcome))
        help_menu.addAction(self._action("Take the &Tour", self.start_tour))
        help_menu.addAction(self._action("&User Guide", self.show_user_guide))
        help_menu.addSeparator()
        help_menu.addAction(self._action("&About Crystal Studio", self.show_about))

    # ---------------------------------------------------------------- settings

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        if self.project is not None:
            self.settings.setValue("project/last", str(self.project.path))
        self.settings.sync()

    def reset_layout(self) -> None:
        """Put every panel back where it starts."""
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.setVisible(True)
        self.docks["Datasets"].raise_()

    def recent_projects(self) -> list[str]:
        value = self.settings.value("project/recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember(self, path: Path) -> None:
        text = str(Path(path).resolve())
        recent = [text] + [p for p in self.recent_projects() if p != text]
        self.settings.setValue("project/recent", recent[:MAX_RECENT])
        self.settings.setValue("project/last", text)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_projects()
        for path in recent:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setEnabled(Path(path).is_file())
            action.triggered.connect(lambda _=False, p=path: self.open_project(Path(p)))
        if not recent:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", lambda: self.settings.setValue("project/recent", []))

    def compute_device(self) -> str:
        """'auto', 'cpu' or 'gpu' as chosen in Settings (for training and optimization jobs)."""
        return self.settings.value("compute/device", "auto", str)

    def compute_threads(self) -> int:
        """CPU threads for compute jobs (0: let torch decide)."""
        return int(self.settings.value("compute/threads", 0))

    def set_compute_device(self, key: str) -> None:
        self.settings.setValue("compute/device", key)
        self.device_actions[key].setChecked(True)
        self.optimization_panel.set_device(key)
        self.training_panel.set_device(key)
        self.generate_panel.set_device(key)
        self.candidates_panel.device = "cuda" if key == "gpu" else key
        self.statusBar().showMessage(f"Compute device: {self.device_actions[key].text()}", 4000)

    def threads_dialog(self) -> None:
        cores = os.cpu_count() or 1
        value, ok = QInputDialog.getInt(
            self, "Number of threads", f"CPU threads for training and optimization (0 = automatic; "
            f"this machine has {cores} logical cores):", self.compute_threads(), 0, max(1, cores), 1)
        if ok:
            self.settings.setValue("compute/threads", value)

    def detect_devices(self) -> None:
        """Ask torch (imported lazily, in a worker thread) which devices it sees; updates the menu."""
        if self.devices is not None or self._device_job is not None:
            return
        self.device_info_action.setText("What torch sees: detecting…")
        self._device_job = self.jobs.start("Detecting compute devices", detect_devices, self._devices_detected)

    def _torch_panel_shown(self, visible: bool) -> None:
        """A panel whose jobs run torch came into view: load torch now, in the background (device
        detection), while the user sets the job up with the Datasets table out of sight; the first
        training then starts warm instead of importing ~1 s of torch modules while the user browses the
        table (GUI stalls, issue 15)."""
        if visible:
            self.detect_devices()

    def _devices_detected(self, info: dict) -> None:
        self.devices = info
        if info["cuda"]:
            seen = "CUDA: " + ", ".join(info["gpus"])
        elif info["mps"]:
            seen = "Apple MPS"
        else:
            seen = "no GPU (CPU only)"
        self.device_info_action.setText(f"torch {info['torch']} sees: {seen}")
        gpu = info["cuda"] or info["mps"]
        self.device_actions["gpu"].setEnabled(gpu)
        self.device_actions["gpu"].setText("GPU" + (f" ({info['gpus'][0]})" if info["gpus"] else
                                                    " (Apple MPS)" if info["mps"] else " (none found)"))
        self.devices_detected.emit(info)

    # ---------------------------------------------------------------- project

    def open_project(self, path: Path | None) -> None:
        """Open ``path`` in the background (None: the built-in project)."""
        self.project_label.setText("Opening the built-in project…" if path is None else f"Opening {path}…")
        self.jobs.start("Opening project" if path else "Preparing the built-in project", open_project_work(path),
                        self._project_ready)

    def set_project(self, project: Project | None) -> None:
        """Show ``project`` in every panel (None: no project)."""
        if self.project is not None:
            self.datasets_panel.set_project(None)
            self.project.close()
        if self._session is not None:
            self._session.release()  # the project this window held is no longer shown here
            self._session = None
        self.project = project
        self.viewer.set_structure(None)
        self.details.clear_structure()
        self.plots.set_project(project)
        self.datasets_panel.set_project(project)
        self.optimization_panel.set_project(project)
        self.candidates_panel.set_project(project)
        self.training_panel.set_project(project)
        self.generate_panel.set_project(project)
        self.latent_map.set_project(project)
        self._models_changed()
        has = project is not None
        for action in (self.import_action, self.export_action, self.compare_action):
            action.setEnabled(has)
        self.setWindowTitle(f"Crystal Studio — {project.path.stem}" if has else "Crystal Studio")
        self.project_label.setText(str(project.path) if has else "No project — File ▸ New or Open")

    def _models_changed(self) -> None:
        """Models were trained, imported, renamed or deleted (or another project opened)."""
        if self.project is None:
            return
        from crystal_studio.store.models import list_models

        self.targets_panel.set_known_properties({t for m in list_models(self.project) for t in m.targets})
        if not self.optimization_panel.running:
            self.optimization_panel.refresh()
        if not self.generate_panel.running:
            self.generate_panel.refresh()
        self.latent_map.refresh()

    def datasets_changed(self, select: str | None = None) -> None:
        """Datasets were imported, renamed or deleted: every dataset list re-reads them, keeping the user's
        choices; the Datasets panel shows ``select`` when given."""
        if self.project is None:
            return
        self.datasets_panel.refresh_datasets(select)
        self.training_panel.refresh_datasets()
        self.optimization_panel.refresh_datasets()
        self.generate_panel.refresh_datasets()
        self.latent_map.refresh()

    def _project_ready(self, path: Path) -> None:
        """Show the opened project; read-only when another Crystal Studio has it open or a newer one made it."""
        session, read_only = None, None
        if self._session is not None and self._session.project_path == Path(path):
            session, self._session = self._session, None  # reopening the project this window holds
        else:
            try:
                session = claim_session(path)
            except ProjectInUseError as exc:
                read_only = exc.reason
        try:
            try:
                project = Project.open(path, read_only=read_only)
            except NewerSchemaError as exc:
                read_only = f"made by a newer Crystal Studio, schema {exc.version}"
                project = Project.open(path, read_only=read_only)
        except CrystalStudioError as exc:
            if session is not None:
                session.release()
            show_error(self, "Cannot open project", str(exc))
            return
        self._remember(path)
        self.set_project(project)
        self._session = session
        if read_only:
            self.setWindowTitle(f"Crystal Studio — {project.path.stem} (read-only)")
            self.statusBar().showMessage(f"Opened read-only: {read_only}; changes are refused")

    def new_project_dialog(self) -> bool:
        """Ask for a file and create the project there; False when the user cancelled."""
        path, _ = QFileDialog.getSaveFileName(self, "New project", str(Path.home() / "project.sqlite"),
                                              PROJECT_FILTER)
        if path:
            self.new_project(Path(path if path.endswith(".sqlite") else path + ".sqlite"))
        return bool(path)

    def new_project(self, path: Path) -> None:
        """Create an empty project at ``path`` and open it."""
        self.jobs.start("Creating project", create_project_work(path), self._project_ready)

    def open_project_dialog(self) -> None:
        start = str(self.project.path.parent) if self.project else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open project", start, PROJECT_FILTER)
        if path:
            self.open_project(Path(path))

    # ---------------------------------------------------------------- structures

    def show_structure(self, structure_id: int) -> None:
        """Show structure ``structure_id`` in the viewer and the detail pane (-1 clears them)."""
        if self.project is None or structure_id < 0:
            self.viewer.set_structure(None)
            self.xrd_view.set_structure(None)
            self.details.clear_structure()
            return
        try:
            rows = self.project.page(StructureQuery(ids=[structure_id]), limit=1)
            structure = self.project.structure(structure_id)
        except CrystalStudioError as exc:
            self.statusBar().showMessage(str(exc), 5000)
            return
        if not rows:
            return
        self.viewer.set_structure(structure, f"{rows[0]['reduced_formula']}_{structure_id}")
        self.details.show_structure(rows[0], structure)
        self.xrd_view.set_structure(structure, f"{rows[0]['reduced_formula']} (id {structure_id})")
        if self.tabs.currentWidget() not in (self.viewer, self.xrd_view):  # both show the selected structure
            self.tabs.setCurrentWidget(self.viewer)

    def compare_selected(self) -> None:
        """Open the compare view on the selected rows (2–4)."""
        if self.project is None:
            return
        ids = self.datasets_panel.selected_ids()
        if not 2 <= len(ids) <= MAX_COMPARED:
            self.statusBar().showMessage(f"Select 2–{MAX_COMPARED} structures to compare ({len(ids)} selected)",
                                         5000)
            return
        self.compare_ids(ids)

    def show_candidate(self, title: str, structure, row: dict) -> None:
        """Show an optimization candidate (from the Candidates panel) in the viewer and the detail pane."""
        self.viewer.set_structure(structure, title)
        self.details.show_structure(row, structure)
        if self.tabs.currentWidget() is not self.viewer:
            self.tabs.setCurrentWidget(self.viewer)

    def compare_structures(self, rows: list[dict], structures: list) -> None:
        """Compare structures that are not dataset rows (e.g. candidates) side by side."""
        self.tabs.setCurrentWidget(self.compare)
        self.compare.set_structures(rows, structures)
        QTimer.singleShot(0, self.compare.reset_cameras)

    def show_run_candidates(self, run_id: int) -> None:
        """After an optimization: its candidates in the Candidates panel (the summary stays in view)."""
        self.candidates_panel.refresh_runs()
        self.candidates_panel.set_run(run_id)
        self.statusBar().showMessage(f"Optimization run #{run_id} finished: its candidates are in the Candidates "
                                     "panel", 10000)

    def follow_latent_run(self, generator_id: int) -> None:
        """A latent-space optimization started: its queries go live onto the latent map, shown."""
        self.latent_map.follow(generator_id)
        self.tabs.setCurrentWidget(self.latent_map)

    def show_structure_prediction(self) -> None:
        """The Generate panel's Structure prediction tab in view, its formula field focused."""
        dock = self.docks["Generate"]
        dock.show()
        dock.raise_()
        self.generate_panel.show_structure_prediction()

    def show_predicted_structures(self, run_id: int) -> None:
        """After structure prediction from the Generate panel: its candidates in the Candidates panel, in view."""
        self.candidates_panel.refresh_runs()
        self.candidates_panel.set_run(run_id)
        self.docks["Candidates"].raise_()
        self.statusBar().showMessage(f"Structure prediction run #{run_id} finished: its candidates are in the "
                                     "Candidates panel", 10000)

    def compare_ids(self, ids: list[int]) -> None:
        """Compare the structures ``ids`` side by side."""
        rows = {r["id"]: r for r in self.project.page(StructureQuery(ids=ids), limit=len(ids))}
        ordered = [rows[i] for i in ids if i in rows]
        self.tabs.setCurrentWidget(self.compare)
        self.compare.set_structures(ordered, [self.project.structure(r["id"]) for r in ordered])
        QTimer.singleShot(0, self.compare.reset_cameras)  # again once the panes have their final size

    # ---------------------------------------------------------------- import / export

    def import_dialog(self, paths: list[str] | None = None) -> ImportDialog | None:
        """Open the import dialog (prefilled with ``paths``); returns it."""
        if self.project is None:
            self.statusBar().showMessage("Open or create a project first", 5000)
            return None
        dialog = ImportDialog(self.project, self.jobs, [p for p in (paths or []) if isinstance(p, str)], self)
        dialog.imported.connect(self.datasets_changed)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.last_import_dialog = dialog
        return dialog

    def export_dialog(self) -> ExportDialog | None:
        """Open the export dialog for the selected structures; returns it."""
        if self.project is None:
            return None
        ids = self.datasets_panel.selected_ids()
        if not ids:
            self.statusBar().showMessage("Select structures in the table to export", 5000)
            return None
        dialog = ExportDialog(self.project, ids, self.jobs, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.last_export_dialog = dialog
        return dialog

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            QTimer.singleShot(0, lambda: self.import_dialog(paths))

    # ---------------------------------------------------------------- help

    def show_welcome(self):
        """Open the welcome page (non-modal); returns it."""
        from crystal_studio.gui.welcome import WelcomePage

        page = WelcomePage(self)
        page.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        page.show()
        return page

    def start_tour(self):
        """Start the guided tour of the panels; returns it."""
        from crystal_studio.gui.tour import Tour

        if self.tour is None:
            self.tour = Tour(self)
        self.tour.start()
        return self.tour

    def show_user_guide(self):
        """Open the bundled user guide; returns the dialog."""
        from crystal_studio.gui.user_guide import UserGuideDialog

        dialog = UserGuideDialog(parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def show_about(self) -> None:
        from crystal_studio.gui.about import AboutDialog

        dialog = AboutDialog(self, self.jobs)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def shortcut_lines(self) -> list[tuple[str, str]]:
        """(action, key) for every menu action with a shortcut, plus the viewer's mouse controls."""
        lines = []
        for menu_action in self.menuBar().actions():
            for action in menu_action.menu().actions():
                if not action.shortcut().isEmpty():
                    text = action.text().replace("&", "")
                    lines.append((text, action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)))
        lines += [("Rotate / pan / zoom (3D)", "Left drag / Shift+left drag / wheel"),
                  ("Atom info, distance (3D)", "Click one atom, then a second"),
                  ("Sort table", "Click a column header")]
        return lines

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{a}</td><td>&nbsp;&nbsp;<b>{k}</b></td></tr>" for a, k in self.shortcut_lines())
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", f"<table>{rows}</table>",
                          QMessageBox.StandardButton.Close, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ---------------------------------------------------------------- closing

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.save_settings()
        self.jobs.cancel_all()
        self.datasets_panel.set_project(None)
        self.viewer.close_viewer()
        self.compare.close_viewers()
        if self.project is not None:
            self.project.close()
        if self._session is not None:
            self._session.release()
            self._session = None
        super().closeEvent(event)
