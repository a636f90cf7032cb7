"""The guided tour: the panels of a design session in order (import → train → target → optimize →
inspect → relax → export), each brought to the front and ringed in orange, with a callout saying what to
do on the built-in data and Back / Next / Close buttons.

The rings let every click through, so the user can follow a step while it is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPalette, QRegion
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from crystal_studio.gui.main_window import MainWindow

FRAME_COLOUR = QColor(255, 140, 0)
FRAME_WIDTH = 4
CALLOUT_WIDTH = 360


@dataclass(frozen=True)
class TourStep:
    """One stop: the dock to raise (and central tab to show), the widgets to frame, what to do."""

    title: str
    text: str
    dock: str
    targets: Callable[[MainWindow], list[QWidget]]
    tab: str | None = None  # attribute of the window holding the central tab to show


STEPS: tuple[TourStep, ...] = (
    TourStep("Import", "The <b>Datasets</b> panel lists the crystals of the open project. The built-in project "
             "already holds <i>builtin</i>: 2,685 perovskites and binary crystals with CHGNet-computed "
             "formation energy, bulk modulus, density and more. Click a row to see the crystal in 3D. "
             "Your own files (CIF, POSCAR, XYZ, JSON, CSV, folders, zips) come in through "
             "<b>Import…</b> here or File → Import….",
             "Datasets", lambda w: [w.docks["Datasets"]]),
    TourStep("Train", "Train a property predictor: choose dataset <i>builtin</i>, tick "
             "<i>formation_energy_per_atom</i> and <i>bulk_modulus</i>, set Epochs 20 and Ensemble 1, then "
             "<b>▶ Start</b>. Loss curves grow live; parity plots of the held-out test crystals follow. "
             "The built-in project already has trained models, so you may also go straight on.",
             "Training", lambda w: [w.docks["Training"]]),
    TourStep("Target", "Say what you want. Choose the example <i>Perovskite, bulk modulus 160 ± 10 GPa "
             "(built-in dataset)</i>: a target bulk modulus, a formation energy below −0.5 eV/atom, charge "
             "neutrality and a perovskite template. Edit any value; problems are named as you type.",
             "Targets", lambda w: [w.docks["Targets"]]),
    TourStep("Optimize", "Pick method <i>smoacs</i>, tick the model <i>built-in CHGNet-label ensemble</i>, set "
             "Candidates 64 and Steps 100, then <b>▶ Start</b>. Watch the loss fall and the share of "
             "candidates meeting each criterion rise; the summary appears when the run ends.",
             "Optimization", lambda w: [w.docks["Optimization"]]),
    TourStep("Inspect", "The <b>Candidates</b> panel lists the run's crystals with pass/fail per criterion. "
             "Tick <i>Successful only</i>, sort by a column, click a row to see the crystal here in 3D "
             "(details on the right); select 2–4 rows and <b>Compare</b> them side by side.",
             "Candidates", lambda w: [w.candidates_panel.table, w.viewer], tab="viewer"),
    TourStep("Relax", "Check a prediction with physics: select a few successful candidates and press "
             "<b>Relax with CHGNet</b>. Each is relaxed (cell free) in the background and its criteria are "
             "checked again; <i>Show relaxed</i> shows the relaxed crystal.",
             "Candidates", lambda w: [w.candidates_panel.relax_button, w.candidates_panel.fmax_spin,
                                      w.candidates_panel.relax_steps_spin]),
    TourStep("Export", "Choose a format (CIF or POSCAR), tick <i>relaxed where available</i>, and "
             "<b>Export selected…</b> or <b>Export all successful…</b> into a folder, ready for DFT.",
             "Candidates", lambda w: [w.candidates_panel.format_combo, w.candidates_panel.export_relaxed_box,
                                      w.candidates_panel.export_selected_button,
                                      w.candidates_panel.export_success_button]),
)


class TourFrame(QWidget):
    """An orange ring just outside one framed widget: a masked child of the window that covers only the
    ring, never the widget (so OpenGL views inside stay visible) and lets every click through."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, FRAME_COLOUR)
        self.setPalette(palette)
        self.target = QRect()

    def frame(self, rect: QRect) -> None:
        """Ring ``rect`` (window coordinates)."""
        self.target = QRect(rect)
        outer = rect.adjusted(-FRAME_WIDTH, -FRAME_WIDTH, FRAME_WIDTH, FRAME_WIDTH)
        self.setGeometry(outer)
        ring = QRect(0, 0, outer.width(), outer.height())
        self.setMask(QRegion(ring).subtracted(QRegion(ring.adjusted(FRAME_WIDTH, FRAME_WIDTH, -FRAME_WIDTH,
                                                                    -FRAME_WIDTH))))
        self.show()
        self.raise_()


