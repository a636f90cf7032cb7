"""Datasets panel: paged table model, sorting, filters, element picker, details, plots, import dialog."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from crystal_studio.gui import structure_model
from crystal_studio.gui.datasets_panel import DatasetsPanel
from crystal_studio.gui.details import structure_details_html
from crystal_studio.gui.import_dialog import ImportDialog
from crystal_studio.gui.jobs import JobManager
from crystal_studio.gui.periodic_table import EXCLUDED, NEUTRAL, REQUIRED, PeriodicTableWidget
from crystal_studio.gui.plots import PropertyPlots
from crystal_studio.gui.structure_model import ID_ROLE, PLACEHOLDER, StructureTableModel
from crystal_studio.store.project import StructureQuery

DATA = Path(__file__).resolve().parents[1] / "data"
GOOD, BROKEN = DATA / "good", DATA / "broken"


def _load_all(qtbot, model):
    """Touch every row and wait until all pages are loaded; returns the column-0 values."""

    def loaded():
        values = [model.data(model.index(r, 0)) for r in range(model.rowCount())]
        return PLACEHOLDER not in values and bool(values)

    qtbot.waitUntil(loaded, timeout=5000)
    return [model.data(model.index(r, 0), ID_ROLE) for r in range(model.rowCount())]


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(structure_model, "PAGE_SIZE", 2)


def test_model_pages_lazily_and_sorts(qtbot, project, small_pages):
    model = StructureTableModel(project)
    try:
        with qtbot.waitSignal(model.reloaded, timeout=5000):
            model.set_query(StructureQuery())
        assert model.rowCount() == 9
        assert model.data(model.index(8, 1)) == PLACEHOLDER  # not fetched yet
        assert _load_all(qtbot, model) == list(range(1, 10))
        assert model.data(model.index(1, 1)) == "SrTiO3"

        volume = next(i for i, c in enumerate(model.columns) if c.key == "volume")
        with qtbot.waitSignal(model.reloaded, timeout=5000):
            model.sort(volume, Qt.SortOrder.DescendingOrder)
        ids = _load_all(qtbot, model)
        volumes = [project.page(StructureQuery(ids=[i]))[0]["volume"] for i in ids]
        assert volumes == sorted(volumes, reverse=True)

        model.set_properties(["band_gap"])
        with qtbot.waitSignal(model.reloaded, timeout=5000):
            model.sort(len(model.columns) - 1, Qt.SortOrder.AscendingOrder)
        ids = _load_all(qtbot, model)
        assert ids[:4] == [3, 5, 7, 4]  # band gaps 1.25, 1.5, 4.0, 5.0; then structures without one
        assert model.headerData(len(model.columns) - 1, Qt.Orientation.Horizontal) == "band_gap (eV)"
    finally:
        model.close()


def test_panel_filters_by_formula_elements_and_range(qtbot, project):
    panel = DatasetsPanel()
    qtbot.addWidget(panel)
    panel.set_project(project)
    try:
        _check_filters(qtbot, panel)
    finally:
        panel.set_project(None)


def _check_filters(qtbot, panel):
    qtbot.waitUntil(lambda: panel.model.rowCount() == 9 and not panel.model.loading, timeout=5000)
    assert [panel.dataset_list.topLevelItem(i).text(0) for i in range(2)] == ["All datasets", "good"]

    with qtbot.waitSignal(panel.model.reloaded, timeout=5000):
        panel.formula_edit.setText("NaCl")
    assert panel.model.rowCount() == 3
    assert "3 of 9" in panel.count_label.text()

    with qtbot.waitSignal(panel.model.reloaded, timeout=5000):
        panel.clear_filters()
    with qtbot.waitSignal(panel.model.reloaded, timeout=5000):
        panel.element_button.set_elements(["Cl"], ["Na"])
    assert panel.model.rowCount() == 2  # the two CsCl

    with qtbot.waitSignal(panel.model.reloaded, timeout=5000):
        panel.clear_filters()
    with qtbot.waitSignal(panel.model.reloaded, timeout=5000):
        panel.range_editor.set_range("band_gap", 1.0, 2.0)
    assert panel.model.rowCount() == 2  # CsCl 1.25 and CsBr 1.5
    assert "band_gap" in panel.filter_label.text()

    # typing in the range fields goes through the same path
    panel.range_editor.combo.setCurrentText("formation_energy_per_atom")
    panel.range_editor.low.setText("-0.8")
    with qtbot.waitSignal(panel.model.reloaded, timeout=5000):
        panel.range_editor.low.editingFinished.emit()
    assert panel.model.rowCount() == 1  # CsCl: gap 1.25, Ef -0.5

    _load_all(qtbot, panel.model)
    received = []
    panel.current_changed.connect(received.append)
    panel.select_rows([0])
    assert panel.selected_ids() == [3] and received == [3]


def test_periodic_table_cycles_states(qtbot):
    table = PeriodicTableWidget()
    qtbot.addWidget(table)
    assert len(table.buttons) == 103
    table.buttons["O"].click()
    assert table.state("O") == REQUIRED
    table.buttons["Pb"].click()
    table.buttons["Pb"].click()
    assert table.state("Pb") == EXCLUDED
    table.buttons["Pb"].click()
    assert table.state("Pb") == NEUTRAL
    assert table.required() == ["O"] and table.excluded() == []


def test_detail_pane_lists_lattice_and_properties(project):
    row = project.page(StructureQuery(ids=[3]))[0]
    text = structure_details_html(row, project.structure(3))
    for expected in ("CsCl", "a, b, c", "4.0000", "α, β, γ", "90.000°", "Volume", "64.000 Å³", "Density",
                     "Space group", "band_gap", "1.25 eV", "Composition"):
        assert expected in text
    # CsCl (Pm-3m): Cs on 1a and Cl on 1b, both m-3m, and the group's 48 operations
    assert "<td>Cs</td><td>1a</td><td>m-3m</td>" in text and "<td>Cl</td><td>1b</td><td>m-3m</td>" in text
    assert "Symmetry operations (48)" in text and "1. x, y, z" in text and "… and 36 more" in text


def test_wyckoff_multiplicities_refer_to_the_conventional_cell():
    from pymatgen.core import Lattice, Structure

    from crystal_studio.core.structures import standard_cell, symmetry_report

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    for cell in (rocksalt, standard_cell(rocksalt, "primitive")):
        report = symmetry_report(cell)
        assert (report.number, [(s.element, s.wyckoff) for s in report.sites]) == (225, [("Na", "4a"), ("Cl", "4b")])
    assert len(symmetry_report(rocksalt).operations) == 192  # 48 × the 4 centring translations


def test_plots_load_histogram_and_scatter(qtbot, project):
    plots = PropertyPlots()
    qtbot.addWidget(plots)
    plots.set_project(project)
    plots.set_properties(["band_gap", "formation_energy_per_atom"])
    plots.set_query(StructureQuery())
    qtbot.waitUntil(lambda: len(plots.values.get("band_gap", {})) == 4, timeout=5000)
    assert plots.x_combo.currentText() == "band_gap" and plots.y_combo.currentText() == "formation_energy_per_atom"
    assert sorted(plots._scatter_ids.tolist()) == [3, 4, 5, 7]
    x, y = plots.hist_curve.getData()
    assert y.sum() == 4
    clicked = []
    plots.ids_selected.connect(clicked.append)
    plots.box_button.setChecked(True)
    plots.roi.setPos((1.0, -1.3))
    plots.roi.setSize((1.0, 1.0))
    assert sorted(plots.box_ids()) == [3, 5]
    plots.box_button.setChecked(False)
    assert clicked[-1] is None


def test_import_dialog_reports_skipped_records_and_refreshes(qtbot, project):
    jobs = JobManager(None)
    dialog = ImportDialog(project, jobs, [str(BROKEN / "garbage.cif"), str(GOOD / "SrTiO3.cif")])
    qtbot.addWidget(dialog)
    assert dialog.dataset_combo.currentText() == "garbage"
    dialog.dataset_combo.setCurrentText("mixed")
    with qtbot.waitSignal(dialog.imported, timeout=10000) as blocker:
        dialog.import_button.click()
    assert blocker.args == ["mixed"]
    assert dialog.report.imported == 1 and dialog.report.skipped == 1
    assert not dialog.issues.isHidden() and dialog.issues.rowCount() == 1
    assert "garbage.cif" in dialog.issues.item(0, 0).text()
    assert "Imported 1" in dialog.summary.text()
    assert "mixed" in project.dataset_names()


def test_cancelled_import_leaves_project_unchanged(qtbot, project, tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    text = (GOOD / "SrTiO3.cif").read_text()
    for i in range(400):
        (many / f"s{i}.cif").write_text(text)
    before = project.count()
    jobs = JobManager(None)
    dialog = ImportDialog(project, jobs, [str(many)])
    qtbot.addWidget(dialog)
    job = dialog.start_import()
    qtbot.waitUntil(lambda: job.last_event is not None and job.last_event.total > 0, timeout=10000)
    with qtbot.waitSignal(job.done, timeout=2000):
        dialog.cancel_button.click()
    assert job.state == "cancelled"
    assert "cancelled" in dialog.summary.text()
    assert project.count() == before and "many" not in project.dataset_names()


def test_import_dialog_skips_ids_already_in_the_dataset_when_asked(qtbot, project):
    jobs = JobManager(None)
    for skip in (False, True):
        dialog = ImportDialog(project, jobs, [str(GOOD / "SrTiO3.cif")])
        qtbot.addWidget(dialog)
        dialog.dataset_combo.setCurrentText("twice")
        dialog.skip_repeats_box.setChecked(skip)
        job = dialog.start_import()
        with qtbot.waitSignal(job.done, timeout=10000):
            pass
        if skip:
            assert dialog.report.imported == 0 and "left out" in dialog.summary.text()
        else:
            assert dialog.report.imported == 1 and "Note" not in dialog.summary.text()


def test_multi_data_answers_every_role_as_data_does(qtbot, project):
    """Views ask for a cell's roles in one multiData call; it must agree with data() role by role."""
    from PySide6.QtCore import QModelRoleData, QModelRoleDataSpan

    model = StructureTableModel(project)
    try:
        model.set_properties(["band_gap"])
        with qtbot.waitSignal(model.reloaded, timeout=5000):
            model.set_query(StructureQuery())
        _load_all(qtbot, model)
        roles = [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.TextAlignmentRole, Qt.ItemDataRole.ToolTipRole,
                 Qt.ItemDataRole.FontRole, Qt.ItemDataRole.DecorationRole, ID_ROLE]
        compared = 0
        for row in range(model.rowCount()):
            for column in range(model.columnCount()):
                index = model.index(row, column)
                for role in roles:
                    item = QModelRoleData(role)
                    index.multiData(QModelRoleDataSpan(item))
                    assert item.data() == model.data(index, role), (row, model.columns[column].key, role)
                    compared += item.data() is not None
        assert compared > model.rowCount() * model.columnCount()  # text and alignment at least
        formula = model.index(1, 1)
        item = QModelRoleData(Qt.ItemDataRole.DisplayRole)
        formula.multiData(QModelRoleDataSpan(item))
        assert item.data() == "SrTiO3"
    finally:
        model.close()


