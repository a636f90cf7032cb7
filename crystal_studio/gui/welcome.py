"""The welcome page: shown on first launch and from Help → Welcome.

It offers the ways into a session (the built-in project, a recent one, a new one, importing data), the
guided tour and the user guide, and says once, plainly, which compute device the jobs will use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

if TYPE_CHECKING:
    from crystal_studio.gui.main_window import MainWindow

SHOWN_KEY = "welcome/shown"  # set once the page has been shown (first launch is over)
AT_STARTUP_KEY = "welcome/at_startup"  # the user asked to see it at every start


def device_statement(info: dict | None, choice: str) -> str:
    """One plain sentence or two about where training, optimization and relaxation run.

    ``info`` is what :func:`crystal_studio.gui.main_window.detect_devices` found (None: not yet known);
    ``choice`` is the Settings → Compute Device choice ('auto', 'cpu' or 'gpu')."""
    if info is None:
        return "Compute device: detecting what PyTorch can use…"
    threads = info.get("cpu_threads", 1)
    on_cpu = (f"training, optimization and CHGNet relaxation run on this computer's CPU ({threads} "
              f"PyTorch thread{'s' if threads != 1 else ''})")
    if info["cuda"]:
        gpu = info["gpus"][0]
        if choice == "cpu":
            return (f"Compute device: CPU, as chosen in Settings → Compute Device, although a GPU ({gpu}) is "
                    f"available: {on_cpu}, much slower than on the GPU.")
        return f"Compute device: GPU — {gpu}. Training, optimization and CHGNet relaxation run on it."
    why = ("PyTorch sees Apple's MPS, which Crystal Studio's jobs do not use" if info["mps"]
           else "no GPU was found")
    return (f"Compute device: CPU only ({why}). Everything works, but {on_cpu}, which is slower than on a GPU: "
            "the user guide's tutorial keeps models and runs small so each step takes minutes; large "
            "datasets, big ensembles and long runs are better left to a machine with a CUDA GPU.")


def show_at_startup(window: MainWindow) -> WelcomePage | None:
    """Show the welcome page on the first launch, and at every launch if the user asked for it."""
    settings = window.settings
    if settings.value(SHOWN_KEY, False, bool) and not settings.value(AT_STARTUP_KEY, False, bool):
        return None
    settings.setValue(SHOWN_KEY, True)
    return window.show_welcome()


class WelcomePage(QDialog):
    """First-run page of ``window``: open the built-in, a recent or a new project, import data, take
    the tour or read the user guide."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.main_window = window
        self.setWindowTitle("Welcome to Crystal Studio")
        self.setObjectName("welcomePage")

        title = QLabel("<h2>Welcome to Crystal Studio</h2>"
                       "<p>Design inorganic crystals from data: import crystals with their properties, train "
                       "a property predictor, state the properties you want, let an optimizer propose "
                       "crystals, inspect and relax them with CHGNet, and export CIF or POSCAR files.</p>")
        title.setWordWrap(True)
        self.builtin_button = QPushButton("Open the built-in project")
        self.builtin_button.setToolTip("2,685 perovskites and binary crystals labelled with CHGNet, with "
                                       "trained property predictors: the user guide's tutorial uses it")
        self.builtin_button.clicked.connect(self.open_builtin)
        self.new_button = QPushButton("Create a new project…")
        self.new_button.clicked.connect(self.create_new)
        self.import_button = QPushButton("Import data…")
        self.import_button.setToolTip("CIF, POSCAR, extended XYZ, pymatgen JSON or CSV files, folders and zips, "
                                      "into the open project")
        self.import_button.clicked.connect(self.import_data)
        self.tour_button = QPushButton("Take the tour")
        self.tour_button.setToolTip("A short walk through the panels in the order of a design session")
        self.tour_button.clicked.connect(self.take_tour)
        self.guide_button = QPushButton("Read the user guide")
        self.guide_button.clicked.connect(self.read_guide)

        self.recent_list = QListWidget()
        self.recent_list.setObjectName("welcomeRecent")
        self.recent_list.itemActivated.connect(self.open_recent)
        self.recent_open_button = QPushButton("Open")
        self.recent_open_button.clicked.connect(lambda: self.open_recent(self.recent_list.currentItem()))
        self.recent_list.currentItemChanged.connect(self._sync_recent)

        self.device_label = QLabel(device_statement(window.devices, window.compute_device()))
        self.device_label.setObjectName("welcomeDevice")
        self.device_label.setWordWrap(True)
        self.device_label.setStyleSheet("background:#f3f6fa; border:1px solid #c9d4e0; padding:6px")
        self.startup_box = QCheckBox("Show this page when Crystal Studio starts")
        self.startup_box.setChecked(window.settings.value(AT_STARTUP_KEY, False, bool))
        self.startup_box.toggled.connect(lambda on: window.settings.setValue(AT_STARTUP_KEY, on))
        close_button = QPushButton("Close")
        close_button.clicked.connect(self.reject)

        grid = QGridLayout()
        start = QVBoxLayout()
        start.addWidget(QLabel("<b>Start</b>"))
        for button in (self.builtin_button, self.new_button, self.import_button):
            start.addWidget(button)
        start.addSpacing(12)
        start.addWidget(QLabel("<b>Learn</b>"))
        start.addWidget(self.tour_button)
        start.addWidget(self.guide_button)
        start.addStretch(1)
        recent = QVBoxLayout()
        recent.addWidget(QLabel("<b>Recent projects</b>"))
        recent.addWidget(self.recent_list, 1)
        recent.addWidget(self.recent_open_button, 0, Qt.AlignmentFlag.AlignRight)
        grid.addLayout(start, 0, 0)
        grid.addLayout(recent, 0, 1)
        grid.setColumnStretch(1, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.startup_box)
        bottom.addStretch(1)
        bottom.addWidget(close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addLayout(grid, 1)
        layout.addWidget(self.device_label)
        layout.addLayout(bottom)
        self.resize(720, 460)

        self.fill_recent()
        window.devices_detected.connect(self._devices_detected)
        window.detect_devices()

    def fill_recent(self) -> None:
        """List the window's recent projects; those whose file is gone are shown greyed out."""
        self.recent_list.clear()
        for path in self.main_window.recent_projects():
            item = QListWidgetItem(f"{Path(path).name}  —  {Path(path).parent}")
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(path)
            if not Path(path).is_file():
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                item.setText(item.text() + "  (missing)")
            self.recent_list.addItem(item)
        if not self.main_window.recent_projects():
            placeholder = QListWidgetItem("(none yet)")
            placeholder.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent_list.addItem(placeholder)
        self._sync_recent()

    def _sync_recent(self, *_args) -> None:
        item = self.recent_list.currentItem()
        self.recent_open_button.setEnabled(item is not None and item.data(Qt.ItemDataRole.UserRole) is not None
                                           and bool(item.flags() & Qt.ItemFlag.ItemIsEnabled))

    def _devices_detected(self, info: dict) -> None:
        self.device_label.setText(device_statement(info, self.main_window.compute_device()))

    def open_builtin(self) -> None:
        self.main_window.open_project(None)
        self.accept()

    def open_recent(self, item: QListWidgetItem | None) -> None:
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if path and Path(path).is_file():
            self.main_window.open_project(Path(path))
            self.accept()

    def create_new(self) -> None:
        """Ask for a file name (File → New Project…); the page closes once one is given."""
        if self.main_window.new_project_dialog():
            self.accept()

    def import_data(self) -> None:
        """The import dialog for the open project (the page says so when none is open yet)."""
        if self.main_window.import_dialog() is not None:
            self.accept()
        else:
            self.import_button.setText("Import data… (open or create a project first)")

    def take_tour(self) -> None:
        self.accept()
        self.main_window.start_tour()

    def read_guide(self) -> None:
        self.main_window.show_user_guide()
