"""Scale-out verbs and options of the command line: ``sweep``, and the ``--executor`` /
``--ray-address`` options that ``relax`` and ``sweep`` share (see :mod:`crystal_studio.jobs.executors`).

:func:`register` adds the verbs to the main typer app.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crystal_studio.cli.common import (
    EXIT_PARTIAL,
    JsonOpt,
    ProjectArg,
    emit_json,
    err,
    open_project,
    out,
    parse_ids,
    say,
)
from crystal_studio.core.errors import CrystalStudioError

ExecutorOpt = Annotated[str, typer.Option(
    help="Where the tasks run: local (this process, the default) or ray (a Ray cluster; "
         "pip install 'crystal-studio[cluster]').")]
RayAddressOpt = Annotated[str | None, typer.Option(
    help="With --executor ray: the cluster's address (HOST:PORT of 'ray start --head', or 'auto'); "
         "without it a Ray instance is started on this machine.")]
RayCpusOpt = Annotated[int | None, typer.Option(
    help="With --executor ray and no --ray-address: CPUs of the local Ray instance (default: this "
         "machine's usable cores).")]


@contextmanager
def chosen_executor(name: str, address: str | None, num_cpus: int | None = None):
    """The executor the options name, closed (a Ray instance it started, stopped) afterwards."""
    from crystal_studio.jobs.executors import make_executor

    executor = make_executor(name, address, num_cpus)
    try:
        yield executor
    finally:
        executor.close()


def report_tasks(report) -> None:
    """Tell stderr which tasks were lost and resubmitted, and which stayed lost."""
    if report.retried:
        say(f"{len(report.retried)} task(s) lost with their worker and resubmitted:", "yellow",
            ", ".join(f"task {i + 1} ({n}x)" for i, n in sorted(report.retried.items())))


def _rate(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def sweep(
    project: ProjectArg,
    methods: Annotated[str, typer.Option(help="Comma-separated methods ('crystal-studio methods' lists them).")],
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")],
    spec: Annotated[list[Path], typer.Option(help="Design spec (JSON/YAML); repeatable for several targets.")],
    models: Annotated[str, typer.Option(help="Comma-separated model ids every run optimizes against.")],
    judge_models: Annotated[int | None, typer.Option(
        "--judge-models", "--judge", help="Independent model id that re-predicts every run's final candidates.")] = None,
    candidates: Annotated[int, typer.Option(help="Candidates per run.")] = 64,
    steps: Annotated[int, typer.Option(help="Optimization steps per run.")] = 100,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (auto: cuda where the tasks run has GPUs).")] = "auto",
    dataset: Annotated[str | None, typer.Option(
        help="Dataset to screen (screen) and to judge novelty against (default: the model's training set).")] = None,
    generator: Annotated[int | None, typer.Option(help="Crystal VAE model id for the latent methods.")] = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_cpus: RayCpusOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a grid of optimizations (every spec × method × seed), each stored as a run, and print one
    comparison table: success under the optimized models and under the judge, unique rate, time."""
    from crystal_studio.design.spec import load_spec
    from crystal_studio.design.sweep import run_sweep
    from crystal_studio.jobs.cli_runner import run_with_progress
    from crystal_studio.store.models import get_model

    proj = open_project(project)
    model_ids = parse_ids(models, "--models")
    method_names = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise CrystalStudioError(f"--seeds must be comma-separated integers (got '{seeds}')") from None
    known = {t for mid in model_ids for t in get_model(proj, mid, with_checkpoint=False).targets}
    specs = [load_spec(path, known_properties=known) for path in spec]
    with chosen_executor(executor, ray_address, ray_cpus) as chosen:
        result = run_with_progress(f"sweep on {chosen.name}", lambda progress, cancel: run_sweep(
            proj, specs, method_names, seed_list, model_ids, candidates, steps, device, judge_models, dataset,
            generator, chosen, progress, cancel))
    table = Table(title=f"sweep: {len(result.cells)} runs", title_justify="left")
    for col in ("run", "spec", "method", "seed", "cand.", "success (own)", "success (judge)", "unique", "time (s)"):
        table.add_column(col, justify="left" if col in ("spec", "method") else "right")
    rows = {c.run_id: c for c in result.comparison}
    for cell in result.cells:
        row = rows.get(cell["run_id"])
        if row is None:
            table.add_row("lost", cell["spec"], cell["method"], str(cell["seed"]), "", "", "", "", "")
            continue
        table.add_row(str(row.run_id), cell["spec"], cell["method"], str(cell["seed"]), str(row.n_candidates),
                      _rate(row.success_own), _rate(row.success_judge), _rate(row.unique_rate),
                      "—" if row.seconds is None else f"{row.seconds:.0f}")
    (err if json_out else out).print(table)
    report_tasks(result.report)
    if json_out:
        emit_json(result.as_json())
    if result.lost:
        for cell in result.lost:
            say("lost", "red", f"{cell['spec']} / {cell['method']} / seed {cell['seed']}: "
                f"{result.report.failed.get(result.cells.index(cell), 'lost')}")
        raise typer.Exit(EXIT_PARTIAL)


def register(app: typer.Typer) -> None:
    """Add the scale-out verbs to the main app."""
    app.command()(sweep)
