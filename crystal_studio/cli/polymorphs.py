"""The ``polymorphs`` verb: a dataset of many CHGNet-relaxed random crystals per formula (for csp_vae / LCOMs
training). :func:`register` adds it to the main typer app."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from crystal_studio.cli.cluster import ExecutorOpt, RayAddressOpt, RayCpusOpt, chosen_executor
from crystal_studio.cli.common import (
    EXIT_PARTIAL,
    EXIT_USAGE,
    JsonOpt,
    ProjectArg,
    emit_json,
    err,
    open_project,
    out,
    say,
)
from crystal_studio.core.errors import CrystalStudioError


def polymorphs(
    project: ProjectArg,
    formula: Annotated[list[str] | None, typer.Option(
        "--formula", "-f", help="A formula to make polymorphs of, repeatable (e.g. -f Li2O -f NaCl).")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Dataset to store them in (created if new; rows already there are skipped).")] = None,
    per_formula: Annotated[int, typer.Option(help="Random symmetric crystals relaxed per formula.")] = 8,
    frames: Annotated[int, typer.Option(
        help="Also store up to this many intermediate frames of each relaxation (relaxed = 0).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed (trial t of a formula is the same crystal for a seed).")] = 0,
    max_atoms: Annotated[int, typer.Option(help="Most atoms in a generated (conventional) cell.")] = 12,
    relax_steps: Annotated[int, typer.Option(help="Most FIRE steps per relaxation.")] = 150,
    fmax: Annotated[float, typer.Option(help="Force criterion of the relaxation, eV/Å.")] = 0.1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_cpus: RayCpusOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make a polymorph dataset: random symmetric crystals (PyXtal) of each formula relaxed by CHGNet, stored
    with their CHGNet energy_per_atom (eV/atom), relaxed and relax_converged. Run the same command again
    after a cancel or crash to continue: stored trials are skipped. With --executor ray each trial is a
    Ray task (generate + relax); only this process writes the project."""
    from crystal_studio.design.polymorphs import generate_polymorphs
    from crystal_studio.jobs.cli_runner import run_with_progress

    if not formula:
        raise CrystalStudioError("say which formulas: --formula F (repeatable)")
    if not dataset:
        raise CrystalStudioError("say which dataset to store the polymorphs in: --dataset NAME")
    proj = open_project(project)
    with chosen_executor(executor, ray_address, ray_cpus) as tasks:
        result = run_with_progress(f"polymorphs on {tasks.name}", lambda progress, cancel: generate_polymorphs(
            proj, list(formula), dataset, per_formula, frames, seed, max_atoms, relax_steps, fmax, device, progress,
            cancel, tasks))
    table = Table(title=f"run {result.run_id}: {result.n_rows} rows stored in dataset '{result.dataset}'",
                  title_justify="left")
    for col in ("formula", "status", "relaxed", "rows", "already stored", "lowest E (eV/atom)", "note"):
        table.add_column(col, justify="left" if col in ("formula", "status", "note") else "right")
    for f in result.formulas:
        table.add_row(f.formula, f.status, str(f.n_relaxed), str(f.n_stored), str(f.n_existing),
                      f"{min(f.energies):.3f}" if f.energies else "", f.reason)
    (err if json_out else out).print(table)
    for f in result.incomplete:
        say(f.status, "yellow", f"{f.input}: {f.reason}")
    err.print(f"{result.n_relaxed} structures relaxed in {result.relax_s:.1f} s: {result.rate_per_min:.1f} "
              f"structures/min ({result.rows_per_min:.1f} rows/min); {result.n_existing} trials already stored")
    if json_out:
        emit_json(result.as_json())
    if result.incomplete:
        raise typer.Exit(EXIT_USAGE if len(result.failed) == len(result.formulas) else EXIT_PARTIAL)


def register(app: typer.Typer) -> None:
    """Add the polymorphs verb to the main app."""
    app.command()(polymorphs)
