"""GUI latency benchmark: Qt event-loop lateness while a CPU-heavy job runs in a worker thread.

A 5 ms ``QTimer`` (precise) runs on the GUI thread and records, for every tick, how much later than
5 ms after the previous tick it fired. Meanwhile a job runs through :mod:`crystal_studio.gui.jobs`
(the same ``JobManager`` / ``QThread`` path the window uses, progress signals included):

- ``idle``: no job, the baseline of this machine and its load;
- ``import``: ``import_paths`` of ``--structures`` CIF records from ../shared/data/mp_mtcgcnn_33k.csv.gz
  into a temporary project, parsed in the worker thread itself (``workers=1``: pure-Python parsing
  competing for the GIL, the worst case), and again with the importer's process pool (``workers=0``
  = all cores, what the GUI uses for big imports);
- ``train``: a torch MLP training loop (Adam, batch 256) for ``--train-seconds``.

With ``--scroll``, every scenario also has a structures table (the window's ``StructureTableModel`` in the
window's ``ResponsiveTableView``, or with ``--view plain`` a bare ``QTableView``; 1000 × 700 px, 22 px
rows, with band gap and formation energy columns) scrolled with mouse-wheel events by one screen every
50 ms, jumping to a random row every second (so pages keep being fetched): the user browsing a dataset
while the job runs. Its rows come from ``--table-project PATH`` (e.g. the 100k project that
``benchmarks/store.py --project PATH`` keeps), or else from the import CSV, imported first. With
``--open-builtin`` the window's own job that opens the built-in project runs first (untimed), as it does
when a session starts (it imports torch for the built-in models). With ``--detect-devices`` the window's
device-detection job runs first (untimed), as it does when the user brings the Training, Optimization
or Generate panel into view: it also imports what torch loads lazily, so a training afterwards starts
warm.

Prints one JSON line per scenario with p50/p99/max lateness in ms (targets: p99 < 20 ms, max < 100 ms),
the number of ticks, the job's wall time, and the load average (other processes share the CPU).
``max_after_startup_ms`` leaves out the first 250 ms after the job starts (thread/process start-up).

Usage:  python benchmarks/gui_latency.py [--structures 3000] [--train-seconds 15]
        [--scroll [--table-project P] [--view responsive|plain]] [--open-builtin] [--detect-devices]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TICK_MS = 5
STARTUP_S = 0.25


def emit(**fields) -> None:
    fields.setdefault("date", date.today().isoformat())
    fields.setdefault("machine", f"{platform.machine()} {os.cpu_count()} cores")
    print(json.dumps(fields), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[k]


class LatencyProbe:
    """A 5 ms precise QTimer that records how late each tick is."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.samples: list[tuple[float, float]] = []  # (time, lateness ms)
        self._last = None

    def start(self) -> None:
        self.samples.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.samples.append((now, max(0.0, (now - self._last) * 1e3 - TICK_MS)))
        self._last = now


class TableScroller:
    """A structures table on screen, scrolled by one screen every 50 ms and jumping every second.

    Both are mouse-wheel events sent to the table's viewport, as a user's scrolling arrives. ``view``
    ``responsive`` is the window's :class:`~crystal_studio.gui.table_view.ResponsiveTableView`, ``plain``
    a bare ``QTableView`` (what the window used before, for comparison); rows are 22 px as in the
    Datasets panel."""

    WHEEL_ROWS = 3  # rows one wheel notch scrolls (Qt's default wheelScrollLines)

    def __init__(self, project_path: Path, view: str = "responsive"):
        import random

        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QHeaderView, QTableView

        from crystal_studio.gui.structure_model import StructureTableModel
        from crystal_studio.store.project import Project, StructureQuery

        self.project = Project.open(project_path)
        self.model = StructureTableModel(self.project)
        self.model.set_properties(["band_gap", "formation_energy_per_atom"])
        self.model.set_query(StructureQuery(dataset=self.project.dataset_names()[0]))
        self.view_kind = view
        if view == "responsive":
            from crystal_studio.gui.table_view import ResponsiveTableView

            self.view = ResponsiveTableView()
        else:
            self.view = QTableView()
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.setModel(self.model)
        self.view.resize(1000, 700)
        self.view.show()
        self._random = random.Random(0)
        self.steps = 0
        self.timer = QTimer()
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._step)

    def _step(self) -> None:
        bar = self.view.verticalScrollBar()
        self.steps += 1
        if self.steps % 20 == 0:
            target = self._random.randrange(max(1, bar.maximum()))
        else:
            target = min(bar.maximum(), bar.value() + bar.pageStep())
        self._wheel(round((target - bar.value()) / self.WHEEL_ROWS))

    def _wheel(self, notches: int) -> None:
        """Send a wheel turn of ``notches`` (positive: down) to the table, as the mouse would."""
        from PySide6.QtCore import QPoint, QPointF, Qt
        from PySide6.QtGui import QWheelEvent
        from PySide6.QtWidgets import QApplication

        viewport = self.view.viewport()
        at = QPointF(viewport.width() / 2, viewport.height() / 2)
        event = QWheelEvent(at, QPointF(viewport.mapToGlobal(at)), QPoint(), QPoint(0, -120 * notches),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                            False)
        QApplication.sendEvent(viewport, event)

    def close(self) -> None:
        self.timer.stop()
        self.model.close()
        self.view.close()
        self.project.close()


