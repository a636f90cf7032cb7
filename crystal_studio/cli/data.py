"""Data verbs of the command line: ``new``, ``import``, ``datasets``, ``info``, ``export`` and ``hull``.

:func:`register` adds them to the main typer app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crystal_studio.cli.common import (
    MAX_ID,
    JsonOpt,
    ProjectArg,
    emit_json,
    err,
    finite_positive,
    open_project,
    out,
    parse_ids,
    report_skipped,
)
from crystal_studio.core.errors import CrystalStudioError, OutputExistsError

MAX_FILE_MB = 2.0**20  # 1 TiB: --max-file-mb above this is a typo, not a file
MAX_SITES = 10**7  # --max-sites above this is a typo, not a crystal


def new(
    project: ProjectArg,
    builtin: Annotated[bool, typer.Option(
        help="Fill it with the built-in datasets and models (what the app's built-in project holds).")] = False,
) -> None:
    """Create a project file (empty, or with the built-in content); an existing file is never touched."""
    from crystal_studio.store.project import Project

    created = Project.create(project)
    if builtin:
        from crystal_studio.ml.builtin import ensure_builtin_models
        from crystal_studio.store.builtin import add_builtin_dataset

        try:
            add_builtin_dataset(created)
            model_ids = ensure_builtin_models(created)
        except BaseException:
            created.close()
            for suffix in ("", "-wal", "-shm"):
                Path(str(created.path) + suffix).unlink(missing_ok=True)
            raise
        err.print(f"created project {created.path} with the built-in dataset"
                  + (f" and models {', '.join(map(str, model_ids))}" if model_ids else ""))
        return
    err.print(f"created project {created.path}")


def import_(
    project: ProjectArg,
    paths: Annotated[list[Path], typer.Argument(help="Files, folders or .zip archives (CIF, POSCAR, extxyz, JSON, CSV).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to import into (created if new).")],
    ordered_approximation: Annotated[bool, typer.Option(
        help="Keep the majority species on partially occupied sites instead of rejecting them.")] = False,
    reject_close_atoms: Annotated[bool, typer.Option(
        help="Reject structures with atoms closer than 0.5 Å instead of importing them flagged invalid.")] = False,
    max_file_mb: Annotated[float, typer.Option(help="Largest file accepted, in MiB (after decompression).")] = 512,
    max_archive_mb: Annotated[float, typer.Option(
        help="Most content read from one .zip archive, all entries together, in MiB (after decompression).")] = 1024,
    max_sites: Annotated[int, typer.Option(min=1, max=MAX_SITES, help="Most atoms in one structure.")] = 1000,
    workers: Annotated[int, typer.Option(help="Parser processes (default: one per core).")] = 0,
    duplicates: Annotated[str, typer.Option(
        help="A record whose id is already in the dataset: 'keep' imports it again (with a warning), "
             "'skip' leaves it out.")] = "keep",
    json_out: JsonOpt = False,
) -> None:
    """Import crystals with their properties; lists every skipped record with the reason.

    Exit 0 if everything imported, 3 if some records were skipped, 2 if nothing was imported.
    """
    from crystal_studio.core.io import ImportOptions
    from crystal_studio.jobs.cli_runner import run_with_progress
    from crystal_studio.store.importer import import_paths

    max_file_bytes = int(finite_positive(max_file_mb, "--max-file-mb", MAX_FILE_MB) * 2**20)
    max_archive_bytes = int(finite_positive(max_archive_mb, "--max-archive-mb", MAX_FILE_MB) * 2**20)
    proj = open_project(project)
    options = ImportOptions(ordered_approximation=ordered_approximation, reject_close_atoms=reject_close_atoms,
                            max_file_bytes=max_file_bytes, max_archive_bytes=max_archive_bytes, max_sites=max_sites)
    report = run_with_progress(
        f"importing into '{dataset}'",
        lambda progress, cancel: import_paths(proj, paths, dataset, options, workers or None, progress, cancel,
                                               duplicates=duplicates))
    report_skipped(report.issues)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    if report.repeated:
        if report.repeats_skipped:
            err.print(f"note: {report.repeat_note()}", highlight=False)
        else:
            err.print(f"warning: {report.repeat_note()}; pass --duplicates skip to leave them out", highlight=False)
    summary = (f"imported {report.imported} structures into '{dataset}'" if report.imported
               else "nothing new imported" if report.repeats_skipped else "nothing imported")
    if report.flagged:
        summary += f" ({report.flagged} flagged invalid: atoms closer than 0.5 Å)"
    if report.skipped:
        summary += f"; skipped {report.skipped} (listed above)"
    err.print(summary, highlight=False)
    if json_out:
        emit_json(report.as_json())
    raise typer.Exit(report.exit_code)


def datasets(project: ProjectArg, json_out: JsonOpt = False) -> None:
    """List datasets with their size and per-property count/min/max."""
    summaries = open_project(project).datasets()
    if json_out:
        emit_json({"datasets": [d.as_json() for d in summaries]})
        return
    for d in summaries:
        table = Table(title=f"{d.name} — {d.count} structures", title_justify="left")
        for col in ("property", "count", "min", "max"):
            table.add_column(col, justify="left" if col == "property" else "right")
        for name, stats in d.properties.items():
            table.add_row(name, str(stats["count"]), f"{stats['min']:.4g}", f"{stats['max']:.4g}")
        out.print(table)
    if not summaries:
        err.print("no datasets yet: add one with 'crystal-studio import PROJECT PATH --dataset NAME'")


def info(project: ProjectArg, json_out: JsonOpt = False) -> None:
    """Summarize a project: schema version, size and row counts."""
    doc = open_project(project).info()
    if json_out:
        emit_json(doc)
        return
    out.print(f"[bold]{doc['path']}[/bold]  schema v{doc['schema_version']}, {doc['size_bytes'] / 2**20:.1f} MiB")
    for table, n in doc["counts"].items():
        out.print(f"  {table:<12} {n}")


def export(
    project: ProjectArg,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (or a .zip file).")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset to export from.")] = None,
    ids: Annotated[str | None, typer.Option(help="Comma-separated structure ids (default: the whole dataset).")] = None,
    run: Annotated[int | None, typer.Option(
        min=1, max=MAX_ID, help="Export the candidates of this optimization run instead.")] = None,
    only_success: Annotated[bool, typer.Option(help="With --run: only candidates meeting every criterion (after CHGNet relaxation where they were relaxed).")] = False,
    relaxed: Annotated[bool, typer.Option(help="With --run: the CHGNet-relaxed structures where they exist.")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help="cif, poscar or extxyz.")] = "cif",
    symmetrize: Annotated[bool, typer.Option(help="Write CIFs in their spglib space group instead of P1.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace output files that exist already.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write structures (or a run's candidates) to files named from formula and id; existing files are
    refused (nothing written, exit 2) unless --overwrite."""
    from crystal_studio.core.io import WRITE_FORMATS
    from crystal_studio.jobs.cli_runner import run_with_progress
    from crystal_studio.store.exporting import export_candidates, export_structures
    from crystal_studio.store.project import StructureQuery

    if fmt not in WRITE_FORMATS:
        raise CrystalStudioError(f"--format must be one of {', '.join(WRITE_FORMATS)} (got '{fmt}')")
    if dataset is None and ids is None and run is None:
        raise CrystalStudioError("say what to export: --dataset NAME, --ids 1,2,3 or --run ID")
    id_list = parse_ids(ids, "--ids") if ids else None
    proj = open_project(project)
    if run is not None:
        def work(progress, cancel):
            return export_candidates(proj, run, out_dir, fmt, only_success, relaxed, symmetrize, progress, cancel,
                                     overwrite=overwrite)
    else:
        query = StructureQuery(dataset=dataset, ids=id_list)

        def work(progress, cancel):
            return export_structures(proj, query, out_dir, fmt, symmetrize, progress, cancel, overwrite=overwrite)
    try:
        written = run_with_progress("exporting", work)
    except OutputExistsError as exc:
        raise OutputExistsError(f"{exc} (pass --overwrite to replace)") from None
    if not written:
        raise CrystalStudioError("nothing matched: no structures exported")
    err.print(f"wrote {len(written)} {fmt} file(s) to {out_dir}")
    if json_out:
        emit_json({"format": fmt, "out": str(out_dir), "files": [str(p) for p in written]})


def hull(
    project: ProjectArg,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset whose formation energies make the hull.")],
    replace_imported: Annotated[bool, typer.Option(
        help="Overwrite e_above_hull values that came with the imported data.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Energy above this dataset's own convex hull and decomposition products of every entry (from its
    formation_energy_per_atom), stored as derived properties e_above_hull and decomposition_components."""
    from crystal_studio.jobs.cli_runner import run_with_progress
    from crystal_studio.store.derived import compute_dataset_hull

    proj = open_project(project)
    summary = run_with_progress("hull", lambda progress, cancel: compute_dataset_hull(
        proj, dataset, progress, cancel, replace_imported=replace_imported))
    if json_out:
        emit_json(summary.as_json())
        return
    err.print(f"{summary.entries} entries of '{dataset}' in {summary.chemical_systems} chemical systems: "
              f"{summary.stable} on the dataset's hull ({summary.seconds:.1f} s); values are relative to this "
              f"dataset's hull, not to a reference database")


def register(app: typer.Typer) -> None:
    """Add the data verbs to ``app``."""
    app.command()(new)
    app.command("import")(import_)
    app.command()(datasets)
    app.command()(info)
    app.command()(export)
    app.command()(hull)
