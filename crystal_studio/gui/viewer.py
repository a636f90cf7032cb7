"""3D crystal viewer: VTK inside Qt (ball-and-stick, unit cell, periodic images, picking, PNG export).

All atoms are drawn by one :class:`vtkGlyph3DMapper` (one draw call, sphere resolution lowered for
big scenes) and all bonds by a second one (two half-cylinders per bond, each in its atom's colour),
so the number of actors does not grow with the number of atoms. The geometry comes from
:func:`crystal_studio.gui.scene.build_scene`; element colours and radii from resources/elements.json.
"""

from __future__ import annotations

import numpy as np
import vtkmodules.vtkRenderingFreeType  # noqa: F401 - text rendering
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - the OpenGL backend
from pymatgen.core import Structure
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonCore import vtkPoints, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersGeneral import vtkTransformPolyDataFilter
from vtkmodules.vtkFiltersSources import vtkCylinderSource, vtkSphereSource
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkActor2D,
    vtkGlyph3DMapper,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkTextActor,
    vtkWindowToImageFilter,
)
from vtkmodules.vtkRenderingLabel import vtkLabeledDataMapper

from crystal_studio.gui.elements import style
from crystal_studio.gui.scene import CELL_EDGES, DEFAULT_BOND_TOLERANCE, Scene, build_scene, pick_atom

ATOM_SCALE = 0.4  # drawn sphere radius = ATOM_SCALE × covalent radius
BOND_RADIUS = 0.12  # Å
MAX_LABELLED_ATOMS = 400
AXIS_COLORS = {"a": (0.80, 0.15, 0.15), "b": (0.10, 0.55, 0.15), "c": (0.15, 0.30, 0.85)}


def sphere_resolution(n_atoms: int) -> int:
    """Sphere tessellation for ``n_atoms`` atoms: smooth for small cells, coarse for huge ones."""
    if n_atoms <= 500:
        return 20
    if n_atoms <= 3000:
        return 12
    return 8