def run_scenario(app, probe: LatencyProbe, name: str, work, limit_s: float, scroller: TableScroller | None = None,
                 **extra) -> None:
    """Start ``work`` as a GUI job (or just wait ``limit_s`` when ``work`` is None) and report."""
    from PySide6.QtCore import QEventLoop, QTimer

    from crystal_studio.gui.jobs import JobManager

    manager = JobManager()
    progress_events = []
    loop = QEventLoop()
    probe.start()
    if scroller is not None:
        scroller.steps = 0
        scroller.timer.start()
    QTimer.singleShot(100, loop.quit)  # let the timer settle before the job starts
    loop.exec()
    started = time.perf_counter()
    job = None
    if work is not None:
        job = manager.start(name, work, show_errors=False)
        job.progress.connect(lambda event: progress_events.append(event))
        job.done.connect(loop.quit)
    QTimer.singleShot(int(limit_s * 1000), loop.quit)
    loop.exec()  # the real event loop, as in the application
    if job is not None and job.running:
        job.cancel()
        job.wait(10_000)
        app.processEvents()
    elapsed = time.perf_counter() - started
    probe.stop()
    if scroller is not None:
        scroller.timer.stop()
        extra["table_scroll_steps"] = scroller.steps
    during = [(t, late) for t, late in probe.samples if t >= started]
    values = [late for _, late in during]
    after = [late for t, late in during if t >= started + STARTUP_S]
    p99, worst = percentile(values, 99), max(values, default=float("nan"))
    worst_at = next((t - started for t, late in during if late == worst), float("nan"))
    emit(benchmark="gui.event_loop_latency", scenario=name, ticks=len(values), tick_ms=TICK_MS,
         p50_ms=round(percentile(values, 50), 2), p99_ms=round(p99, 2), max_ms=round(worst, 1),
         max_at_s=round(worst_at, 2), max_after_startup_ms=round(max(after, default=float("nan")), 1),
         job_state=job.state if job else "none", job_seconds=round(elapsed, 1),
         progress_signals=len(progress_events), meets_target=bool(p99 < 20 and worst < 100),
         load_avg=round(os.getloadavg()[0], 2), gil_switch_interval_ms=sys.getswitchinterval() * 1e3,
         table_scrolled=scroller is not None, table_view=scroller.view_kind if scroller else None, **extra)


def import_work(csv_path: Path, folder: Path, workers: int, target: Path | None = None):
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    def work(progress, cancel):
        project = Project.create(target or folder / f"latency-{workers}-{time.monotonic_ns()}.sqlite")
        try:
            report = import_paths(project, [csv_path], "bench", workers=workers or None, progress=progress,
                                  cancel=cancel)
            return report.imported
        finally:
            project.close()

    return work