def test_structures_table_sorts_from_its_header_and_scrolls_with_the_wheel(qtbot, project):
    """The panel's ResponsiveTableView replaces the view's headers and scroll bars: clicking a column
    header still sorts, the wheel still scrolls."""
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    from crystal_studio.gui.table_view import ResponsiveTableView

    panel = DatasetsPanel()
    qtbot.addWidget(panel)
    panel.set_project(project)
    try:
        table = panel.table
        assert isinstance(table, ResponsiveTableView)
        panel.resize(900, 260)
        panel.show()
        qtbot.waitUntil(lambda: panel.model.rowCount() == 9 and not panel.model.loading, timeout=5000)
        _load_all(qtbot, panel.model)

        header = table.horizontalHeader()
        volume = next(i for i, c in enumerate(panel.model.columns) if c.key == "volume")
        with qtbot.waitSignal(panel.model.reloaded, timeout=5000):
            qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                             pos=QPoint(header.sectionViewportPosition(volume) + 5, header.height() // 2))
        assert panel.model.query.sort == "volume"
        ids = _load_all(qtbot, panel.model)
        volumes = [project.page(StructureQuery(ids=[i]))[0]["volume"] for i in ids]
        assert volumes in (sorted(volumes), sorted(volumes, reverse=True))

        bar = table.verticalScrollBar()
        assert bar.maximum() > 0 and bar.value() == 0
        at = QPointF(table.viewport().width() / 2, table.viewport().height() / 2)
        wheel = QWheelEvent(at, QPointF(table.viewport().mapToGlobal(at)), QPoint(), QPoint(0, -120),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                            False)
        QApplication.sendEvent(table.viewport(), wheel)
        assert bar.value() > 0
    finally:
        panel.set_project(None)
