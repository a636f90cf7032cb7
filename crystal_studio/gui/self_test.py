"""``crystal-studio --self-test [--report PATH]``: check that this installation works end to end.

In a temporary data folder and temporary settings (the user's projects and settings are never
touched) it collects the versions and compute device, opens the main window, which creates the
built-in project as on a first launch, renders a structure chosen in the Datasets panel in the 3D
viewer and checks the image is not blank, then trains a tiny predictor from the Training panel and
runs a tiny SMOACS optimization from the Optimization panel, through the same job machinery as a
user's clicks. Each check's result, time and error go into a JSON report; exit status 0 only if all
passed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from crystal_studio import __version__

TRAIN_TARGET = "formation_energy_per_atom"
SPEC = "smoacs_perovskite_gap_2.5eV.json"
SMOACS_MODEL = "Materials Project GNN ensemble"  # the differentiable built-in model SMOACS follows
JOB_TIMEOUT_S = 300  # far beyond the few seconds each job takes; a hung job fails its check


class CheckFailed(Exception):
    """A check saw something wrong; the message says what."""


def _display_problem() -> str | None:
    """Why Qt cannot open a window here (None: it can)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        return ("the self-test opens the main window and needs a display; without one, run it under Xvfb: "
                "xvfb-run -a crystal-studio --self-test")
    return None