def train_work(seconds: float):
    def work(progress, cancel):
        import torch

        from crystal_studio.core.progress import ProgressEvent

        torch.manual_seed(0)
        x = torch.randn(4096, 128)
        y = (x[:, :8].sum(dim=1, keepdim=True)).tanh()
        model = torch.nn.Sequential(torch.nn.Linear(128, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                    torch.nn.ReLU(), torch.nn.Linear(512, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        start, step = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            cancel.check()
            index = torch.randint(0, len(x), (256,))
            loss = torch.nn.functional.mse_loss(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            progress(ProgressEvent(step, 0, f"step {step}", {"loss": loss.item()}))
        return step

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=3000)
    parser.add_argument("--train-seconds", type=float, default=15.0)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--warm-up", action="store_true", help="run a few training steps before the train scenario")
    parser.add_argument("--switch-interval-ms", type=float, default=0.0,
                        help="set sys.setswitchinterval (Python's GIL hand-over interval) first; 0 keeps it")
    parser.add_argument("--scenarios", nargs="+", default=["idle", "import-thread", "import-processes", "train"],
                        choices=["idle", "import-thread", "import-processes", "train"])
    parser.add_argument("--scroll", action="store_true", help="scroll a structures table during every scenario")
    parser.add_argument("--open-builtin", action="store_true",
                        help="first run the window's job that opens the built-in project (in a temporary home), as "
                             "a user's session starts; untimed")
    parser.add_argument("--detect-devices", action="store_true",
                        help="first run the window's device-detection job (what showing the Training panel starts); "
                             "untimed")
    parser.add_argument("--view", choices=["responsive", "plain"], default="responsive",
                        help="the scrolled table: the window's ResponsiveTableView or a bare QTableView")
    parser.add_argument("--table-project", type=Path, default=None,
                        help="with --scroll: the project whose first dataset the table shows")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from crystal_studio.core.progress import CancelToken

    app = QApplication.instance() or QApplication([])
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1e3)
    probe = LatencyProbe()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = None
        if any(s.startswith("import") for s in args.scenarios):
            if not (SHARED / "mp_mtcgcnn_33k.csv.gz").exists():
                print(f"skipped import scenarios: {SHARED} has no mp_mtcgcnn_33k.csv.gz", file=sys.stderr)
                args.scenarios = [s for s in args.scenarios if not s.startswith("import")]
            else:
                import pandas as pd

                csv_path = folder / "latency.csv"
                pd.read_csv(SHARED / "mp_mtcgcnn_33k.csv.gz", nrows=args.structures).to_csv(csv_path, index=False)
        if args.open_builtin:
            from crystal_studio.gui.main_window import open_project_work

            os.environ["CRYSTAL_STUDIO_HOME"] = str(folder / "home")
            run_scenario(app, probe, "opening the built-in project (untimed set-up)", open_project_work(None), 600)
        if args.detect_devices:
            from crystal_studio.gui.main_window import detect_devices

            run_scenario(app, probe, "detecting devices (untimed set-up)", detect_devices, 600)
        scroller = None
        if args.scroll:
            table_project = args.table_project
            if table_project is None:
                if csv_path is None:
                    raise SystemExit("--scroll without --table-project needs an import scenario's CSV")
                table_project = folder / "table.sqlite"
                import_work(csv_path, folder, 0, table_project)(lambda event: None, CancelToken())
            scroller = TableScroller(table_project, args.view)
        for scenario in args.scenarios:
            if scenario == "idle":
                run_scenario(app, probe, "idle", None, args.idle_seconds, scroller=scroller)
            elif scenario == "import-thread":
                run_scenario(app, probe, "import (parse in worker thread)", import_work(csv_path, folder, 1), 600,
                             scroller=scroller, structures=args.structures, workers=1)
            elif scenario == "import-processes":
                run_scenario(app, probe, "import (process pool)", import_work(csv_path, folder, 0), 600,
                             scroller=scroller, structures=args.structures, workers=os.cpu_count())
            elif scenario == "train":
                import torch

                if args.warm_up:  # first use of torch/Adam in the process (lazy imports) done beforehand
                    train_work(0.2)(lambda event: None, CancelToken())

                run_scenario(app, probe, "torch training thread" + (" (warm)" if args.warm_up else ""),
                             train_work(args.train_seconds), args.train_seconds + 30, scroller=scroller,
                             torch=torch.__version__, torch_threads=torch.get_num_threads())
        if scroller is not None:
            scroller.close()


if __name__ == "__main__":
    main()
