"""3D viewer: scene geometry (no display needed), glyph counts, colours in a screenshot, PNG export,
compare view with linked cameras."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crystal_studio.core.io import read_structure
from crystal_studio.gui.elements import element_table, style
from crystal_studio.gui.scene import build_scene, pick_atom

GOOD = Path(__file__).resolve().parents[1] / "data" / "good"
needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="VTK needs an X display: run under xvfb-run")


@pytest.fixture(scope="module")
def srtio3():
    return read_structure(GOOD / "SrTiO3.cif")


def test_element_table_has_scheme_colours_and_radii():
    table = element_table()
    assert len(table) == 118
    assert table["O"].color == "#fe0300" and table["O"].covalent_radius == pytest.approx(0.66)  # VESTA
    assert element_table("Jmol")["O"].color == "#ff0d0d"
    assert (table["Fe"].row, table["Fe"].column) == (4, 8)
    assert (table["Ce"].row, table["Ce"].column) == (9, 4)


def test_scene_includes_periodic_images(srtio3):
    scene = build_scene(srtio3)
    assert Counter(scene.symbols) == {"Sr": 8, "Ti": 1, "O": 6}  # corners ×8, body centre, faces ×2
    assert scene.is_image.sum() == 10
    assert len(scene.bonds) == 30  # 6 Ti–O + 24 Sr–O; no metal–metal sticks in an oxide
    big = build_scene(srtio3, (2, 2, 2))
    assert Counter(big.symbols) == {"Sr": 27, "Ti": 8, "O": 36}
    assert len(np.unique(np.round(big.positions, 6), axis=0)) == 71
    bare = build_scene(srtio3, (3, 1, 1), boundary_images=False, bonds=False)
    assert len(bare.positions) == 15 and len(bare.bonds) == 0


def test_bonds_reach_across_the_cell_boundary(srtio3):
    scene = build_scene(srtio3)
    # beyond the box: each corner Sr has 9 of its 12 O neighbours outside, each face O one Ti
    assert Counter(scene.symbols[k] for k in scene.stub_atoms) == {"Sr": 8 * 9, "O": 6}
    lengths = 2 * np.linalg.norm(scene.stub_ends - scene.positions[scene.stub_atoms], axis=1)
    a = srtio3.lattice.a
    assert sorted(set(np.round(lengths / a, 4))) == [0.5, round(2**-0.5, 4)]  # Ti–O a/2, Sr–O a/√2
    # without face images every atom still has all its bonds, whole or half
    bare = build_scene(srtio3, boundary_images=False)
    per_atom = Counter(np.concatenate([bare.bonds.ravel(), bare.stub_atoms]))
    assert [per_atom[k] for k in range(5)] == [12, 6, 6, 6, 6]  # Sr 12 O, Ti 6 O, each O 2 Ti + 4 Sr
    # an atom just inside a corner is bonded across the three faces it nearly touches, never floating
    shifted = srtio3.copy()
    shifted.translate_sites(list(range(len(shifted))), [-0.02, -0.02, -0.02])
    near = build_scene(shifted, boundary_images=False)
    assert Counter(np.concatenate([near.bonds.ravel(), near.stub_atoms]))[0] == 12
    assert len(build_scene(srtio3, boundary_bonds=False).stub_atoms) == 0


def test_pick_atom_finds_nearest_sphere_on_ray():
    positions = np.array([[0.0, 0, 0], [0, 0, 5.0]])
    radii = np.array([1.0, 1.0])
    assert pick_atom(positions, radii, np.array([0.2, 0, 10.0]), np.array([0, 0, -1.0])) == 1
    assert pick_atom(positions, radii, np.array([3.0, 0, 10.0]), np.array([0, 0, -1.0])) is None


@pytest.fixture
def viewer(qtbot):
    from crystal_studio.gui.viewer import StructureViewer

    view = StructureViewer()
    qtbot.addWidget(view)
    view.resize(640, 520)
    view.show()
    qtbot.waitExposed(view)
    yield view
    view.close_viewer()


@needs_display
def test_viewer_draws_glyphs_supercell_and_picks(viewer, srtio3):
    viewer.set_structure(srtio3, "SrTiO3")
    assert viewer.atom_count() == 15 and viewer.bond_count() == 30
    viewer.set_supercell(2, 2, 2)
    assert viewer.atom_count() == 71
    viewer.bonds_box.setChecked(False)
    assert not viewer.bond_actor.GetVisibility()
    viewer.images_box.setChecked(False)
    assert viewer.atom_count() == 40
    # click the projected centre of atom 0, then atom 1: info shows both and their distance
    for k in (1, 0):
        renderer = viewer.renderer
        renderer.SetWorldPoint(*viewer.scene.positions[k], 1.0)
        renderer.WorldToDisplay()
        x, y, _ = renderer.GetDisplayPoint()
        viewer.pick_at(int(round(x)), int(round(y)))
    assert len(viewer.picked) == 2
    assert "distance" in viewer.info.text() and "frac" in viewer.info.text()


@needs_display
def test_screenshot_is_not_blank_and_shows_element_colours(viewer, srtio3, tmp_path):
    viewer.set_structure(srtio3, "SrTiO3")
    viewer.view_along("a")
    pixels = viewer.image().reshape(-1, 3).astype(int)
    background = np.array([255, 255, 255])
    assert (np.abs(pixels - background).sum(axis=1) > 60).mean() > 0.05
    for symbol in ("Sr", "O"):
        target = np.array(style(symbol).rgb255)
        # a lit sphere shows its element colour (scaled by shading) somewhere near its centre
        close = np.abs(pixels - target).max(axis=1) < 40
        assert close.any(), symbol
    out = tmp_path / "view.png"
    viewer.save_png(str(out), scale=2)
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert image.width() == 2 * viewer.render_window.GetSize()[0]


@needs_display
def test_level_of_detail_while_the_camera_moves(viewer, srtio3, qtbot, monkeypatch):
    import crystal_studio.gui.viewer as viewer_module

    monkeypatch.setattr(viewer_module, "LOD_BOND_LIMIT", 10)
    viewer.set_structure(srtio3, "SrTiO3")
    assert viewer.bond_actor.GetVisibility() and not viewer.bond_line_actor.GetVisibility()
    assert viewer.renderer.GetUseFXAA() and viewer.render_window.GetMultiSamples() == 0
    changes = []
    viewer.interaction_changed.connect(changes.append)
    camera_style = viewer.interactor.GetInteractorStyle()
    camera_style.InvokeEvent("StartInteractionEvent")  # what a mouse drag starts with
    assert viewer.interactive and changes == [True]
    assert viewer.bond_line_actor.GetVisibility() and not viewer.bond_actor.GetVisibility()
    assert not viewer.renderer.GetUseFXAA()
    assert viewer.bond_line_data.GetNumberOfLines() == viewer.bond_count() + viewer.half_bond_count() == 30 + 78
    viewer.view_along("a")
    pixels = viewer.image().reshape(-1, 3).astype(int)  # the cheap frame still shows the atoms
    assert (np.abs(pixels - np.array(style("O").rgb255)).max(axis=1) < 40).any()
    camera_style.InvokeEvent("EndInteractionEvent")
    qtbot.waitUntil(lambda: not viewer.interactive, timeout=2000)
    assert changes == [True, False]
    assert viewer.bond_actor.GetVisibility() and not viewer.bond_line_actor.GetVisibility()
    assert viewer.renderer.GetUseFXAA()
    viewer.bonds_box.setChecked(False)
    viewer.set_interactive(True)
    assert not viewer.bond_actor.GetVisibility() and not viewer.bond_line_actor.GetVisibility()


@needs_display
def test_compare_view_links_cameras(qtbot, project):
    from PySide6.QtCore import Qt

    from crystal_studio.gui.compare import CompareView
    from crystal_studio.store.project import StructureQuery

    view = CompareView()
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.show()
    try:
        rows = project.page(StructureQuery(ids=[2, 3, 4]))
        view.set_structures(rows, [project.structure(r["id"]) for r in rows])
        assert len(view.shown_viewers()) == 3
        cameras = {id(v.renderer.GetActiveCamera()) for v in view.shown_viewers()}
        assert len(cameras) == 1
        first, second = view.shown_viewers()[:2]
        first.renderer.GetActiveCamera().Azimuth(40)
        first.interactor.InvokeEvent("InteractionEvent")
        assert second.renderer.GetActiveCamera().GetPosition() == first.renderer.GetActiveCamera().GetPosition()
        labels = [view.table.verticalHeaderItem(i).text() for i in range(view.table.rowCount())]
        assert "band_gap (eV)" in labels
        row = labels.index("a (Å)")
        assert view.table.item(row, 1).background().style() == Qt.BrushStyle.NoBrush  # CsCl a = 4.0 Å, within 5 % of 3.905
        assert view.table.item(row, 2).background().color().name() == "#ffe2aa"  # NaCl a = 5.6 Å
    finally:
        view.close_viewers()


def _widget_point(viewer, k: int):
    """Qt widget position of the projected centre of drawn atom ``k``."""
    from PySide6.QtCore import QPoint

    renderer = viewer.renderer
    renderer.SetWorldPoint(*viewer.scene.positions[k], 1.0)
    renderer.WorldToDisplay()
    x, y, _ = renderer.GetDisplayPoint()
    ratio = viewer.vtk_widget.devicePixelRatioF()
    return QPoint(round(x / ratio), round(viewer.render_window.GetSize()[1] / ratio - y / ratio - 1))


@needs_display
def test_real_mouse_clicks_pick_atoms_and_drags_do_not(qtbot, viewer, srtio3):
    from PySide6.QtCore import Qt

    viewer.set_structure(srtio3, "SrTiO3")
    viewer.images_box.setChecked(False)
    left = Qt.MouseButton.LeftButton
    for k in (1, 0):
        point = _widget_point(viewer, k)
        qtbot.mousePress(viewer.vtk_widget, left, pos=point)
        qtbot.mouseRelease(viewer.vtk_widget, left, pos=point)
    assert viewer.picked == [1, 0]
    assert "distance" in viewer.info.text()
    start = _widget_point(viewer, 2)
    qtbot.mousePress(viewer.vtk_widget, left, pos=start)
    qtbot.mouseMove(viewer.vtk_widget, start + start.__class__(40, 25))
    qtbot.mouseRelease(viewer.vtk_widget, left, pos=start + start.__class__(40, 25))
    assert viewer.picked == [1, 0]  # a drag rotates the camera, it never picks


@needs_display
def test_a_narrow_viewer_lists_its_hidden_controls_in_the_overflow_menu(qtbot, viewer):
    from PySide6.QtWidgets import QToolButton

    viewer.resize(330, 400)
    qtbot.waitUntil(lambda: viewer.toolbar.findChild(QToolButton, "qt_toolbar_ext_button").isVisible(), timeout=3000)
    menu = viewer.toolbar.findChild(QToolButton, "qt_toolbar_ext_button").menu()
    menu.aboutToShow.emit()
    texts = [a.text() for a in menu.actions()]
    assert {"PNG…", "a", "Bonds"} <= set(texts)
    [png] = [a for a in menu.actions() if a.text() == "PNG…"]
    assert png is viewer.view_actions[-2]


@needs_display
def test_colour_schemes_tell_light_elements_apart_and_redraw_open_viewers(viewer, srtio3):
    from crystal_studio.gui.elements import color_scheme, style

    assert color_scheme() == "VESTA"
    assert len({style(s).color for s in ("F", "Ca", "Mg", "Be")}) == 4
    viewer.set_structure(srtio3, "SrTiO3")
    vesta = viewer.image()
    try:
        [jmol] = [a for a in viewer.color_scheme_menu.actions() if a.data() == "Jmol"]
        jmol.trigger()  # through the toolbar's Colours menu
        assert color_scheme() == "Jmol" and jmol.isChecked()
        assert (viewer.image() != vesta).any()  # Ti is blue in VESTA, grey in Jmol
        assert style("Ti").color == "#bfc2c7"
    finally:
        viewer.set_color_scheme("VESTA")


def test_standard_cells_of_a_conventional_and_a_primitive_structure(srtio3):
    from pymatgen.core import Lattice, Structure

    from crystal_studio.core import structures as cs

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert len(rocksalt) == 8
    assert len(cs.standard_cell(rocksalt, "primitive")) == 2
    assert len(cs.standard_cell(cs.standard_cell(rocksalt, "primitive"), "conventional")) == 8
    assert cs.standard_cell(srtio3, "stored") is srtio3
    with pytest.raises(ValueError, match="cell setting must be one of"):
        cs.standard_cell(srtio3, "reduced")


@needs_display
def test_viewer_switches_between_stored_primitive_and_conventional_cells(qtbot, viewer):
    from pymatgen.core import Lattice, Structure

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    viewer.set_structure(rocksalt, "NaCl")
    stored = viewer.atom_count()
    assert not viewer.symprec_spin.isEnabled()
    combo = viewer.cell_setting_combo
    combo.setCurrentIndex(combo.findData("primitive"))  # what choosing it in the toolbar does
    assert viewer.symprec_spin.isEnabled() and len(viewer.shown_structure) == 2
    assert viewer.atom_count() < stored and "Primitive cell: 2 sites (stored cell 8)" in viewer.info.text()
    assert viewer.scene.lattice == pytest.approx(viewer.shown_structure.lattice.matrix)
    combo.setCurrentIndex(combo.findData("conventional"))
    assert len(viewer.shown_structure) == 8 and viewer.atom_count() == stored
    distorted = rocksalt.copy()
    distorted.translate_sites([0], [0.03, 0.0, 0.0])  # 0.17 Å off: face-centred again only at a coarse tolerance
    viewer.set_structure(distorted, "NaCl distorted")
    viewer.set_cell_setting("primitive", symprec=0.001)
    assert len(viewer.shown_structure) == 8  # no longer face-centred at 0.001 Å: 8 sites stay
    viewer.set_cell_setting("primitive", symprec=0.5)
    assert len(viewer.shown_structure) == 2
    viewer.set_cell_setting("stored")
    assert viewer.shown_structure is distorted and viewer.info.text().startswith("Click an atom")


def test_measure_gives_distances_angle_and_dihedral():
    from crystal_studio.gui.scene import measure

    square = np.array([[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0]])
    assert measure(square)["distances"] == pytest.approx([1.0, 1.0]) and measure(square)["angle"] == pytest.approx(90)
    trans = np.array([[0, 1.0, 0], [0, 0, 0], [1.5, 0, 0], [1.5, -1.0, 0]])
    assert measure(trans)["dihedral"] == pytest.approx(180) or measure(trans)["dihedral"] == pytest.approx(-180)
    gauche = np.array([[0, 1.0, 0], [0, 0, 0], [1.5, 0, 0], [1.5, 0, 1.0]])
    assert measure(gauche)["dihedral"] == pytest.approx(90)  # IUPAC sign: clockwise seen down the 2→3 bond
    assert measure(gauche[:2]) == {"distances": [pytest.approx(1.0)], "angle": None, "dihedral": None}


@needs_display
def test_real_clicks_measure_an_angle_and_a_dihedral(qtbot, viewer, srtio3):
    from PySide6.QtCore import Qt

    viewer.set_structure(srtio3, "SrTiO3")
    viewer.images_box.setChecked(False)  # sites 0 Sr, 1 Ti, 2-4 O
    for k in (2, 1, 3):
        point = _widget_point(viewer, k)
        qtbot.mousePress(viewer.vtk_widget, Qt.MouseButton.LeftButton, pos=point)
        qtbot.mouseRelease(viewer.vtk_widget, Qt.MouseButton.LeftButton, pos=point)
    assert viewer.picked == [2, 1, 3]
    assert "angle O1–Ti2–O3 90.00°" in viewer.info.text()  # O–Ti–O in the octahedron
    assert viewer.distance_actor.GetVisibility() and viewer.distance_data.GetCell(0).GetNumberOfPoints() == 3
    viewer.select_atom(4)
    assert "dihedral O1–Ti2–O3–O4" in viewer.info.text()
    viewer.select_atom(0)  # a fifth click starts a new measurement
    assert viewer.picked == [0] and "distance" not in viewer.info.text()


@needs_display
def test_orthographic_view_along_uvw_and_clipboard_image(qtbot, viewer, srtio3):
    from PySide6.QtGui import QGuiApplication

    viewer.set_structure(srtio3, "SrTiO3")
    camera = viewer.renderer.GetActiveCamera()
    viewer.ortho_box.trigger()  # what clicking 'Ortho' does
    assert camera.GetParallelProjection()
    viewer.view_along_direction((1, 1, 0))
    view = np.asarray(camera.GetPosition()) - np.asarray(camera.GetFocalPoint())
    assert view / np.linalg.norm(view) == pytest.approx([2**-0.5, 2**-0.5, 0], abs=1e-6)
    with pytest.raises(ValueError, match="not a direction"):
        viewer.view_along_direction((0, 0, 0))
    image = viewer.copy_image(2)
    width, height = viewer.render_window.GetSize()
    assert (image.width(), image.height()) == (2 * width, 2 * height)
    assert QGuiApplication.clipboard().image().size() == image.size()
    assert viewer.triad.GetEnabled()


@needs_display
def test_draw_styles_space_filling_and_wireframe(qtbot, viewer, srtio3):
    viewer.set_structure(srtio3, "SrTiO3")
    assert viewer.bond_actor.GetVisibility() and not viewer.bond_line_actor.GetVisibility()
    [space] = [a for a in viewer.draw_style_menu.actions() if a.data() == "space-filling"]
    space.trigger()  # what choosing it in the Style menu does
    assert viewer.draw_style == "space-filling" and space.isChecked()
    assert not viewer.bond_actor.GetVisibility() and not viewer.bond_line_actor.GetVisibility()
    radii = viewer.atom_radii()
    assert radii[viewer.scene.symbols.index("Sr")] == pytest.approx(style("Sr").atomic_radius)
    viewer.set_draw_style("wireframe")
    assert viewer.bond_line_actor.GetVisibility() and not viewer.bond_actor.GetVisibility()
    assert set(viewer.atom_radii()) == {0.15}
    point = viewer.scene.positions[1]  # Ti: still clickable with its small sphere
    viewer.renderer.SetWorldPoint(*point, 1.0)
    viewer.renderer.WorldToDisplay()
    x, y, _ = viewer.renderer.GetDisplayPoint()
    assert viewer.pick_at(int(round(x)), int(round(y))) == 1
    with pytest.raises(ValueError, match="draw style must be one of"):
        viewer.set_draw_style("cartoon")


def test_coordination_polyhedra_are_the_tio6_octahedra_not_the_sr_cages(srtio3):
    from crystal_studio.gui.scene import coordination_polyhedra

    scene = build_scene(srtio3, (2, 1, 1))
    polyhedra = coordination_polyhedra(scene)
    assert [scene.symbols[c] for c, _, _ in polyhedra] == ["Ti", "Ti"]  # Sr's 12-fold cages are left out
    for centre, vertices, triangles in polyhedra:
        assert len(vertices) == 6 and len(triangles) == 8  # an octahedron
        assert np.linalg.norm(vertices - scene.positions[centre], axis=1) == pytest.approx([srtio3.lattice.a / 2] * 6)


@needs_display
def test_polyhedra_toggle_draws_translucent_octahedra(qtbot, viewer, srtio3):
    viewer.set_structure(srtio3, "SrTiO3")
    assert viewer.polyhedron_count() == 0 and not viewer.polyhedra_actor.GetVisibility()
    viewer.polyhedra_box.trigger()
    assert viewer.polyhedron_count() == 1 and viewer.polyhedra_actor.GetVisibility()
    assert viewer.polyhedra_data.GetNumberOfPolys() == 8
    pixels = viewer.image().reshape(-1, 3).astype(int)
    ti = np.array(style("Ti").rgb255)
    assert (np.abs(pixels - ti).sum(axis=1) < 60).sum() > 500  # the octahedron's faces, in Ti's colour


def test_lattice_planes_cut_the_box_where_miller_indices_say():
    from crystal_studio.gui.scene import lattice_plane

    cubic = np.eye(3) * 4.0
    square = lattice_plane(cubic, (2, 0, 0))
    assert len(square) == 4 and set(np.round(square[:, 0], 6)) == {2.0}  # x = 1/2 of the cell
    triangle = lattice_plane(cubic, (1, 1, 1))
    assert len(triangle) == 3 and np.allclose(triangle.sum(axis=1), 8.0)  # x + y + z = 2 cells' worth
    assert len(lattice_plane(cubic, (1, 1, 1), (2, 2, 2))) == 6  # through the centre of a 2×2×2 box: a hexagon
    with pytest.raises(ValueError, match="not a lattice plane"):
        lattice_plane(cubic, (0, 0, 0))


@needs_display
def test_viewer_draws_the_lattice_planes_asked_for(qtbot, viewer, srtio3, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    viewer.set_structure(srtio3, "SrTiO3")
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("1 1 0; 0 0 2", True))
    [planes_action] = [a for a in viewer.view_actions if a.text() == "(hkl)…"]
    planes_action.trigger()
    assert viewer.lattice_planes == [(1, 1, 0), (0, 0, 2)]
    assert viewer.planes_data.GetNumberOfPolys() == 2 and viewer.planes_actor.GetVisibility()
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("1 1", True))
    planes_action.trigger()
    assert "give three whole numbers" in viewer.info.text() and viewer.lattice_planes == [(1, 1, 0), (0, 0, 2)]
    viewer.set_lattice_planes([])
    assert not viewer.planes_actor.GetVisibility()


@needs_display
def test_element_dialog_recolours_and_resizes_an_element_in_every_viewer(qtbot, viewer, srtio3):
    from crystal_studio.gui.elements import reset_element_styles
    from crystal_studio.gui.viewer import StructureViewer

    other = StructureViewer()
    qtbot.addWidget(other)
    try:
        viewer.set_structure(srtio3, "SrTiO3")
        other.set_structure(srtio3, "SrTiO3")
        bonds = viewer.bond_count()
        dialog = viewer.element_styles_dialog()
        qtbot.addWidget(dialog)
        assert sorted(dialog.color_buttons) == ["O", "Sr", "Ti"]  # ordered by Z in the dialog
        dialog.set_color("Ti", "#00ff00")
        assert style("Ti").color == "#00ff00" and dialog.color_buttons["Ti"].text() == "#00ff00"
        for view in (viewer, other):  # every open view redrawn
            colors = vtk_colors(view)
            assert tuple(colors[view.scene.symbols.index("Ti")]) == (0, 255, 0)
        dialog.radius_spins["Ti"].setValue(0.5)  # a Ti that small bonds to no O
        assert viewer.bond_count() == bonds - 6
        dialog.restore_defaults()
        assert viewer.bond_count() == bonds and style("Ti").color != "#00ff00"
        with pytest.raises(ValueError, match="'#rrggbb'"):
            dialog.set_color("Ti", "green")
    finally:
        reset_element_styles()
        other.close_viewer()


def vtk_colors(view):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    return vtk_to_numpy(view.atom_data.GetPointData().GetArray("color"))


@needs_display
def test_bond_length_table_per_element_pair(qtbot, viewer, srtio3):
    viewer.set_structure(srtio3, "SrTiO3")
    assert viewer.bond_count() == 30
    dialog = viewer.bond_lengths_dialog()
    qtbot.addWidget(dialog)
    assert sorted(dialog.spins) == [("O", "O"), ("O", "Sr"), ("O", "Ti"), ("Sr", "Sr"), ("Sr", "Ti"), ("Ti", "Ti")]
    assert dialog.spins[("O", "Sr")].text() == "auto (radii)"
    dialog.spins[("O", "Sr")].setValue(0.05)  # no Sr–O bonds: the TiO6 framework alone
    assert viewer.bond_count() == 6 and viewer.bond_lengths == {("O", "Sr"): 0.05}
    dialog.spins[("Sr", "Ti")].setValue(3.5)  # metal pairs bond when the user asks (Sr–Ti = a√3/2 = 3.38 Å)
    assert viewer.bond_count() == 6 + 8
    dialog.spins[("O", "Sr")].setValue(0.0)
    dialog.spins[("Sr", "Ti")].setValue(0.0)
    assert viewer.bond_count() == 30 and viewer.bond_lengths == {}


def test_boundary_range_draws_the_atoms_just_outside_the_cell(srtio3):
    wide = build_scene(srtio3, boundary=(-0.1, 1.1))
    assert len(wide.positions) == 15  # SrTiO3 has no atom within 0.1 of a face but those on it
    wider = build_scene(srtio3, boundary=(-0.5, 1.5))
    frac = wider.frac
    assert frac.min() == pytest.approx(-0.5) and frac.max() == pytest.approx(1.5)
    assert Counter(wider.symbols)["Ti"] == 27  # body centres at -0.5, 0.5 and 1.5 along each axis
    with pytest.raises(ValueError, match="must contain the box"):
        build_scene(srtio3, boundary=(0.2, 1.0))


@needs_display
def test_viewer_boundary_range_dialog(qtbot, viewer, srtio3, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    viewer.set_structure(srtio3, "SrTiO3")
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("-0.5, 1.5", True))
    viewer.boundary_action.trigger()
    assert viewer.boundary == (-0.5, 1.5)
    assert viewer.atom_count() == len(build_scene(srtio3, boundary=(-0.5, 1.5)).positions)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("3 4", True))
    viewer.boundary_action.trigger()
    assert "must run from" in viewer.info.text() and viewer.boundary == (-0.5, 1.5)