def _polydata(points: np.ndarray) -> vtkPolyData:
    poly = vtkPolyData()
    vtk_points = vtkPoints()
    vtk_points.SetData(numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    poly.SetPoints(vtk_points)
    return poly


def _add_array(poly: vtkPolyData, name: str, values: np.ndarray) -> None:
    array = numpy_to_vtk(np.ascontiguousarray(values), deep=True)
    array.SetName(name)
    poly.GetPointData().AddArray(array)


class StructureViewer(QWidget):
    """A VTK view of one crystal with a toolbar (supercell, toggles, views, PNG).

    ``compact`` hides the less used controls (for the compare view). Emits :attr:`atom_picked` with a
    description of a clicked atom.
    """

    atom_picked = Signal(str)

    def __init__(self, parent: QWidget | None = None, compact: bool = False):
        super().__init__(parent)
        self.structure: Structure | None = None
        self.title = ""
        self.scene: Scene | None = None
        self.bond_tolerance = DEFAULT_BOND_TOLERANCE
        self.picked: list[int] = []
        self._press_pos: tuple[int, int] | None = None
        self._finalized = False

        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(1.0, 1.0, 1.0)
        self.renderer.SetBackground2(0.86, 0.89, 0.93)
        self.renderer.GradientBackgroundOn()
        self.render_window = self.vtk_widget.GetRenderWindow()
        self.render_window.AddRenderer(self.renderer)
        self.interactor = self.render_window.GetInteractor()
        self.interactor.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        self.interactor.AddObserver("LeftButtonPressEvent", self._on_press, 1.0)
        self.interactor.AddObserver("LeftButtonReleaseEvent", self._on_release, 1.0)
        self._build_pipeline()

        self.supercell_spins = []
        for axis in "abc":
            spin = QSpinBox()
            spin.setRange(1, 5)
            spin.setPrefix(f"{axis} ×")
            spin.setToolTip(f"Repeat the cell along {axis}")
            spin.valueChanged.connect(lambda _: self.rebuild(reset_camera=True))
            self.supercell_spins.append(spin)
        self.tolerance_spin = QDoubleSpinBox()
        self.tolerance_spin.setRange(0.0, 1.5)
        self.tolerance_spin.setSingleStep(0.05)
        self.tolerance_spin.setDecimals(2)
        self.tolerance_spin.setSuffix(" Å")
        self.tolerance_spin.setValue(DEFAULT_BOND_TOLERANCE)
        self.tolerance_spin.setToolTip("Bond when the distance ≤ sum of covalent radii + this tolerance")
        self.tolerance_spin.valueChanged.connect(self._set_tolerance)
        self.bonds_box = QCheckBox("Bonds")
        self.cell_box = QCheckBox("Cell")
        self.labels_box = QCheckBox("Labels")
        self.images_box = QCheckBox("Boundary atoms")
        self.images_box.setToolTip("Draw atoms on cell faces, edges and corners periodically")
        for box, on in ((self.bonds_box, True), (self.cell_box, True), (self.labels_box, False),
                        (self.images_box, True)):
            box.setChecked(on)
        self.bonds_box.toggled.connect(lambda _: self.rebuild())
        self.images_box.toggled.connect(lambda _: self.rebuild())
        self.cell_box.toggled.connect(self._apply_visibility)
        self.labels_box.toggled.connect(self._apply_visibility)
        buttons = []
        for text, tip, slot in (("a", "View along a", lambda: self.view_along("a")),
                                ("b", "View along b", lambda: self.view_along("b")),
                                ("c", "View along c", lambda: self.view_along("c")),
                                ("⟲", "Reset camera", self.reset_camera),
                                ("PNG…", "Save image as PNG", self.save_png_dialog)):
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            buttons.append(button)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info = QLabel("Click an atom for its coordinates; click a second one to measure a distance.")
        self.info.setWordWrap(True)
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info.setStyleSheet("color: #444;")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # a QToolBar moves what does not fit into its » overflow menu, so the view never forces the
        # window wider than the screen
        toolbar = QToolBar()
        toolbar.setIconSize(QSize(16, 16))
        hidden_when_compact = {id(w) for w in (self.tolerance_spin, self.labels_box, self.images_box,
                                               *buttons[:3], buttons[4])}
        groups = (self.supercell_spins, [self.bonds_box, self.cell_box, self.labels_box, self.images_box], buttons,
                  [QLabel(" bond tolerance "), self.tolerance_spin])
        for k, group in enumerate(groups):
            if k:
                toolbar.addSeparator()
            for widget in group:
                action = toolbar.addWidget(widget)
                if compact and (id(widget) in hidden_when_compact or k == 3):
                    action.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(toolbar)
        layout.addWidget(self.vtk_widget, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.info)
        if compact:
            self.info.hide()
        self.interactor.Initialize()

    # ---------------------------------------------------------------- pipeline

    def _build_pipeline(self) -> None:
        self.sphere = vtkSphereSource()
        self.sphere.SetRadius(1.0)
        self.atom_data = vtkPolyData()
        self.atom_mapper = vtkGlyph3DMapper()
        self.atom_mapper.SetInputData(self.atom_data)
        self.atom_mapper.SetSourceConnection(self.sphere.GetOutputPort())
        self.atom_mapper.SetScaleArray("radius")
        self.atom_mapper.SetScaleModeToScaleByMagnitude()
        self.atom_mapper.SetScalarModeToUsePointFieldData()
        self.atom_mapper.SelectColorArray("color")
        self.atom_mapper.SetColorModeToDirectScalars()
        self.atom_mapper.OrientOff()
        self.atom_actor = vtkActor()
        self.atom_actor.SetMapper(self.atom_mapper)
        prop = self.atom_actor.GetProperty()
        prop.SetAmbient(0.15)
        prop.SetDiffuse(0.85)
        prop.SetSpecular(0.35)
        prop.SetSpecularPower(40)

        cylinder = vtkCylinderSource()  # along y, centred; turned onto x in [0, 1]
        cylinder.SetRadius(1.0)
        cylinder.SetHeight(1.0)
        cylinder.SetResolution(12)
        cylinder.CappingOff()
        turn = vtkTransform()
        turn.PostMultiply()
        turn.RotateZ(-90)
        turn.Translate(0.5, 0, 0)
        self.bond_source = vtkTransformPolyDataFilter()
        self.bond_source.SetTransform(turn)
        self.bond_source.SetInputConnection(cylinder.GetOutputPort())
        self.bond_data = vtkPolyData()
        self.bond_mapper = vtkGlyph3DMapper()
        self.bond_mapper.SetInputData(self.bond_data)
        self.bond_mapper.SetSourceConnection(self.bond_source.GetOutputPort())
        self.bond_mapper.SetOrientationArray("direction")
        self.bond_mapper.SetOrientationModeToDirection()
        self.bond_mapper.SetScaleArray("scale")
        self.bond_mapper.SetScaleModeToScaleByVectorComponents()
        self.bond_mapper.SetScalarModeToUsePointFieldData()
        self.bond_mapper.SelectColorArray("color")
        self.bond_mapper.SetColorModeToDirectScalars()
        self.bond_actor = vtkActor()
        self.bond_actor.SetMapper(self.bond_mapper)
        self.bond_actor.GetProperty().SetSpecular(0.2)

        self.cell_data = vtkPolyData()
        cell_mapper = vtkPolyDataMapper()
        cell_mapper.SetInputData(self.cell_data)
        self.cell_actor = vtkActor()
        self.cell_actor.SetMapper(cell_mapper)
        self.cell_actor.GetProperty().SetColor(0.15, 0.15, 0.15)
        self.cell_actor.GetProperty().SetLineWidth(1.5)
        self.cell_actor.GetProperty().LightingOff()
        self.axis_labels = {}
        for axis, color in AXIS_COLORS.items():
            label = vtkTextActor()
            label.SetInput(axis)
            label.GetPositionCoordinate().SetCoordinateSystemToWorld()
            label.GetTextProperty().SetColor(*color)
            label.GetTextProperty().SetFontSize(22)
            label.GetTextProperty().BoldOn()
            label.GetTextProperty().SetJustificationToCentered()
            label.GetTextProperty().SetVerticalJustificationToCentered()
            self.axis_labels[axis] = label

        self.label_mapper = vtkLabeledDataMapper()
        self.label_mapper.SetInputData(self.atom_data)
        self.label_mapper.SetLabelModeToLabelFieldData()
        self.label_mapper.SetFieldDataName("symbol")
        self.label_mapper.GetLabelTextProperty().SetColor(0.05, 0.05, 0.05)
        self.label_mapper.GetLabelTextProperty().SetFontSize(13)
        self.label_mapper.GetLabelTextProperty().ShadowOff()
        self.label_actor = vtkActor2D()
        self.label_actor.SetMapper(self.label_mapper)

        self.pick_data = vtkPolyData()  # picked atoms: translucent halos, and the distance line
        pick_mapper = vtkGlyph3DMapper()
        pick_mapper.SetInputData(self.pick_data)
        pick_mapper.SetSourceConnection(self.sphere.GetOutputPort())
        pick_mapper.SetScaleArray("radius")
        pick_mapper.SetScaleModeToScaleByMagnitude()
        pick_mapper.ScalarVisibilityOff()
        self.pick_actor = vtkActor()
        self.pick_actor.SetMapper(pick_mapper)
        self.pick_actor.GetProperty().SetColor(1.0, 0.8, 0.0)
        self.pick_actor.GetProperty().SetOpacity(0.45)
        self.distance_data = vtkPolyData()
        distance_mapper = vtkPolyDataMapper()
        distance_mapper.SetInputData(self.distance_data)
        self.distance_actor = vtkActor()
        self.distance_actor.SetMapper(distance_mapper)
        self.distance_actor.GetProperty().SetColor(0.95, 0.6, 0.0)
        self.distance_actor.GetProperty().SetLineWidth(4)
        self.distance_actor.GetProperty().LightingOff()

        for actor in (self.atom_actor, self.bond_actor, self.cell_actor, self.label_actor, self.pick_actor,
                      self.distance_actor, *self.axis_labels.values()):
            actor.SetVisibility(False)
            self.renderer.AddViewProp(actor)

    # ---------------------------------------------------------------- public API

    @property
    def supercell(self) -> tuple[int, int, int]:
        return tuple(spin.value() for spin in self.supercell_spins)

    def set_supercell(self, na: int, nb: int, nc: int) -> None:
        """Repeat the cell ``na × nb × nc`` times (each 1–5) and redraw once."""
        for spin, value in zip(self.supercell_spins, (na, nb, nc), strict=True):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)
        self.rebuild(reset_camera=True)

    def set_structure(self, structure: Structure | None, title: str = "", reset_camera: bool = True) -> None:
        """Show ``structure`` (None clears the view)."""
        self.structure = structure
        self.title = title
        self.picked = []
        self.rebuild(reset_camera=reset_camera)

    def rebuild(self, reset_camera: bool = False) -> None:
        """Recompute the scene from the structure and the toolbar settings, then render."""
        if self.structure is None:
            self.scene = None
            self._apply_visibility(render=False)
            self.legend.setText("")
            self.render()
            return
        first = self.scene is None
        self.scene = build_scene(self.structure, self.supercell, boundary_images=self.images_box.isChecked(),
                                 bonds=self.bonds_box.isChecked(), bond_tolerance=self.bond_tolerance)
        self.picked = [i for i in self.picked if i < len(self.scene.positions)]
        self._update_atoms()
        self._update_bonds()
        self._update_cell()
        self._update_picks()
        self._update_legend()
        self._apply_visibility(render=False)
        if reset_camera or first:
            self.reset_camera(render=False)
        self.render()

    def _set_tolerance(self, value: float) -> None:
        self.bond_tolerance = value
        self.rebuild()

    def atom_count(self) -> int:
        """Number of drawn atoms (glyph points), periodic images included."""
        return self.atom_data.GetNumberOfPoints()

    def bond_count(self) -> int:
        """Number of drawn bonds (each is two half-cylinder glyphs)."""
        return self.bond_data.GetNumberOfPoints() // 2

    def render(self) -> None:
        if not self._finalized:
            self.render_window.Render()

    def reset_camera(self, render: bool = True) -> None:
        """Fit the whole scene, looking slightly off the c axis."""
        if self.scene is not None:
            cell = self.scene.cell
            center = self.scene.center
            view = -(0.35 * cell[0] + 1.0 * cell[1] + 0.45 * cell[2])
            view = view / np.linalg.norm(view)
            up = cell[2] / np.linalg.norm(cell[2])
            camera = self.renderer.GetActiveCamera()
            camera.SetViewAngle(25)
            camera.SetFocalPoint(*center)
            camera.SetPosition(*(center - 10 * np.linalg.norm(cell.sum(axis=0)) * view))
            camera.SetViewUp(*up)
            camera.OrthogonalizeViewUp()
        self._fit()
        if render:
            self.render()

    def view_along(self, axis: str) -> None:
        """Look down the ``axis`` ('a', 'b' or 'c') lattice vector."""
        if self.scene is None:
            return
        index = "abc".index(axis)
        direction = self.scene.lattice[index] / np.linalg.norm(self.scene.lattice[index])
        up_vector = self.scene.lattice[1 if index == 2 else 2]
        center = self.scene.center
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(*center)
        camera.SetPosition(*(center + 50.0 * direction))
        camera.SetViewUp(*(up_vector / np.linalg.norm(up_vector)))
        camera.OrthogonalizeViewUp()
        self._fit()
        self.render()

    def _fit(self) -> None:
        """Zoom so the scene fills the view in both directions (also in narrow panes)."""
        self.renderer.ResetCamera()
        if self.atom_count() and min(self.render_window.GetSize()) > 1:
            self.renderer.ResetCameraScreenSpace(0.9)
        self.renderer.ResetCameraClippingRange()

    def image(self, scale: int = 1) -> np.ndarray:
        """The rendered view as an (H, W, 3) uint8 array, ``scale`` times the window size."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        grab = vtkWindowToImageFilter()
        grab.SetInput(self.render_window)
        grab.SetScale(scale)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        data = grab.GetOutput()
        w, h, _ = data.GetDimensions()
        pixels = vtk_to_numpy(data.GetPointData().GetScalars()).reshape(h, w, -1)
        return pixels[::-1, :, :3].copy()

    def save_png(self, path: str, scale: int = 1) -> None:
        """Write the view to ``path`` at ``scale`` × the window resolution."""
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.render_window)
        grab.SetScale(scale)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        writer = vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputConnection(grab.GetOutputPort())
        writer.Write()
        self.render()

    def save_png_dialog(self) -> None:
        """Ask for a resolution and a file name, then save the view."""
        size = self.render_window.GetSize()
        choices = [f"{k}× ({size[0] * k} × {size[1] * k})" for k in (1, 2, 3, 4)]
        choice, ok = QInputDialog.getItem(self, "Save image", "Resolution:", choices, 1, False)
        if not ok:
            return
        stem = (self.title or "structure").replace(" ", "_")
        path, _ = QFileDialog.getSaveFileName(self, "Save image", f"{stem}.png", "PNG images (*.png)")
        if path:
            self.save_png(path if path.lower().endswith(".png") else path + ".png", choices.index(choice) + 1)

    def close_viewer(self) -> None:
        """Release the OpenGL context (call before the widget is destroyed)."""
        if not self._finalized:
            self._finalized = True
            self.vtk_widget.setUpdatesEnabled(False)  # a paint after Finalize would recreate the GL window
            self.vtk_widget.hide()
            self.vtk_widget.Finalize()

    # ---------------------------------------------------------------- scene → VTK

    def _update_atoms(self) -> None:
        scene = self.scene
        styles = [style(s) for s in scene.symbols]
        poly = _polydata(scene.positions)
        _add_array(poly, "radius", np.array([ATOM_SCALE * s.covalent_radius for s in styles]))
        _add_array(poly, "color", np.array([s.rgb255 for s in styles], dtype=np.uint8).reshape(-1, 3))
        symbols = vtkStringArray()
        symbols.SetName("symbol")
        for s in scene.symbols:
            symbols.InsertNextValue(s)
        poly.GetPointData().AddArray(symbols)
        self.atom_data.ShallowCopy(poly)
        resolution = sphere_resolution(len(scene.positions))
        self.sphere.SetThetaResolution(resolution)
        self.sphere.SetPhiResolution(resolution)

    def _update_bonds(self) -> None:
        scene = self.scene
        if not len(scene.bonds):
            self.bond_data.ShallowCopy(_polydata(np.zeros((0, 3))))
            return
        i, j = scene.bonds[:, 0], scene.bonds[:, 1]
        starts = np.vstack([scene.positions[i], scene.positions[j]])
        ends = np.vstack([scene.positions[j], scene.positions[i]])
        vectors = (ends - starts) / 2.0
        lengths = np.linalg.norm(vectors, axis=1)
        colors = np.array([style(scene.symbols[k]).rgb255 for k in np.concatenate([i, j])], dtype=np.uint8)
        poly = _polydata(starts)
        _add_array(poly, "direction", vectors)
        _add_array(poly, "scale", np.column_stack([lengths, np.full_like(lengths, BOND_RADIUS),
                                                   np.full_like(lengths, BOND_RADIUS)]))
        _add_array(poly, "color", colors.reshape(-1, 3))
        self.bond_data.ShallowCopy(poly)

    def _update_cell(self) -> None:
        corners = self.scene.cell_corners()
        poly = _polydata(corners)
        lines = vtkCellArray()
        for a, b in CELL_EDGES:
            lines.InsertNextCell(2)
            lines.InsertCellPoint(a)
            lines.InsertCellPoint(b)
        poly.SetLines(lines)
        self.cell_data.ShallowCopy(poly)
        for axis, vector in zip("abc", self.scene.cell, strict=True):
            self.axis_labels[axis].GetPositionCoordinate().SetValue(*(vector * 1.12 - 0.06 * self.scene.center))

    def _update_picks(self) -> None:
        points = self.scene.positions[self.picked] if self.picked else np.zeros((0, 3))
        halos = _polydata(points)
        _add_array(halos, "radius", np.array([1.3 * ATOM_SCALE * style(self.scene.symbols[k]).covalent_radius
                                              for k in self.picked], dtype=float))
        self.pick_data.ShallowCopy(halos)
        line = _polydata(points)
        if len(points) == 2:
            cells = vtkCellArray()
            cells.InsertNextCell(2)
            cells.InsertCellPoint(0)
            cells.InsertCellPoint(1)
            line.SetLines(cells)
        self.distance_data.ShallowCopy(line)

    def _update_legend(self) -> None:
        seen = []
        for s in self.scene.symbols:
            if s not in seen:
                seen.append(s)
        seen.sort(key=lambda s: style(s).Z)
        items = "&nbsp;&nbsp;".join(f"<span style='color:{style(s).color};font-size:15pt'>●</span> {s}" for s in seen)
        counts = f"{len(self.scene.positions)} atoms drawn, {len(self.scene.bonds)} bonds"
        self.legend.setText(f"{items}&nbsp;&nbsp;&nbsp;<span style='color:#777'>{counts}</span>")

    def _apply_visibility(self, *_args, render: bool = True) -> None:
        has = self.scene is not None
        self.atom_actor.SetVisibility(has)
        self.bond_actor.SetVisibility(has and self.bonds_box.isChecked() and self.bond_count() > 0)
        self.cell_actor.SetVisibility(has and self.cell_box.isChecked())
        for label in self.axis_labels.values():
            label.SetVisibility(has and self.cell_box.isChecked())
        self.label_actor.SetVisibility(has and self.labels_box.isChecked() and self.atom_count() <= MAX_LABELLED_ATOMS)
        self.pick_actor.SetVisibility(has and bool(self.picked))
        self.distance_actor.SetVisibility(has and len(self.picked) == 2)
        if render:
            self.render()

    # ---------------------------------------------------------------- picking

    def _on_press(self, interactor, _event) -> None:
        self._press_pos = interactor.GetEventPosition()

    def _on_release(self, interactor, _event) -> None:
        pos = interactor.GetEventPosition()
        if self._press_pos is None or abs(pos[0] - self._press_pos[0]) + abs(pos[1] - self._press_pos[1]) > 3:
            return
        self.pick_at(*pos)

    def pick_at(self, x: int, y: int) -> int | None:
        """Pick the atom at display position (x, y) (VTK pixels, origin bottom-left); returns its index."""
        if self.scene is None:
            return None
        ends = []
        for z in (0.0, 1.0):
            self.renderer.SetDisplayPoint(x, y, z)
            self.renderer.DisplayToWorld()
            world = self.renderer.GetWorldPoint()
            ends.append(np.array(world[:3]) / world[3])
        radii = np.array([ATOM_SCALE * style(s).covalent_radius for s in self.scene.symbols])
        index = pick_atom(self.scene.positions, radii, ends[0], ends[1] - ends[0])
        self.select_atom(index)
        return index

    def select_atom(self, index: int | None) -> None:
        """Mark atom ``index`` (None clears); two marked atoms show their distance."""
        if index is None:
            self.picked = []
        else:
            self.picked = (self.picked + [index])[-2:]
        self.info.setText(self.describe_picks())
        self.atom_picked.emit(self.info.text())
        self._update_picks()
        self._apply_visibility()

    def describe_picks(self) -> str:
        """Text about the picked atoms: element, index, coordinates, and their distance."""
        if self.scene is None or not self.picked:
            return "Click an atom for its coordinates; click a second one to measure a distance."
        lines = []
        for k in self.picked:
            f = self.scene.frac[k]
            c = self.scene.positions[k]
            lines.append(f"{self.scene.symbols[k]} (site {self.scene.site_index[k]}): "
                         f"frac ({f[0]:.4f}, {f[1]:.4f}, {f[2]:.4f}), cart ({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}) Å")
        if len(self.picked) == 2:
            d = np.linalg.norm(self.scene.positions[self.picked[0]] - self.scene.positions[self.picked[1]])
            lines.append(f"distance {d:.4f} Å")
        return "\n".join(lines)