class SelfTest:
    """Runs the checks in order on one window; :attr:`checks` collects their results."""

    def __init__(self, app, workdir: Path):
        self.app = app
        self.workdir = workdir
        self.window = None
        self.checks: list[dict] = []
        self.environment: dict | None = None

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Run the event loop until ``done()``; CheckFailed after ``timeout_s``."""
        from PySide6.QtCore import QEventLoop

        end = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > end:
                raise CheckFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.005)

    def run_check(self, name: str, fn: Callable[[], str]) -> bool:
        """Time ``fn`` (which returns a one-line detail) and record its outcome."""
        start = time.perf_counter()
        try:
            detail, error = fn(), ""
        except CheckFailed as exc:
            detail, error = "", str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken installation shows up as any error; report it
            detail, error = "", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        self.checks.append({"name": name, "passed": not error, "seconds": round(time.perf_counter() - start, 2),
                            "detail": detail, "error": error})
        return not error

    def _job_outcome(self, job, what: str) -> None:
        self.wait(lambda: not job.running, JOB_TIMEOUT_S, what)
        if job.state != "succeeded":
            message = job.error[0] if job.error else job.state
            raise CheckFailed(f"{what} {job.state}: {message}")

    # ---------------------------------------------------------------- checks

    def check_environment(self) -> str:
        from crystal_studio.gui.environment import environment_report

        self.environment = environment_report()
        versions = self.environment["versions"]
        return (f"Crystal Studio {versions['Crystal Studio']}, Qt {versions['Qt']}, VTK {versions['VTK']}, "
                f"torch {versions['torch']}; {self.environment['device']['statement'].split('.')[0]}")

    def check_window(self) -> str:
        from PySide6.QtCore import QSettings

        from crystal_studio.gui.main_window import MainWindow
        from crystal_studio.ml.builtin import BUILTIN_MODELS
        from crystal_studio.store.builtin import BUILTIN_DATASET
        from crystal_studio.store.models import list_models

        start = time.perf_counter()
        settings = QSettings(str(self.workdir / "settings.ini"), QSettings.Format.IniFormat)
        self.window = win = MainWindow(settings=settings)  # no last project: opens (creates) the built-in one
        win.show()
        self.wait(lambda: win.isVisible() and win.windowHandle() is not None and win.windowHandle().isExposed(),
                  30, "the main window to be shown")
        shown = time.perf_counter() - start
        self.wait(lambda: win.project is not None or win.jobs.last_error_dialog is not None, JOB_TIMEOUT_S,
                  "the built-in project")
        if win.project is None:
            raise CheckFailed(f"the built-in project did not open: {win.jobs.last_error_dialog.text()}")
        datasets = {s.name: s.count for s in win.project.datasets()}
        if not datasets.get(BUILTIN_DATASET):
            raise CheckFailed(f"the built-in project has no '{BUILTIN_DATASET}' dataset (has {datasets})")
        models = [m.name for m in list_models(win.project)]
        missing = [name for _file, name in BUILTIN_MODELS if name not in models]
        if missing:
            raise CheckFailed(f"built-in models missing from the project: {', '.join(missing)}")
        return (f"shown after {shown:.1f} s; {win.project.path.name} created and open after "
                f"{time.perf_counter() - start:.1f} s: {datasets[BUILTIN_DATASET]:,} structures, {len(models)} models")

    def check_render(self) -> str:
        import numpy as np

        from crystal_studio.gui.structure_model import ID_ROLE

        win = self.window
        panel = win.datasets_panel
        self.wait(lambda: panel.model is not None and panel.model.rowCount() > 0
                  and panel.model.data(panel.model.index(0, 0), ID_ROLE) is not None, 30, "the Datasets table")
        win.docks["Datasets"].raise_()
        panel.select_rows([0])  # what a click on the first row does
        self.wait(lambda: win.viewer.structure is not None, 30, "the viewer to show the selected structure")
        win.viewer.render()
        pixels = win.viewer.image().reshape(-1, 3).astype(int)
        background = np.median(pixels, axis=0)
        drawn = float((np.abs(pixels - background).sum(axis=1) > 60).mean())
        colours = len(np.unique(pixels // 16, axis=0))
        if drawn < 0.02 or colours < 8:
            raise CheckFailed(f"the 3D view looks blank: {drawn:.1%} of {len(pixels):,} pixels differ from the "
                              f"background, {colours} distinct colours")
        formula = win.viewer.structure.composition.reduced_formula
        return (f"{formula}: {win.viewer.atom_count()} atoms drawn, {drawn:.0%} of the "
                f"{len(pixels):,}-pixel view covered, {colours} colours")

    def check_training(self) -> str:
        from crystal_studio.store import models as model_store
        from crystal_studio.store.builtin import BUILTIN_DATASET

        win = self.window
        panel = win.training_panel
        win.docks["Training"].raise_()
        panel.set_dataset(BUILTIN_DATASET)
        panel.set_kind("gnn")
        panel.set_targets([TRAIN_TARGET])
        panel.epochs_spin.setValue(1)
        panel.ensemble_spin.setValue(1)
        panel.seed_spin.setValue(0)
        panel.hidden_spin.setValue(8)
        panel.layers_spin.setValue(1)
        panel.batch_spin.setValue(128)
        panel.device_combo.setCurrentText("auto")
        panel.config_overrides = {"cutoff": 4.0, "n_gaussians": 8}
        job = panel.start()
        if job is None:
            raise CheckFailed(f"training did not start: {panel.status_label.text()}")
        self._job_outcome(job, "the training job")
        run = model_store.get_run(win.project, panel.last_result.run_id)
        if run.status != "completed":
            raise CheckFailed(f"training run #{run.id} is {run.status}: {run.message}")
        mae = panel.last_result.metrics[TRAIN_TARGET]["mae"]
        return f"run #{run.id} on {run.device}: 1 epoch, model #{panel.last_result.model_id}, test MAE {mae:.3f} eV/atom"

    def check_optimization(self) -> str:
        from crystal_studio.core.paths import RESOURCES
        from crystal_studio.store.candidates import list_candidates
        from crystal_studio.store.models import list_models

        win = self.window
        win.targets_panel.load(RESOURCES / "specs" / SPEC)
        panel = win.optimization_panel
        win.docks["Optimization"].raise_()
        models = {m.name: m.id for m in list_models(win.project)}
        if SMOACS_MODEL not in models:
            raise CheckFailed(f"the built-in project lacks the '{SMOACS_MODEL}'")
        for model_id in panel.selected_model_ids():
            panel.set_model_checked(model_id, False)
        panel.set_model_checked(models[SMOACS_MODEL])
        panel.set_method("smoacs")
        panel.candidates_spin.setValue(8)
        panel.steps_spin.setValue(5)
        panel.seed_spin.setValue(0)
        panel.device_combo.setCurrentText("auto")
        job = panel.start()
        if job is None:
            raise CheckFailed(f"the optimization did not start: {panel.status_label.text()}")
        self._job_outcome(job, "the optimization job")
        result = panel.last_result
        stored = list_candidates(win.project, result.run_id)
        if len(stored) != 8 or panel.reports_seen != 5:
            raise CheckFailed(f"run #{result.run_id} stored {len(stored)} of 8 candidates and reported "
                              f"{panel.reports_seen} of 5 steps")
        return (f"run #{result.run_id}: smoacs, 8 candidates × 5 steps, "
                f"{result.summary.get('success_rate', 0):.0%} meet the target")

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
            self.window.deleteLater()
            self.app.processEvents()


def run_self_test(report_path: Path | None = None) -> int:
    """Run every check, print a summary, write the report (when asked); 0 if all passed, else 1."""
    problem = _display_problem()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crystal-studio-self-test-") as tmp:
        previous_home = os.environ.get("CRYSTAL_STUDIO_HOME")
        os.environ["CRYSTAL_STUDIO_HOME"] = str(Path(tmp) / "data")  # the built-in project goes here
        try:
            if problem is None:
                from PySide6.QtWidgets import QApplication

                app = QApplication.instance() or QApplication(sys.argv[:1])
                test = SelfTest(app, Path(tmp))
                for name, fn in (("environment", test.check_environment), ("main_window", test.check_window),
                                 ("render", test.check_render), ("training", test.check_training),
                                 ("optimization", test.check_optimization)):
                    if not test.run_check(name, fn) and name == "main_window":
                        break  # the rest need the window and its project
                test.close()
                checks, environment = test.checks, test.environment
            else:
                checks = [{"name": "display", "passed": False, "seconds": 0.0, "detail": "", "error": problem}]
                environment = None
        finally:
            if previous_home is None:
                os.environ.pop("CRYSTAL_STUDIO_HOME", None)
            else:
                os.environ["CRYSTAL_STUDIO_HOME"] = previous_home
    expected = 5 if problem is None else 1
    passed = len(checks) == expected and all(c["passed"] for c in checks)
    report = {"crystal_studio": __version__, "started": started, "passed": passed,
              "seconds": round(time.perf_counter() - start, 2), "frozen": bool(getattr(sys, "frozen", False)),
              "executable": sys.executable, "checks": checks, "environment": environment}
    for check in checks:
        mark = "PASS" if check["passed"] else "FAIL"
        text = check["detail"] or check["error"].splitlines()[0]
        print(f"{mark}  {check['name']:<13} {check['seconds']:6.1f} s  {text}")
    skipped = expected - len(checks)
    print(f"self-test {'passed' if passed else 'FAILED'}: {sum(c['passed'] for c in checks)} of {expected} checks "
          f"passed{f' ({skipped} not run)' if skipped else ''} in {report['seconds']:.1f} s")
    if report_path is not None:
        report_path = Path(report_path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"report: {report_path}")
    return 0 if passed else 1
