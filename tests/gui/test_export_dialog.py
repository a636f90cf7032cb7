"""Export dialog: selected structures are written as files (or a zip) that read back equal."""

from __future__ import annotations

import zipfile

import pytest

from crystal_studio.core.io import read_structure
from crystal_studio.gui.export_dialog import ExportDialog
from crystal_studio.gui.jobs import JobManager


@pytest.mark.parametrize("fmt", ["CIF", "POSCAR (VASP)"])
def test_export_files_read_back_equal(qtbot, project, tmp_path, fmt):
    dialog = ExportDialog(project, [2, 3], JobManager(None))
    qtbot.addWidget(dialog)
    dialog.format_combo.setCurrentText(fmt)
    dialog.path_edit.setText(str(tmp_path / "out"))
    with qtbot.waitSignal(dialog.exported, timeout=10000) as blocker:
        dialog.export_button.click()
    written = blocker.args[0]
    assert sorted(p.name.split(".")[0] for p in written) == ["CsCl_3", "SrTiO3_2"]
    assert "Wrote 2 files" in dialog.result_label.text() and str(tmp_path / "out") in dialog.result_label.text()
    for path in written:
        sid = int(path.stem.split("_")[1])
        assert read_structure(path).matches(project.structure(sid))


def test_export_zip(qtbot, project, tmp_path):
    dialog = ExportDialog(project, [1, 2, 4], JobManager(None))
    qtbot.addWidget(dialog)
    dialog.path_edit.setText(str(tmp_path / "bundle"))
    dialog.zip_radio.setChecked(True)
    assert dialog.path_edit.text().endswith("bundle.zip")
    dialog.symmetrize_box.setChecked(True)
    with qtbot.waitSignal(dialog.exported, timeout=10000):
        dialog.export_button.click()
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        assert sorted(archive.namelist()) == ["GaN_1.cif", "NaCl_4.cif", "SrTiO3_2.cif"]


def test_existing_files_are_replaced_only_when_asked(qtbot, project, tmp_path):
    dialog = ExportDialog(project, [2], JobManager(None))
    qtbot.addWidget(dialog)
    dialog.path_edit.setText(str(tmp_path / "out"))
    with qtbot.waitSignal(dialog.exported, timeout=10000):
        dialog.export_button.click()
    target = tmp_path / "out" / "SrTiO3_2.cif"
    target.write_text("mine")
    dialog.export_button.click()
    qtbot.waitUntil(lambda: "Export failed" in dialog.result_label.text(), timeout=10000)
    assert "exist" in dialog.result_label.text() and target.read_text() == "mine"
    dialog.overwrite_box.setChecked(True)
    with qtbot.waitSignal(dialog.exported, timeout=10000):
        dialog.export_button.click()
    assert read_structure(target).matches(project.structure(2))
