"""3D crystal viewer: VTK inside Qt (ball-and-stick, unit cell, periodic images, picking, PNG export).

Drawing is built for Mesa software OpenGL (llvmpipe), where every triangle and every shaded pixel
costs CPU time:

- Atoms are sphere *impostors* (:class:`vtkOpenGLSphereMapper`): one point per atom, expanded on the
  GPU side to a screen-aligned quad whose fragment shader ray-casts an exact sphere and writes its
  true depth. One draw call for all atoms, no tessellation, per-pixel round at any zoom.
- Bonds are cylinder impostors (:class:`vtkOpenGLStickMapper`, two half-sticks per bond, each in its
  atom's colour) for still frames. While the camera is being dragged (level of detail), scenes with
  more than :data:`LOD_BOND_LIMIT` bonds draw them as 1-pixel lines instead, and FXAA anti-aliasing
  is switched off; the full-quality frame is drawn :data:`STILL_DELAY_MS` after the mouse stops.
- The window uses no multisampling (4x MSAA cost ~50 ms a frame on llvmpipe at 800x600); still
  frames are smoothed with FXAA instead.

Picking does not read back the frame buffer: :func:`~crystal_studio.gui.scene.pick_atom` intersects the
mouse ray with the atom spheres in numpy, so it works the same for impostors. The geometry comes from
:func:`crystal_studio.gui.scene.build_scene`; element colours and radii from resources/elements.json.
"""

from __future__ import annotations

import weakref

import numpy as np
import vtkmodules.vtkRenderingFreeType  # noqa: F401 - text rendering
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - the OpenGL backend
from pymatgen.core import Structure
from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QImage
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMenu,
    QSizePolicy,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonCore import vtkPoints, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkRenderingAnnotation import vtkAxesActor
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
from vtkmodules.vtkRenderingOpenGL2 import vtkOpenGLSphereMapper, vtkOpenGLStickMapper

from crystal_studio.core import structures as cs
from crystal_studio.gui.elements import COLOR_SCHEMES, color_scheme, set_color_scheme, style
from crystal_studio.gui.scene import (
    CELL_EDGES,
    DEFAULT_BOND_TOLERANCE,
    MAX_PICKS,
    Scene,
    build_scene,
    coordination_polyhedra,
    lattice_plane,
    measure,
    pick_atom,
)

ATOM_SCALE = 0.4  # drawn sphere radius = ATOM_SCALE × covalent radius
BOND_RADIUS = 0.12  # Å
MAX_LABELLED_ATOMS = 400
DRAW_STYLES = ("ball-and-stick", "space-filling", "wireframe")
WIREFRAME_ATOM_RADIUS = 0.15  # Å: the small spheres that keep atoms clickable in wireframe
LOD_BOND_LIMIT = 500  # above this many bonds, camera drags draw bonds as lines (cylinders when still)
STILL_DELAY_MS = 150  # the full-quality frame follows the last interaction after this pause
AXIS_COLORS = {"a": (0.80, 0.15, 0.15), "b": (0.10, 0.55, 0.15), "c": (0.15, 0.30, 0.85)}


def _cells(n: int, size: int) -> vtkCellArray:
    """``n`` consecutive cells of ``size`` points each (vertices for 1, line segments for 2)."""
    cells = vtkCellArray()
    offsets = numpy_to_vtk(np.arange(0, n * size + 1, size, dtype=np.int64), deep=True)
    connectivity = numpy_to_vtk(np.arange(n * size, dtype=np.int64), deep=True)
    cells.SetData(offsets, connectivity)
    return cells


def _polydata(points: np.ndarray, verts: bool = False) -> vtkPolyData:
    """Points as float32 (what the impostor mappers read), optionally one vertex cell per point."""
    points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    poly = vtkPolyData()
    vtk_points = vtkPoints()
    vtk_points.SetData(numpy_to_vtk(points, deep=True))
    poly.SetPoints(vtk_points)
    if verts:
        poly.SetVerts(_cells(len(points), 1))
    return poly


def _add_array(poly: vtkPolyData, name: str, values: np.ndarray) -> None:
    array = numpy_to_vtk(np.ascontiguousarray(values), deep=True)
    array.SetName(name)
    poly.GetPointData().AddArray(array)



def _line_actor(data: vtkPolyData, color: tuple[float, float, float], width: float) -> vtkActor:
    """An unlit actor drawing the lines of ``data`` in ``color``, ``width`` pixels wide."""
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(data)
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*color)
    actor.GetProperty().SetLineWidth(width)
    actor.GetProperty().LightingOff()
    return actor

PICK_HINT = ("Click an atom for its coordinates; click more (up to four) to measure the distance, angle and "
             "dihedral; click empty space to clear.")


