"""Compare view: 2–4 structures side by side with linked cameras and a property table below.

All viewers share one ``vtkCamera``; when the user rotates or zooms one, the others re-render. The
table has one column per structure; cells that differ from the first structure by more than 5 %
(or in text) are highlighted.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.properties import unit_of
from crystal_studio.gui.viewer import StructureViewer

MAX_COMPARED = 4
DIFFERENT = QColor(255, 226, 170)
RELATIVE_DIFFERENCE = 0.05


def comparison_rows(rows: list[dict], structures: list[Structure]) -> list[tuple[str, list[object]]]:
    """(label, value per structure) lines of the comparison table."""
    lines: list[tuple[str, list[object]]] = [
        ("Formula", [r.get("reduced_formula") for r in rows]),
        ("Space group", [f"{r.get('spacegroup_symbol')} ({r.get('spacegroup_number')})" for r in rows]),
        ("Sites", [len(s) for s in structures]),
        ("a (Å)", [s.lattice.a for s in structures]),
        ("b (Å)", [s.lattice.b for s in structures]),
        ("c (Å)", [s.lattice.c for s in structures]),
        ("α (°)", [s.lattice.alpha for s in structures]),
        ("β (°)", [s.lattice.beta for s in structures]),
        ("γ (°)", [s.lattice.gamma for s in structures]),
        ("Volume/atom (Å³)", [s.volume / len(s) for s in structures]),
        ("Density (g/cm³)", [s.density for s in structures]),
    ]
    names = sorted({n for r in rows for n in (r.get("properties") or {})})
    for name in names:
        unit = unit_of(name)
        lines.append((f"{name} ({unit})" if unit else name, [(r.get("properties") or {}).get(name) for r in rows]))
    return lines


def differs(reference: object, value: object) -> bool:
    """True when ``value`` differs notably from ``reference`` (5 % for numbers, any change for text)."""
    if isinstance(reference, (int, float)) and isinstance(value, (int, float)):
        scale = max(abs(reference), abs(value), 1e-9)
        return abs(value - reference) / scale > RELATIVE_DIFFERENCE
    return reference != value


class CompareView(QWidget):
    """Up to four :class:`StructureViewer` panes sharing one camera, and a comparison table."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewers: list[StructureViewer] = []
        self.titles: list[QLabel] = []
        self.rows: list[dict] = []
        self._syncing = False
        self.viewer_row = QHBoxLayout()
        self.viewer_row.setContentsMargins(0, 0, 0, 0)
        top = QWidget()
        top.setLayout(self.viewer_row)
        self.placeholder = QLabel("Select 2–4 rows in the Datasets table and press Compare.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: #777; font-size: 12pt;")
        self.viewer_row.addWidget(self.placeholder)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.table)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([600, 200])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        top.setMinimumHeight(250)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    def set_structures(self, rows: list[dict], structures: list[Structure]) -> None:
        """Compare ``structures`` (their store rows give names and properties); at most four."""
        rows, structures = rows[:MAX_COMPARED], structures[:MAX_COMPARED]
        self.rows = rows
        while len(self.viewers) < len(structures):
            self._add_viewer()
        for k, (viewer, title) in enumerate(zip(self.viewers, self.titles, strict=True)):
            shown = k < len(structures)
            viewer.setVisible(shown)
            title.setVisible(shown)
            if shown:
                name = f"{rows[k].get('reduced_formula')}  (id {rows[k].get('id')})"
                title.setText(f"<b>{name}</b>")
                viewer.set_structure(structures[k], name, reset_camera=False)
            else:
                viewer.set_structure(None)
        self.placeholder.setVisible(not structures)
        if structures:
            self.reset_cameras()
        self._fill_table(rows, structures)

    def shown_viewers(self) -> list[StructureViewer]:
        return [v for v in self.viewers if v.structure is not None]

    def reset_cameras(self) -> None:
        """Fit the largest structure and show all panes from the same direction."""
        shown = self.shown_viewers()
        if not shown:
            return
        biggest = max(shown, key=lambda v: abs(np.linalg.det(v.scene.cell)) if v.scene is not None else 0.0)
        biggest.reset_camera()
        self._render_others(biggest)

    def _add_viewer(self) -> None:
        viewer = StructureViewer(self, compact=True)
        if self.viewers:
            viewer.renderer.SetActiveCamera(self.viewers[0].renderer.GetActiveCamera())
        viewer.interactor.AddObserver("InteractionEvent", lambda *_a, v=viewer: self._render_others(v))
        viewer.interactor.AddObserver("MouseWheelForwardEvent", lambda *_a, v=viewer: self._render_others(v), -1.0)
        viewer.interactor.AddObserver("MouseWheelBackwardEvent", lambda *_a, v=viewer: self._render_others(v), -1.0)
        viewer.interaction_changed.connect(lambda moving, v=viewer: self._sync_quality(v, moving))
        column = QVBoxLayout()
        title = QLabel("")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        column.addWidget(title)
        column.addWidget(viewer, 1)
        self.viewer_row.addLayout(column, 1)
        self.viewers.append(viewer)
        self.titles.append(title)

    def _for_others(self, source: StructureViewer, action) -> None:
        """Apply ``action`` to every shown pane but ``source``, ignoring the events it echoes back."""
        if self._syncing:
            return
        self._syncing = True
        try:
            for viewer in self.shown_viewers():
                if viewer is not source:
                    action(viewer)
        finally:
            self._syncing = False

    def _render_others(self, source: StructureViewer) -> None:
        """Re-render every other pane after ``source`` moved the shared camera."""

        def rerender(viewer: StructureViewer) -> None:
            viewer.renderer.ResetCameraClippingRange()
            viewer.render()

        self._for_others(source, rerender)

    def _sync_quality(self, source: StructureViewer, moving: bool) -> None:
        """Let the other panes draw cheap frames while ``source`` is dragged, and full ones after."""
        self._for_others(source, lambda viewer: viewer.set_interactive(moving))

    def _fill_table(self, rows: list[dict], structures: list[Structure]) -> None:
        lines = comparison_rows(rows, structures) if structures else []
        self.table.clear()
        self.table.setColumnCount(len(structures))
        self.table.setRowCount(len(lines))
        self.table.setHorizontalHeaderLabels([f"{r.get('reduced_formula')} ({r.get('id')})" for r in rows])
        self.table.setVerticalHeaderLabels([label for label, _ in lines])
        for i, (_label, values) in enumerate(lines):
            for j, value in enumerate(values):
                text = "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if j > 0 and differs(values[0], value):
                    item.setBackground(DIFFERENT)
                    item.setToolTip("differs from the first structure")
                self.table.setItem(i, j, item)

    def close_viewers(self) -> None:
        """Release the OpenGL contexts of all panes."""
        for viewer in self.viewers:
            viewer.close_viewer()
