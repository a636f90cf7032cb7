"""Screenshots for docs/user-guide.md: drives the real main window through the tutorial on a temporary
copy of the built-in project (import → train → target → optimize → inspect → relax → export) and saves
PNGs to docs/images/guide_*.png, printing each step's wall time as a JSON line.

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/user-guide-screenshots.py [--project P]

``--project`` copies an existing built-in project (e.g. from ``crystal-studio new P --builtin``) instead of
creating one in the temporary data folder as the app does on first launch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
MAX_BYTES = 200_000
WINDOW_SIZE = (1360, 860)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a built-in project to copy instead of creating one")
    parser.add_argument("--out", type=Path, default=IMAGES)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cs-guide-"))
    os.environ["CRYSTAL_STUDIO_HOME"] = str(tmp / "home")
    if args.project:
        (tmp / "home").mkdir()
        shutil.copy(args.project, tmp / "home" / "builtin.sqlite")
    try:
        return Tutorial(tmp, args.out).run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Tutorial:
    """The user guide's session, step by step, as a user would click through it."""

    def __init__(self, tmp: Path, out: Path):
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        self.app = QApplication.instance() or QApplication(sys.argv[:1])
        self.tmp = tmp
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
        self.started = time.monotonic()

    # ---------------------------------------------------------------- helpers

    def wait(self, condition, timeout: float, what: str) -> float:
        """Process events until ``condition()``; returns the seconds it took."""
        start = time.monotonic()
        while not condition():
            self.app.processEvents()
            time.sleep(0.02)
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
        return time.monotonic() - start

    def settle(self, seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.app.processEvents()
            time.sleep(0.02)

    def report(self, step: str, seconds: float, **extra) -> None:
        print(json.dumps({"step": step, "seconds": round(seconds, 1), **extra}), flush=True)

    def shot(self, widget, name: str) -> Path:
        """Save ``widget`` as docs/images/NAME.png, palette-reduced if it would be over MAX_BYTES."""
        from PIL import Image

        self.settle(0.4)
        path = self.out / f"{name}.png"
        # from the screen, not widget.grab(): VTK's OpenGL views only show there
        widget.screen().grabWindow(widget.winId()).save(str(path))
        if path.stat().st_size > MAX_BYTES:
            image = Image.open(path).convert("RGB")
            image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        print(json.dumps({"screenshot": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                          "bytes": path.stat().st_size}), flush=True)
        return path

    # ---------------------------------------------------------------- the session

    def run(self) -> int:
        from crystal_studio.gui.main_window import MainWindow
        from crystal_studio.gui.welcome import show_at_startup
        from crystal_studio.store.builtin import builtin_project_path

        start = time.monotonic()
        self.window = window = MainWindow(settings=self.settings)  # no last project: the built-in one
        window.resize(*WINDOW_SIZE)
        window.show()
        page = show_at_startup(window)
        self.wait(lambda: window.project is not None and window.project.path == builtin_project_path(), 300,
                  "opening the built-in project")
        self.wait(lambda: window.datasets_panel.model.rowCount() > 0, 60, "the dataset table")
        self.report("open built-in project", time.monotonic() - start)
        self.wait(lambda: window.devices is not None, 120, "device detection")
        page.fill_recent()
        self.shot(page, "guide_welcome")
        page.close()

        self.import_step()
        tour = window.start_tour()  # on the Datasets panel, a crystal in the viewer
        self.shot(window, "guide_tour")
        tour.close()
        model_id = self.train_step()
        self.target_step()
        run_id = self.optimize_step(model_id)
        self.inspect_step(run_id)
        self.relax_step()
        self.export_step()
        window.close()
        self.report("total", time.monotonic() - self.started)
        return 0

    def import_step(self) -> None:
        from crystal_studio.store.exporting import export_structures
        from crystal_studio.store.project import StructureQuery

        window = self.window
        panel = window.datasets_panel
        panel.select_dataset("builtin")
        panel.formula_edit.setText("TiO3")
        self.wait(lambda: panel.model.rowCount() > 0 and panel.model.row_data(0) is not None, 30, "filter")
        self.settle(0.8)
        panel.select_rows([0])
        window.docks["Datasets"].raise_()
        self.shot(window, "guide_import_datasets")

        folder = self.tmp / "my-cifs"  # CIF files to import: written from the built-in data
        export_structures(window.project, StructureQuery(dataset="builtin", formula="SnO3"), folder, "cif")
        dialog = window.import_dialog([str(folder)])
        self.settle(0.5)
        start = time.monotonic()
        job = dialog.start_import()
        self.wait(lambda: not job.running, 120, "import")
        self.report("import a folder of CIFs", time.monotonic() - start, files=len(list(folder.iterdir())))
        self.shot(dialog, "guide_import_dialog")
        dialog.reject()
        panel.select_dataset("builtin")
        panel.select_rows([0])

    def train_step(self) -> int:
        window = self.window
        panel = window.training_panel
        window.docks["Training"].raise_()
        panel.set_dataset("builtin")
        panel.set_kind("gnn")
        panel.set_targets(["formation_energy_per_atom", "bulk_modulus"])
        panel.epochs_spin.setValue(20)
        panel.ensemble_spin.setValue(1)
        panel.seed_spin.setValue(0)
        panel.name_edit.setText("my first model")
        trained = []
        panel.model_trained.connect(trained.append)
        start = time.monotonic()
        panel.start_button.click()
        self.wait(lambda: bool(trained), 1800, "training")
        self.wait(lambda: panel.parity_data is not None, 300, "parity plots")
        metrics = {t: round(panel.parity_data.mae(t), 3) for t in panel.parity_data.targets}
        self.report("train gnn, 20 epochs, 1 member", time.monotonic() - start, test_mae=metrics)
        panel.results_tabs.setCurrentWidget(panel.parity)
        self.shot(window, "guide_train")
        return trained[0]

    def target_step(self) -> None:
        window = self.window
        panel = window.targets_panel
        window.docks["Targets"].raise_()
        combo = panel.example_combo
        index = combo.findText("Perovskite, bulk modulus 160 ± 10 GPa (built-in dataset)")
        combo.setCurrentIndex(index)
        combo.activated.emit(index)
        self.settle(0.5)
        assert panel.spec is not None and not panel.problems, panel.problems
        self.shot(window, "guide_target")

    def optimize_step(self, judge_id: int) -> int:
        from crystal_studio.store.models import list_models

        window = self.window
        panel = window.optimization_panel
        window.docks["Optimization"].raise_()
        builtin = next(m.id for m in list_models(window.project) if m.name == "built-in CHGNet-label ensemble")
        panel.set_method("smoacs")
        for model_id in panel.selected_model_ids():
            panel.set_model_checked(model_id, False)
        panel.set_model_checked(builtin)
        panel.set_judge(judge_id)
        panel.candidates_spin.setValue(64)
        panel.steps_spin.setValue(100)
        panel.seed_spin.setValue(0)
        finished = []
        panel.run_finished.connect(finished.append)
        start = time.monotonic()
        panel.start_button.click()
        self.wait(lambda: bool(finished), 1800, "optimization")
        self.report("smoacs, 64 candidates, 100 steps", time.monotonic() - start,
                    summary=panel.last_result.summary if panel.last_result is not None else None)
        window.docks["Optimization"].raise_()
        window.docks["Optimization"].widget().ensureWidgetVisible(panel.summary_label)  # curves and summary
        self.shot(window, "guide_optimize")
        return finished[0]

    def inspect_step(self, run_id: int) -> None:
        window = self.window
        panel = window.candidates_panel
        window.docks["Candidates"].raise_()
        self.wait(lambda: panel.run_id == run_id and panel.model.rowCount() > 0, 30, "candidates")
        panel.success_box.setChecked(True)
        ids = panel.visible_ids()
        print(json.dumps({"successful_candidates": len(ids), "of": panel.model.rowCount()}), flush=True)
        if ids:
            panel.select_ids([ids[0]])
        self.settle(0.8)
        self.shot(window, "guide_inspect")
        if len(ids) >= 2:
            panel.select_ids(ids[:3])
            panel.compare_button.click()
            self.settle(1.0)
            self.shot(window, "guide_compare")
            window.tabs.setCurrentWidget(window.viewer)

    def relax_step(self) -> None:
        window = self.window
        panel = window.candidates_panel
        if not panel.visible_ids():  # no successful candidate: relax the first ones instead
            panel.success_box.setChecked(False)
        ids = panel.visible_ids()[:4]
        panel.select_ids(ids)
        start = time.monotonic()
        job = panel.relax_selected()
        self.wait(lambda: not job.running, 1800, "relaxation")
        self.report(f"relax {len(ids)} candidates with CHGNet", time.monotonic() - start,
                    results=[{k: r.get(k) for k in ("formula", "converged", "success_before", "success_after",
                                                    "rmsd", "energy_per_atom")} for r in panel.last_relaxation or []])
        panel.select_ids(ids[:1])
        self.shot(window, "guide_relax")

    def export_step(self) -> None:
        window = self.window
        panel = window.candidates_panel
        panel.format_combo.setCurrentText("CIF")
        panel.export_relaxed_box.setChecked(True)
        folder = self.tmp / "hits"
        start = time.monotonic()
        job = panel.export_to(folder, "cif", selected=False)
        self.wait(lambda: not job.running, 120, "export")
        self.report("export the successful candidates as CIF", time.monotonic() - start,
                    files=sorted(p.name for p in folder.iterdir()) if folder.exists() else [])
        self.shot(window, "guide_export")


if __name__ == "__main__":
    sys.exit(main())
