"""CHGNet relaxation throughput, local executor against Ray (issue 19, item 5).

    .venv/bin/python benchmarks/ray_relax.py [--candidates 16] [--ray-cpus 2] [--torch-threads 1]

Builds a throw-away project: the test suite's good structures, an untrained tiny predictor and a
'random' optimization run of ``--candidates`` perovskites (the relaxations do not depend on the
predictor's quality). The same candidates are then relaxed (CHGNet, cell free, fmax 0.05 eV/Å, at most
300 steps) on a fresh copy of the project each time:

- ``local``: in this process, one candidate after another, torch using ``--torch-threads`` threads;
- ``ray``: a local Ray instance with ``--ray-cpus`` CPUs, one task per candidate and one torch thread
  per task (start-up of the Ray instance timed separately).

Prints JSON lines: one per executor (seconds, structures/min, per-task seconds), a ``driver`` line
(Ray's serial cost per task on the driver, from ``--noop-tasks`` empty tasks) and a ``model`` line, a
paper model of a campaign of n relaxations on N nodes of C cores from the measured numbers:

    T(N, C) = startup + warmup + ceil(n / (N·C)) · t_task + n · t_driver

``t_task`` is the local run's time per candidate on one thread; ``t_driver`` the driver's serial cost
per task (submit, wait, fetch, store); ``warmup`` what else Ray's run took here (its wall time minus
``ceil(n / C) · t_task + n · t_driver``): worker processes starting and loading CHGNet once each,
which happens on all nodes at once, and on a machine this small the driver and Ray's own processes
competing with the tasks for its cores (so it is an upper bound for a cluster).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "tests" / "data" / "good"
SPEC = ROOT / "resources" / "specs" / "smoacs_perovskite_gap_2.5eV.json"


def emit(**fields) -> None:
    fields.update(date=date.today().isoformat(),
                  machine=f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(json.dumps(fields), flush=True)


def make_project(folder: Path, n_candidates: int) -> tuple[Path, int]:
    """A project holding a 'random' run of ``n_candidates``: (path, run id)."""
    import torch

    from crystal_studio.design.job import run_optimization
    from crystal_studio.design.spec import load_spec
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    path = folder / "source.sqlite"
    project = Project.create(path)
    import_paths(project, [GOOD], "good")
    torch.manual_seed(0)
    predictor = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                                 ["band_gap", "formation_energy_per_atom"], members=1)
    predictor.set_normalization([1.0, -1.0], [1.0, 1.0])
    model_id = save_predictor(project, predictor, "tiny", metrics={}, dataset_id=project.dataset_id("good"))
    run = run_optimization(project, load_spec(SPEC), "random", [model_id], n_candidates=n_candidates,
                           n_steps=3, seed=0, device="cpu")
    project.close()
    return path, run.run_id


def relax_copy(source: Path, folder: Path, name: str, run_id: int, executor, max_steps: int = 300) -> tuple[float, list]:
    """Relax every candidate of ``run_id`` on a fresh copy of ``source``: (seconds, results)."""
    from crystal_studio.design.relaxation import relax_run
    from crystal_studio.store.project import Project

    target = folder / f"{name}.sqlite"
    target.write_bytes(source.read_bytes())
    project = Project.open(target)
    started = time.perf_counter()
    outcome = relax_run(project, run_id, device="cpu", max_steps=max_steps, executor=executor)
    seconds = time.perf_counter() - started
    project.close()
    if outcome.lost:
        raise SystemExit(f"{name}: {len(outcome.lost)} relaxations lost")
    return seconds, outcome.results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads of the local run (1: its per-task time is the model's one-core time)")
    parser.add_argument("--noop-tasks", type=int, default=500, help="empty tasks timing the driver's cost per task")
    args = parser.parse_args()

    import torch

    from crystal_studio.core.tasks import LocalExecutor
    from crystal_studio.jobs.executors import RayExecutor

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source, run_id = make_project(folder, args.candidates)
        n = args.candidates

        torch.set_num_threads(args.torch_threads)
        relax_copy(source, folder, "warm-up", run_id, LocalExecutor(), max_steps=1)  # CHGNet loaded once, untimed
        local_s, local_results = relax_copy(source, folder, "local", run_id, LocalExecutor())
        emit(part="local", candidates=n, torch_threads=args.torch_threads, seconds=round(local_s, 1),
             per_minute=round(60 * n / local_s, 2), seconds_per_task=round(local_s / n, 2))

        started = time.perf_counter()
        ray_executor = RayExecutor(None, args.ray_cpus)
        startup_s = time.perf_counter() - started
        try:
            ray_s, ray_results = relax_copy(source, folder, "ray", run_id, ray_executor)
        finally:
            ray_executor.close()
        same = sorted(round(r["energy_per_atom"], 4) for r in local_results) == \
            sorted(round(r["energy_per_atom"], 4) for r in ray_results)
        emit(part="ray", candidates=n, ray_cpus=args.ray_cpus, startup_seconds=round(startup_s, 1),
             seconds=round(ray_s, 1), per_minute=round(60 * n / ray_s, 2),
             same_energies_as_local=same)

        driver_s = per_task_driver_seconds(args.noop_tasks, args.ray_cpus)
        emit(part="driver", noop_tasks=args.noop_tasks, seconds_per_task=round(driver_s, 4))

        cores = args.ray_cpus
        t_task = local_s / n
        warmup = ray_s - math.ceil(n / cores) * t_task - n * driver_s
        campaign = 10_000
        predicted = {f"{nodes} nodes x {c} cores": round(
            (startup_s + max(warmup, 0.0) + math.ceil(campaign / (nodes * c)) * t_task + campaign * driver_s) / 3600, 2)
            for nodes in (1, 4, 16) for c in (cores, 32)}
        emit(part="model", seconds_per_task_one_core=round(t_task, 2), driver_seconds_per_task=round(driver_s, 4),
             warmup_seconds=round(warmup, 1), ray_startup_seconds=round(startup_s, 1), campaign_structures=campaign,
             predicted_hours=predicted, python=sys.version.split()[0])


def _noop(shared, item, context):
    return item


def per_task_driver_seconds(n: int, cpus: int) -> float:
    """Wall seconds per task of ``n`` empty Ray tasks on a fresh local instance, workers warmed first."""
    from crystal_studio.jobs.executors import RayExecutor

    executor = RayExecutor(None, cpus)
    try:
        executor.run(_noop, list(range(4 * cpus)))  # start the workers
        started = time.perf_counter()
        executor.run(_noop, list(range(n)))
        return (time.perf_counter() - started) / n
    finally:
        executor.close()


if __name__ == "__main__":
    main()