class StructureViewer(QWidget):
    """A VTK view of one crystal with a toolbar (supercell, toggles, views, PNG).

    ``compact`` hides the less used controls (for the compare view). Emits :attr:`atom_picked` with a
    description of a clicked atom and :attr:`interaction_changed` when it switches between
    level-of-detail frames (camera moving) and full-quality frames (camera at rest).
    """

    open_viewers: weakref.WeakSet[StructureViewer] = weakref.WeakSet()  # redrawn when the colour scheme changes
    atom_picked = Signal(str)
    interaction_changed = Signal(bool)  # True when camera-drag (level-of-detail) frames begin, False at rest

    def __init__(self, parent: QWidget | None = None, compact: bool = False):
        super().__init__(parent)
        self.structure: Structure | None = None
        self.shown_structure: Structure | None = None  # the structure in the chosen cell setting
        self.title = ""
        self.scene: Scene | None = None
        self.polyhedra: list[tuple[int, np.ndarray, np.ndarray]] = []  # (centre, vertices, triangles) drawn
        self.lattice_planes: list[tuple[int, int, int]] = []  # Miller indices of the planes drawn
        self.bond_tolerance = DEFAULT_BOND_TOLERANCE
        self.picked: list[int] = []
        self._press_pos: tuple[float, float] | None = None  # widget position of a left press (Qt pixels)
        self._finalized = False
        StructureViewer.open_viewers.add(self)

        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(1.0, 1.0, 1.0)
        self.renderer.SetBackground2(0.86, 0.89, 0.93)
        self.renderer.GradientBackgroundOn()
        self.renderer.UseFXAAOn()
        self.render_window = self.vtk_widget.GetRenderWindow()
        self.render_window.SetMultiSamples(0)  # MSAA is very slow in software GL; FXAA smooths still frames
        self.render_window.AddRenderer(self.renderer)
        self.interactor = self.render_window.GetInteractor()
        style = vtkInteractorStyleTrackballCamera()
        self.interactor.SetInteractorStyle(style)
        # clicks are read from Qt's mouse events: the trackball style grabs VTK's event focus on a press,
        # so a VTK release observer never hears the release
        self.vtk_widget.installEventFilter(self)
        # level of detail: cheap frames while the camera moves, the full-quality frame once it stops
        self.interactive = False
        self._still_timer = QTimer(self)
        self._still_timer.setSingleShot(True)
        self._still_timer.setInterval(STILL_DELAY_MS)
        self._still_timer.timeout.connect(lambda: self.set_interactive(False))
        style.AddObserver("StartInteractionEvent", self._on_start_interaction)
        style.AddObserver("EndInteractionEvent", self._on_end_interaction)
        self._build_pipeline()

        self.supercell_spins = []
        for axis in "abc":
            spin = QSpinBox()
            spin.setRange(1, 5)
            spin.setPrefix(f"{axis} ×")
            spin.setToolTip(f"Repeat the cell along {axis}")
            spin.valueChanged.connect(lambda _: self.rebuild(reset_camera=True))
            self.supercell_spins.append(spin)
        self.cell_setting_combo = QComboBox()
        for text, setting in (("As stored", "stored"), ("Primitive", "primitive"),
                              ("Conventional", "conventional")):
            self.cell_setting_combo.addItem(text, setting)
        self.cell_setting_combo.setToolTip("Draw the stored cell, or the standard primitive or conventional cell of "
                                           "its space group (found with the symmetry tolerance beside it)")
        self.cell_setting_combo.currentIndexChanged.connect(lambda _: self._cell_setting_changed())
        self.symprec_spin = QDoubleSpinBox()
        self.symprec_spin.setRange(0.001, 1.0)
        self.symprec_spin.setDecimals(3)
        self.symprec_spin.setSingleStep(0.01)
        self.symprec_spin.setValue(cs.SYMPREC)
        self.symprec_spin.setPrefix("symprec ")
        self.symprec_spin.setSuffix(" Å")
        self.symprec_spin.setToolTip("Symmetry tolerance for the primitive and conventional cells (spglib's symprec)")
        self.symprec_spin.setEnabled(False)
        self.symprec_spin.valueChanged.connect(lambda _: self.rebuild(reset_camera=True))
        self.tolerance_spin = QDoubleSpinBox()
        self.tolerance_spin.setRange(0.0, 1.5)
        self.tolerance_spin.setSingleStep(0.05)
        self.tolerance_spin.setDecimals(2)
        self.tolerance_spin.setPrefix("bond tol. +")
        self.tolerance_spin.setSuffix(" Å")
        self.tolerance_spin.setValue(DEFAULT_BOND_TOLERANCE)
        self.tolerance_spin.setToolTip("Bond when the distance ≤ sum of covalent radii + this tolerance")
        self.tolerance_spin.valueChanged.connect(self._set_tolerance)
        # toggles and buttons are actions, so the toolbar's » overflow menu can list them when the view is narrow
        self.bonds_box = self._toggle("Bonds", "Draw bonds (sum of covalent radii + tolerance)", True)
        self.cell_box = self._toggle("Cell", "Draw the unit cell and its axes", True)
        self.labels_box = self._toggle("Labels", "Label atoms with their element", False)
        self.images_box = self._toggle("Boundary atoms", "Draw atoms on cell faces, edges and corners periodically",
                                       True)
        self.stubs_box = self._toggle("Half bonds", "Draw half bonds to bonded atoms beyond the cell (as VESTA does)",
                                      True)
        self.bonds_box.toggled.connect(lambda _: self.rebuild())
        self.stubs_box.toggled.connect(lambda _: self.rebuild())
        self.images_box.toggled.connect(lambda _: self.rebuild())
        self.polyhedra_box = self._toggle("Polyhedra", "Coordination polyhedra of metal atoms bonded to 4–8 anions",
                                          False)
        self.polyhedra_box.toggled.connect(lambda _: self.rebuild())
        self.ortho_box = self._toggle("Ortho", "Orthographic projection (parallel lines stay parallel, as in VESTA)",
                                      False)
        self.ortho_box.toggled.connect(self.set_orthographic)
        self.cell_box.toggled.connect(self._apply_visibility)
        self.labels_box.toggled.connect(self._apply_visibility)
        buttons = []
        for text, tip, slot in (("a", "View along a", lambda: self.view_along("a")),
                                ("b", "View along b", lambda: self.view_along("b")),
                                ("c", "View along c", lambda: self.view_along("c")),
                                ("[uvw]…", "View along a lattice direction [u v w]", self.view_along_dialog),
                                ("(hkl)…", "Show lattice planes (h k l)", self.lattice_planes_dialog),
                                ("⟲", "Reset camera", self.reset_camera),
                                ("PNG…", "Save image as PNG", self.save_png_dialog),
                                ("Copy", "Copy the image to the clipboard", self.copy_image)):
            action = QAction(text, self)
            action.setToolTip(tip)
            action.triggered.connect(slot)
            buttons.append(action)
        self.view_actions = buttons
        self.colors_action = self._color_scheme_action()
        self.elements_action = QAction("Elements…", self)
        self.elements_action.setToolTip("Colour and radius of each element of this structure")
        self.elements_action.triggered.connect(self.element_styles_dialog)
        self.bond_lengths: dict[tuple[str, str], float] = {}  # the user's longest bond per element pair, Å
        self.bond_lengths_action = QAction("Bond lengths…", self)
        self.bond_lengths_action.setToolTip("Longest bond drawn per element pair (as VESTA's bond table)")
        self.bond_lengths_action.triggered.connect(self.bond_lengths_dialog)
        self.boundary = (0.0, 1.0)  # drawn range along each axis, in fractions of the drawn box
        self.boundary_action = QAction("Range…", self)
        self.boundary_action.setToolTip("Draw the atoms within a wider range than the cell, e.g. -0.1 to 1.1")
        self.boundary_action.triggered.connect(self.boundary_dialog)
        self.draw_style = DRAW_STYLES[0]
        self.style_action = self._draw_style_action()
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info = QLabel(PICK_HINT)
        self.info.setWordWrap(True)
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info.setStyleSheet("color: #444;")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # a QToolBar moves what does not fit into its » overflow menu, so the view never forces the
        # window wider than the screen
        toolbar = QToolBar()
        toolbar.setIconSize(QSize(16, 16))
        self.toolbar = toolbar
        hidden_when_compact = {id(w) for w in (self.tolerance_spin, self.labels_box, self.images_box, self.stubs_box,
                                               self.ortho_box, *buttons[:5], *buttons[6:])}
        # widgets first: what does not fit goes into the » menu from the right, and a menu can list actions only
        groups = (self.supercell_spins, [self.cell_setting_combo, self.symprec_spin], [self.tolerance_spin],
                  [self.bonds_box, self.cell_box, self.labels_box, self.images_box, self.stubs_box, self.polyhedra_box,
                   self.ortho_box, self.style_action, self.colors_action, self.elements_action,
                   self.bond_lengths_action, self.boundary_action], buttons)
        for k, group in enumerate(groups):
            if k:
                toolbar.addSeparator()
            for item in group:
                action = item if isinstance(item, QAction) else toolbar.addWidget(item)
                if action is item:
                    toolbar.addAction(action)
                if compact and (id(item) in hidden_when_compact or k in (1, 2)):
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
        # a Cartesian x, y, z triad in the lower left corner turns with the camera (pymatgen puts a along x)
        self.triad = vtkOrientationMarkerWidget()
        axes = vtkAxesActor()
        for caption in (axes.GetXAxisCaptionActor2D(), axes.GetYAxisCaptionActor2D(), axes.GetZAxisCaptionActor2D()):
            caption.GetCaptionTextProperty().SetColor(0.1, 0.1, 0.1)
            caption.GetCaptionTextProperty().ShadowOff()
        self.triad.SetOrientationMarker(axes)
        self.triad.SetInteractor(self.interactor)
        self.triad.SetViewport(0.0, 0.0, 0.16, 0.16)
        self.triad.SetEnabled(1)
        self.triad.InteractiveOff()

    # ---------------------------------------------------------------- pipeline

    def _build_pipeline(self) -> None:
        self.atom_data = vtkPolyData()
        self.atom_mapper = vtkOpenGLSphereMapper()  # sphere impostors, one point per atom
        self.atom_mapper.SetInputData(self.atom_data)
        self.atom_mapper.SetScaleArray("radius")
        self.atom_mapper.SetScalarModeToUsePointFieldData()
        self.atom_mapper.SelectColorArray("color")
        self.atom_mapper.SetColorModeToDirectScalars()
        self.atom_actor = vtkActor()
        self.atom_actor.SetMapper(self.atom_mapper)
        prop = self.atom_actor.GetProperty()
        prop.SetAmbient(0.15)
        prop.SetDiffuse(0.85)
        prop.SetSpecular(0.35)
        prop.SetSpecularPower(40)

        self.bond_data = vtkPolyData()  # one point per half bond (its centre): cylinder impostors
        self.bond_mapper = vtkOpenGLStickMapper()
        self.bond_mapper.SetInputData(self.bond_data)
        self.bond_mapper.SetOrientationArray("direction")
        self.bond_mapper.SetScaleArray("scale")  # (length, radius, radius)
        self.bond_mapper.SetScalarModeToUsePointFieldData()
        self.bond_mapper.SelectColorArray("color")
        self.bond_mapper.SetColorModeToDirectScalars()
        self.bond_actor = vtkActor()
        self.bond_actor.SetMapper(self.bond_mapper)
        self.bond_actor.GetProperty().SetSpecular(0.2)
        self.bond_line_data = vtkPolyData()  # the same half bonds as line segments (level of detail)
        bond_line_mapper = vtkPolyDataMapper()
        bond_line_mapper.SetInputData(self.bond_line_data)
        bond_line_mapper.SetScalarModeToUsePointData()
        bond_line_mapper.SetColorModeToDirectScalars()
        self.bond_line_actor = vtkActor()
        self.bond_line_actor.SetMapper(bond_line_mapper)
        self.bond_line_actor.GetProperty().LightingOff()

        self.sphere = vtkSphereSource()  # tessellated, for the two pick halos only
        self.sphere.SetRadius(1.0)
        self.sphere.SetThetaResolution(20)
        self.sphere.SetPhiResolution(20)

        self.cell_data = vtkPolyData()
        self.cell_actor = _line_actor(self.cell_data, (0.15, 0.15, 0.15), 1.5)
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
        self.polyhedra_data = vtkPolyData()  # translucent coordination polyhedra, coloured as their centres
        polyhedra_mapper = vtkPolyDataMapper()
        polyhedra_mapper.SetInputData(self.polyhedra_data)
        polyhedra_mapper.SetScalarModeToUsePointData()
        polyhedra_mapper.SetColorModeToDirectScalars()
        self.polyhedra_actor = vtkActor()
        self.polyhedra_actor.SetMapper(polyhedra_mapper)
        self.polyhedra_actor.GetProperty().SetOpacity(0.55)
        self.polyhedra_actor.GetProperty().EdgeVisibilityOn()
        self.polyhedra_actor.GetProperty().SetEdgeColor(0.25, 0.25, 0.25)
        self.planes_data = vtkPolyData()  # lattice planes (hkl): translucent polygons across the box
        planes_mapper = vtkPolyDataMapper()
        planes_mapper.SetInputData(self.planes_data)
        self.planes_actor = vtkActor()
        self.planes_actor.SetMapper(planes_mapper)
        self.planes_actor.GetProperty().SetColor(0.95, 0.75, 0.1)
        self.planes_actor.GetProperty().SetOpacity(0.45)
        self.planes_actor.GetProperty().LightingOff()
        self.distance_data = vtkPolyData()
        self.distance_actor = _line_actor(self.distance_data, (0.95, 0.6, 0.0), 4)

        for actor in (self.atom_actor, self.bond_actor, self.bond_line_actor, self.polyhedra_actor, self.planes_actor,
                      self.cell_actor,
                      self.label_actor,
                      self.pick_actor, self.distance_actor, *self.axis_labels.values()):
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
        self.shown_structure = self._structure_in_setting()
        self.scene = build_scene(self.shown_structure, self.supercell, boundary_images=self.images_box.isChecked(),
                                 bonds=self.bonds_box.isChecked(), bond_tolerance=self.bond_tolerance,
                                 boundary_bonds=self.stubs_box.isChecked(), bond_lengths=self.bond_lengths,
                                 boundary=self.boundary)
        self.picked = [i for i in self.picked if i < len(self.scene.positions)]
        self._update_atoms()
        self._update_bonds()
        self._update_polyhedra()
        self._update_planes()
        self._update_cell()
        self._update_picks()
        self._update_legend()
        self._apply_visibility(render=False)
        if reset_camera or first:
            self.reset_camera(render=False)
        self.render()

    def cell_setting(self) -> str:
        """"stored", "primitive" or "conventional": the cell drawn."""
        return self.cell_setting_combo.currentData()

    def set_cell_setting(self, setting: str, symprec: float | None = None) -> None:
        """Draw the cell ``setting`` (see :data:`~crystal_studio.core.structures.CELL_SETTINGS`), found
        with tolerance ``symprec`` Å when given."""
        for widget in (self.cell_setting_combo, self.symprec_spin):
            widget.blockSignals(True)
        self.cell_setting_combo.setCurrentIndex(self.cell_setting_combo.findData(setting))
        if symprec is not None:
            self.symprec_spin.setValue(symprec)
        for widget in (self.cell_setting_combo, self.symprec_spin):
            widget.blockSignals(False)
        self._cell_setting_changed()

    def _cell_setting_changed(self) -> None:
        self.symprec_spin.setEnabled(self.cell_setting() != "stored")
        self.picked = []  # atom indices of another cell
        self.rebuild(reset_camera=True)

    def _structure_in_setting(self) -> Structure:
        """The structure in the chosen cell setting; the stored cell, with the reason in the info line,
        when no symmetry is found at the tolerance."""
        try:
            shown = cs.standard_cell(self.structure, self.cell_setting(), self.symprec_spin.value())
        except ValueError as exc:
            self.info.setText(f"Drawing the stored cell: {exc}.")
            return self.structure
        if shown is self.structure:
            self.info.setText(PICK_HINT if not self.picked else self.info.text())
        else:
            self.info.setText(f"{self.cell_setting_combo.currentText()} cell: {len(shown)} sites "
                              f"(stored cell {len(self.structure)}), symprec {self.symprec_spin.value():g} Å.")
        return shown

    def _set_tolerance(self, value: float) -> None:
        self.bond_tolerance = value
        self.rebuild()

    def atom_count(self) -> int:
        """Number of drawn atoms (glyph points), periodic images included."""
        return self.atom_data.GetNumberOfPoints()

    def bond_count(self) -> int:
        """Number of drawn bonds between drawn atoms (each is two half-cylinder impostors)."""
        return (self.bond_data.GetNumberOfPoints() - self.half_bond_count()) // 2

    def half_bond_count(self) -> int:
        """Number of drawn half bonds to atoms beyond the cell."""
        return len(self.scene.stub_atoms) if self.scene is not None and self.bond_data.GetNumberOfPoints() else 0

    def set_interactive(self, interactive: bool, render: bool = True) -> None:
        """Switch between interactive frames (while the camera moves) and full-quality still frames.

        Interactive frames skip FXAA and, above :data:`LOD_BOND_LIMIT` bonds, draw bonds as lines.
        The mouse drives this through the interactor style; scripts and benchmarks may call it.
        """
        self._still_timer.stop()
        if interactive == self.interactive:
            return
        self.interactive = interactive
        self._apply_visibility(render=render and not interactive)
        self.interaction_changed.emit(interactive)

    def drawn_as(self) -> str:
        """How atoms and bonds are drawn in the current quality mode (for benchmarks and tooltips)."""
        bonds = "no bonds"
        if self.bond_actor.GetVisibility():
            bonds = "cylinder-impostor bonds"
        elif self.bond_line_actor.GetVisibility():
            bonds = "line bonds"
        return f"sphere impostors, {bonds}, {'no AA' if self.interactive else 'FXAA'}"

    def _on_start_interaction(self, *_args) -> None:
        self.set_interactive(True)

    def _on_end_interaction(self, *_args) -> None:
        self._still_timer.start()

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
        self.view_along_direction(tuple(float(axis == name) for name in "abc"))

    def view_along_direction(self, uvw: tuple[float, float, float]) -> None:
        """Look down the lattice direction [u v w] = u a + v b + w c (at least one index non-zero)."""
        if self.scene is None:
            return
        direction = np.asarray(uvw, dtype=float) @ self.scene.lattice
        norm = np.linalg.norm(direction)
        if not np.isfinite(norm) or norm == 0:
            raise ValueError(f"[{' '.join(f'{x:g}' for x in uvw)}] is not a direction")
        direction /= norm
        up = self.scene.lattice[2] if abs(np.dot(direction, self.scene.lattice[2])) < 0.99 * np.linalg.norm(
            self.scene.lattice[2]) else self.scene.lattice[1]
        center = self.scene.center
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(*center)
        camera.SetPosition(*(center + 50.0 * direction))
        camera.SetViewUp(*(up / np.linalg.norm(up)))
        camera.OrthogonalizeViewUp()
        self._fit()
        self.render()

    def view_along_dialog(self) -> None:
        """Ask for three indices u v w and look down [u v w]."""
        text, ok = QInputDialog.getText(self, "View along [uvw]", "Lattice direction u v w (e.g. 1 1 0):")
        if not ok:
            return
        try:
            uvw = tuple(float(x) for x in text.replace(",", " ").split())
            if len(uvw) != 3:
                raise ValueError(f"'{text}': give three numbers u v w")
            self.view_along_direction(uvw)
        except ValueError as exc:
            self.info.setText(f"Cannot view along that direction: {exc}.")

    def set_orthographic(self, on: bool) -> None:
        """Parallel (orthographic) projection when ``on``, else perspective."""
        if self.ortho_box.isChecked() != on:
            self.ortho_box.setChecked(on)  # emits toggled, which calls back here
            return
        self.renderer.GetActiveCamera().SetParallelProjection(bool(on))
        self._fit()
        self.render()

    def copy_image(self, scale: int = 1) -> QImage:
        """Put the rendered view (``scale`` × the window size) on the clipboard; returns the image."""
        pixels = np.ascontiguousarray(self.image(scale))
        h, w, _ = pixels.shape
        image = QImage(pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        QGuiApplication.clipboard().setImage(image)
        self.info.setText(f"Image copied to the clipboard ({w} × {h} px).")
        return image

    def _fit(self) -> None:
        """Zoom so the scene fills the view in both directions (also in narrow panes)."""
        self.renderer.ResetCamera()
        if self.atom_count() and min(self.render_window.GetSize()) > 1:
            self.renderer.ResetCameraScreenSpace(0.9)
        self.renderer.ResetCameraClippingRange()

    def _grab(self, scale: int) -> vtkWindowToImageFilter:
        """The back buffer (RGB), rendered at ``scale`` × the window size."""
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.render_window)
        grab.SetScale(scale)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        return grab

    def image(self, scale: int = 1) -> np.ndarray:
        """The rendered view as an (H, W, 3) uint8 array, ``scale`` times the window size."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        data = self._grab(scale).GetOutput()
        w, h, _ = data.GetDimensions()
        pixels = vtk_to_numpy(data.GetPointData().GetScalars()).reshape(h, w, -1)
        return pixels[::-1, :, :3].copy()

    def save_png(self, path: str, scale: int = 1) -> None:
        """Write the view to ``path`` at ``scale`` × the window resolution."""
        grab = self._grab(scale)
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
        StructureViewer.open_viewers.discard(self)
        if not self._finalized:
            self._finalized = True
            self._still_timer.stop()
            self.vtk_widget.setUpdatesEnabled(False)  # a paint after Finalize would recreate the GL window
            self.vtk_widget.hide()
            self.vtk_widget.Finalize()

    # ---------------------------------------------------------------- scene → VTK

    def _update_atoms(self) -> None:
        scene = self.scene
        styles = [style(s) for s in scene.symbols]
        poly = _polydata(scene.positions, verts=True)
        _add_array(poly, "radius", self.atom_radii().astype(np.float32))
        _add_array(poly, "color", np.array([s.rgb255 for s in styles], dtype=np.uint8).reshape(-1, 3))
        symbols = vtkStringArray()
        symbols.SetName("symbol")
        symbols.SetNumberOfValues(len(scene.symbols))
        for k, s in enumerate(scene.symbols):
            symbols.SetValue(k, s)
        poly.GetPointData().AddArray(symbols)
        self.atom_data.ShallowCopy(poly)

    def _update_bonds(self) -> None:
        """Two half sticks per bond (each in its atom's colour) and one per half bond to an atom beyond
        the box; the same segments as coloured lines for camera-drag frames."""
        scene = self.scene
        i, j = scene.bonds[:, 0], scene.bonds[:, 1]
        owners = np.concatenate([i, j, scene.stub_atoms]).astype(int)  # the atom each half stick starts at
        starts = scene.positions[owners]
        ends = np.vstack([scene.positions[j], scene.positions[i]])
        halves = np.vstack([(ends - starts[:len(ends)]) / 2.0, scene.stub_ends - scene.positions[scene.stub_atoms]])
        if not len(owners):
            self.bond_data.ShallowCopy(_polydata(np.zeros((0, 3)), verts=True))
            self.bond_line_data.ShallowCopy(_polydata(np.zeros((0, 3))))
            return
        lengths = np.linalg.norm(halves, axis=1)
        colors = np.array([style(scene.symbols[k]).rgb255 for k in owners], dtype=np.uint8).reshape(-1, 3)
        sticks = _polydata(starts + halves / 2.0, verts=True)
        _add_array(sticks, "direction", (halves / lengths[:, None]).astype(np.float32))
        _add_array(sticks, "scale", np.column_stack([lengths, np.full_like(lengths, BOND_RADIUS),
                                                     np.full_like(lengths, BOND_RADIUS)]).astype(np.float32))
        _add_array(sticks, "color", colors)
        self.bond_data.ShallowCopy(sticks)
        # the fast version: one segment per bond between the atom points, its colour blending from one
        # atom's colour to the other's (20 % cheaper than two flat-coloured half segments), and one
        # flat segment per half bond to its midpoint (points appended after the atoms)
        n_atoms, n_stubs = len(scene.positions), len(scene.stub_atoms)
        points = np.vstack([scene.positions, scene.stub_ends])
        segments = np.vstack([scene.bonds, np.column_stack([scene.stub_atoms, n_atoms + np.arange(n_stubs)])])
        atom_colors = np.array([style(symbol).rgb255 for symbol in scene.symbols], dtype=np.uint8).reshape(-1, 3)
        point_colors = np.vstack([atom_colors, atom_colors[scene.stub_atoms]])
        lines = _polydata(points)
        cells = vtkCellArray()
        cells.SetData(numpy_to_vtk(np.arange(0, 2 * len(segments) + 1, 2, dtype=np.int64), deep=True),
                      numpy_to_vtk(np.ascontiguousarray(segments, dtype=np.int64).reshape(-1), deep=True))
        lines.SetLines(cells)
        _add_array(lines, "color", point_colors)
        lines.GetPointData().SetActiveScalars("color")
        self.bond_line_data.ShallowCopy(lines)

    def polyhedron_count(self) -> int:
        """Number of coordination polyhedra drawn."""
        return len(self.polyhedra) if self.polyhedra_box.isChecked() else 0

    def _update_polyhedra(self) -> None:
        self.polyhedra = coordination_polyhedra(self.scene) if self.polyhedra_box.isChecked() else []
        points, triangles, colors = [], [], []
        offset = 0
        for centre, vertices, simplices in self.polyhedra:
            points.append(vertices)
            triangles.append(simplices + offset)
            colors.append(np.tile(style(self.scene.symbols[centre]).rgb255, (len(vertices), 1)))
            offset += len(vertices)
        poly = _polydata(np.vstack(points) if points else np.zeros((0, 3)))
        if triangles:
            faces = np.vstack(triangles)
            cells = vtkCellArray()
            cells.SetData(numpy_to_vtk(np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64), deep=True),
                          numpy_to_vtk(np.ascontiguousarray(faces, dtype=np.int64).reshape(-1), deep=True))
            poly.SetPolys(cells)
            _add_array(poly, "color", np.vstack(colors).astype(np.uint8))
            poly.GetPointData().SetActiveScalars("color")
        self.polyhedra_data.ShallowCopy(poly)

    def set_lattice_planes(self, planes: list[tuple[int, int, int]]) -> None:
        """Draw the lattice planes ``planes`` (Miller indices; empty list: none) across the drawn box."""
        for hkl in planes:
            if len(hkl) != 3 or not any(hkl):
                raise ValueError(f"({' '.join(map(str, hkl))}) is not a lattice plane")
        self.lattice_planes = [tuple(int(i) for i in hkl) for hkl in planes]
        self.rebuild()

    def lattice_planes_dialog(self) -> None:
        """Ask for Miller indices, e.g. '1 1 0; 1 1 1' (empty: remove the planes)."""
        current = "; ".join(" ".join(map(str, hkl)) for hkl in self.lattice_planes)
        text, ok = QInputDialog.getText(self, "Lattice planes", "Planes h k l, separated by ';' (empty: none):",
                                        text=current)
        if not ok:
            return
        try:
            planes = [tuple(int(x) for x in part.replace(",", " ").split()) for part in text.split(";") if part.strip()]
            self.set_lattice_planes(planes)
        except ValueError as exc:
            self.info.setText(f"Cannot draw those planes: {exc} (give three whole numbers per plane).")

    def _update_planes(self) -> None:
        polygons = [lattice_plane(self.scene.lattice, hkl, self.scene.supercell) for hkl in self.lattice_planes]
        polygons = [p for p in polygons if len(p) >= 3]
        poly = _polydata(np.vstack(polygons) if polygons else np.zeros((0, 3)))
        cells = vtkCellArray()
        start = 0
        for polygon in polygons:
            cells.InsertNextCell(len(polygon))
            for k in range(len(polygon)):
                cells.InsertCellPoint(start + k)
            start += len(polygon)
        poly.SetPolys(cells)
        self.planes_data.ShallowCopy(poly)

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
        _add_array(halos, "radius", 1.3 * self.atom_radii()[self.picked] if self.picked else np.zeros(0))
        self.pick_data.ShallowCopy(halos)
        line = _polydata(points)
        if len(points) >= 2:  # the measured path through the picked atoms, in click order
            cells = vtkCellArray()
            cells.InsertNextCell(len(points))
            for k in range(len(points)):
                cells.InsertCellPoint(k)
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
        if len(self.scene.stub_atoms):
            counts += f" + {len(self.scene.stub_atoms)} half bonds beyond the cell"
        self.legend.setText(f"{items}&nbsp;&nbsp;&nbsp;<span style='color:#777'>{counts}</span>")

    def _apply_visibility(self, *_args, render: bool = True) -> None:
        has = self.scene is not None
        self.atom_actor.SetVisibility(has)
        bonds = (has and self.bonds_box.isChecked() and self.draw_style != "space-filling"
                 and self.bond_data.GetNumberOfPoints() > 0)
        as_lines = self.draw_style == "wireframe" or (self.interactive and self.bond_count() > LOD_BOND_LIMIT)
        self.bond_actor.SetVisibility(bonds and not as_lines)
        self.bond_line_actor.SetVisibility(bonds and as_lines)
        self.renderer.SetUseFXAA(not self.interactive)
        self.cell_actor.SetVisibility(has and self.cell_box.isChecked())
        self.polyhedra_actor.SetVisibility(has and self.polyhedron_count() > 0)
        self.planes_actor.SetVisibility(has and self.planes_data.GetNumberOfPolys() > 0)
        for label in self.axis_labels.values():
            label.SetVisibility(has and self.cell_box.isChecked())
        self.label_actor.SetVisibility(has and self.labels_box.isChecked() and self.atom_count() <= MAX_LABELLED_ATOMS)
        self.pick_actor.SetVisibility(has and bool(self.picked))
        self.distance_actor.SetVisibility(has and len(self.picked) >= 2)
        if render:
            self.render()

    # ---------------------------------------------------------------- picking

    def _color_scheme_action(self) -> QAction:
        """'Colours' with a menu of the atom colour schemes; a choice redraws every open viewer."""
        menu = QMenu(self)
        group = QActionGroup(menu)
        for name in COLOR_SCHEMES:
            choice = menu.addAction(f"{name} colours")
            choice.setCheckable(True)
            choice.setChecked(name == color_scheme())
            choice.setData(name)
            group.addAction(choice)
        group.triggered.connect(lambda choice: self.set_color_scheme(choice.data()))
        self.color_scheme_menu = menu
        action = QAction("Colours", self)
        action.setToolTip("Atom colours: VESTA (default) or Jmol")
        action.setMenu(menu)
        return action

    def _draw_style_action(self) -> QAction:
        """'Style' with a menu: ball-and-stick, space-filling (atomic radii, no bonds) or wireframe."""
        menu = QMenu(self)
        group = QActionGroup(menu)
        for name in DRAW_STYLES:
            choice = menu.addAction(name.capitalize())
            choice.setCheckable(True)
            choice.setChecked(name == self.draw_style)
            choice.setData(name)
            group.addAction(choice)
        group.triggered.connect(lambda choice: self.set_draw_style(choice.data()))
        self.draw_style_menu = menu
        action = QAction("Style", self)
        action.setToolTip("Ball-and-stick, space-filling or wireframe")
        action.setMenu(menu)
        return action

    def set_draw_style(self, name: str) -> None:
        """Draw atoms and bonds in style ``name`` (one of :data:`DRAW_STYLES`)."""
        if name not in DRAW_STYLES:
            raise ValueError(f"draw style must be one of {', '.join(DRAW_STYLES)}, not '{name}'")
        self.draw_style = name
        for choice in self.draw_style_menu.actions():
            choice.setChecked(choice.data() == name)
        self.rebuild(reset_camera=True)  # space-filling spheres need a wider view

    def atom_radii(self) -> np.ndarray:
        """Drawn sphere radius (Å) of every atom of the scene in the current style."""
        if self.scene is None:
            return np.zeros(0)
        styles = [style(symbol) for symbol in self.scene.symbols]
        if self.draw_style == "space-filling":
            return np.array([s.atomic_radius for s in styles])
        if self.draw_style == "wireframe":
            return np.full(len(styles), WIREFRAME_ATOM_RADIUS)
        return np.array([ATOM_SCALE * s.covalent_radius for s in styles])

    def element_styles_dialog(self):
        """Open the per-element colour and radius dialog for the shown elements (returned for tests)."""
        from crystal_studio.gui.element_styles import ElementStylesDialog

        if self.scene is None:
            return None
        dialog = ElementStylesDialog(self.scene.symbols, StructureViewer.redraw_all, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def bond_lengths_dialog(self):
        """Open the per-pair bond length dialog for the shown elements (returned for tests)."""
        from crystal_studio.gui.element_styles import BondLengthsDialog

        if self.scene is None:
            return None
        dialog = BondLengthsDialog(self.scene.symbols, self.bond_lengths, self.set_bond_lengths, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def set_bond_lengths(self, lengths: dict[tuple[str, str], float]) -> None:
        """Draw bonds of the element pairs in ``lengths`` up to their length (Å); other pairs by radii."""
        self.bond_lengths = {tuple(sorted(pair)): float(length) for pair, length in lengths.items()}
        self.rebuild()

    def set_boundary(self, lo: float, hi: float) -> None:
        """Draw every atom within [lo, hi] of the drawn box along each axis (lo ≤ 0, hi ≥ 1; with
        boundary atoms on)."""
        if not (np.isfinite(lo) and np.isfinite(hi) and -1.0 <= lo <= 0.0 and 1.0 <= hi <= 2.0):
            raise ValueError(f"range [{lo:g}, {hi:g}] must run from -1–0 to 1–2")
        self.boundary = (float(lo), float(hi))
        self.images_box.setChecked(True)  # the range is drawn with the boundary atoms
        self.rebuild(reset_camera=True)

    def boundary_dialog(self) -> None:
        """Ask for the drawn range, e.g. '-0.1 1.1'."""
        text, ok = QInputDialog.getText(self, "Boundary range", "Draw atoms from … to … (fractions of the box):",
                                        text=f"{self.boundary[0]:g} {self.boundary[1]:g}")
        if not ok:
            return
        try:
            values = [float(x) for x in text.replace(",", " ").split()]
            if len(values) != 2:
                raise ValueError(f"'{text}': give two numbers")
            self.set_boundary(*values)
        except ValueError as exc:
            self.info.setText(f"Cannot draw that range: {exc}.")

    @staticmethod
    def redraw_all() -> None:
        """Rebuild every open viewer (after a change of element colours or radii)."""
        for viewer in list(StructureViewer.open_viewers):
            viewer.rebuild()

    def set_color_scheme(self, name: str) -> None:
        """Colour atoms by scheme ``name`` (see :data:`COLOR_SCHEMES`) in every open viewer."""
        set_color_scheme(name)
        for viewer in list(StructureViewer.open_viewers):
            for choice in viewer.color_scheme_menu.actions():
                choice.setChecked(choice.data() == name)
            viewer.rebuild()

    def _toggle(self, text: str, tip: str, on: bool) -> QAction:
        action = QAction(text, self)
        action.setCheckable(True)
        action.setChecked(on)
        action.setToolTip(tip)
        return action

    def eventFilter(self, watched, event) -> bool:
        """A left click (press and release within 3 px) on the 3D view picks the atom under the cursor;
        drags stay the camera's. Never consumes the event."""
        if watched is self.vtk_widget and event.type() in (QEvent.Type.MouseButtonPress,
                                                            QEvent.Type.MouseButtonRelease):
            if event.button() == Qt.MouseButton.LeftButton:
                pos = event.position()
                if event.type() == QEvent.Type.MouseButtonPress:
                    self._press_pos = (pos.x(), pos.y())
                elif self._press_pos is not None:
                    moved = abs(pos.x() - self._press_pos[0]) + abs(pos.y() - self._press_pos[1])
                    self._press_pos = None
                    if moved <= 3:
                        self.pick_at(*self._display_point(pos.x(), pos.y()))
        return super().eventFilter(watched, event)

    def _display_point(self, x: float, y: float) -> tuple[int, int]:
        """VTK display pixels (origin bottom-left, device pixels) of widget position (x, y) (Qt, top-left)."""
        ratio = self.vtk_widget.devicePixelRatioF()
        height = self.render_window.GetSize()[1]
        return int(round(x * ratio)), int(round(height - y * ratio - 1))

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
        index = pick_atom(self.scene.positions, self.atom_radii(), ends[0], ends[1] - ends[0])
        self.select_atom(index)
        return index

    def select_atom(self, index: int | None) -> None:
        """Mark atom ``index`` (None clears): two marked atoms show their distance, three the angle at
        the middle one, four the dihedral angle; a fifth starts a new measurement."""
        if index is None:
            self.picked = []
        else:
            self.picked = (self.picked if len(self.picked) < MAX_PICKS else []) + [index]
        self.info.setText(self.describe_picks())
        self.atom_picked.emit(self.info.text())
        self._update_picks()
        self._apply_visibility()

    def describe_picks(self) -> str:
        """Text about the picked atoms: element, index, coordinates, and their distance."""
        if self.scene is None or not self.picked:
            return PICK_HINT
        lines = []
        for k in self.picked:
            f = self.scene.frac[k]
            c = self.scene.positions[k]
            lines.append(f"{self.scene.symbols[k]} (site {self.scene.site_index[k]}): "
                         f"frac ({f[0]:.4f}, {f[1]:.4f}, {f[2]:.4f}), cart ({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}) Å")
        geometry = measure(self.scene.positions[self.picked])
        names = [f"{self.scene.symbols[k]}{n + 1}" for n, k in enumerate(self.picked)]
        parts = [f"distance {a}–{b} {d:.4f} Å" for a, b, d in zip(names, names[1:], geometry["distances"],
                                                                  strict=False)]
        if geometry["angle"] is not None:
            parts.append(f"angle {'–'.join(names)} {geometry['angle']:.2f}°")
        if geometry["dihedral"] is not None:
            parts.append(f"dihedral {'–'.join(names)} {geometry['dihedral']:.2f}°")
        if parts:
            lines.append("; ".join(parts))
        return "\n".join(lines)