class TourCallout(QFrame):
    """The step's title, text and the Back / Next / Close buttons."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("tourCallout")
        self.setFrameShape(QFrame.Shape.Box)
        self.setStyleSheet("#tourCallout { background: #fffaf0; border: 2px solid #ff8c00; border-radius: 6px; }")
        self.setFixedWidth(CALLOUT_WIDTH)
        self.title_label = QLabel()
        self.text_label = QLabel()
        self.text_label.setWordWrap(True)
        self.text_label.setTextFormat(Qt.TextFormat.RichText)
        self.counter_label = QLabel()
        self.counter_label.setStyleSheet("color: #777")
        self.back_button = QPushButton("◀ Back")
        self.next_button = QPushButton("Next ▶")
        self.close_button = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.counter_label)
        buttons.addStretch(1)
        for button in (self.back_button, self.next_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title_label)
        layout.addWidget(self.text_label)
        layout.addLayout(buttons)


class Tour(QObject):
    """Walks ``window`` through :data:`STEPS`; :meth:`start` shows the first, :meth:`close` ends it."""

    step_shown = Signal(int)
    finished = Signal()

    def __init__(self, window: MainWindow, steps: tuple[TourStep, ...] = STEPS):
        super().__init__(window)
        self.window = window
        self.steps = steps
        self.index = -1
        self.frames: list[TourFrame] = []
        self.callout = TourCallout(window)
        self.callout.back_button.clicked.connect(self.back)
        self.callout.next_button.clicked.connect(self.next)
        self.callout.close_button.clicked.connect(self.close)
        self.callout.hide()
        window.installEventFilter(self)

    @property
    def active(self) -> bool:
        return self.callout.isVisible()

    @property
    def step(self) -> TourStep:
        return self.steps[self.index]

    def start(self) -> None:
        self.show_step(0)

    def next(self) -> None:
        if self.index + 1 < len(self.steps):
            self.show_step(self.index + 1)
        else:
            self.close()

    def back(self) -> None:
        if self.index > 0:
            self.show_step(self.index - 1)

    def close(self) -> None:
        for frame in self.frames:
            frame.hide()
        self.callout.hide()
        self.finished.emit()

    def show_step(self, index: int) -> None:
        """Bring step ``index``'s dock (and tab) to the front, frame its widgets, show the callout."""
        self.index = index
        step = self.step
        dock = self.window.docks[step.dock]
        dock.show()
        dock.raise_()
        if step.tab:
            self.window.tabs.setCurrentWidget(getattr(self.window, step.tab))
        callout = self.callout
        callout.title_label.setText(f"<b>{index + 1}. {step.title}</b>")
        callout.text_label.setText(step.text)
        callout.counter_label.setText(f"{index + 1} of {len(self.steps)}")
        callout.back_button.setEnabled(index > 0)
        callout.next_button.setText("Finish" if index == len(self.steps) - 1 else "Next ▶")
        callout.show()
        callout.raise_()
        self.place()
        QTimer.singleShot(0, self.place)  # again once the raised dock has its final geometry
        self.step_shown.emit(index)

    def targets(self) -> list[QWidget]:
        return self.step.targets(self.window)

    def target_rects(self) -> list[QRect]:
        """The current step's widgets in window coordinates (those shown)."""
        return [QRect(w.mapTo(self.window, QPoint(0, 0)), w.size()) for w in self.targets() if w.isVisible()]

    def framed_rects(self) -> list[QRect]:
        """The rectangles ringed now (window coordinates)."""
        return [frame.target for frame in self.frames if frame.isVisible()]

    def place(self) -> None:
        """Ring the current step's widgets and put the callout beside them."""
        if not self.active:
            return
        window_rect = self.window.rect()
        rects = self.target_rects()
        while len(self.frames) < len(rects):
            self.frames.append(TourFrame(self.window))
        for frame, rect in zip(self.frames, rects, strict=False):
            frame.frame(rect)
        for frame in self.frames[len(rects):]:
            frame.hide()
        self.callout.adjustSize()
        size = self.callout.size()
        bounds = rects[0] if rects else window_rect
        for rect in rects[1:]:
            bounds = bounds.united(rect)
        margin = 16
        if bounds.right() + margin + size.width() <= window_rect.right():
            x = bounds.right() + margin
        elif bounds.left() - margin - size.width() >= 0:
            x = bounds.left() - margin - size.width()
        else:
            x = bounds.center().x() - size.width() // 2
        y = bounds.top() + 40
        x = max(0, min(x, window_rect.width() - size.width()))
        y = max(0, min(y, window_rect.height() - size.height()))
        self.callout.move(x, y)
        self.callout.raise_()  # above the rings

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if watched is self.window and event.type() in (QEvent.Type.Resize, QEvent.Type.LayoutRequest):
            QTimer.singleShot(0, self.place)
        return False
