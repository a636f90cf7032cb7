"""Editing verbs of the command line: ``rename`` and ``delete`` (datasets, runs, models, candidates).

:func:`register` adds them to the main typer app. ``delete`` shows what would go (counts) and deletes
only with ``--yes`` or a "y" typed at a terminal; without either it refuses (exit 2) and says what it
would have deleted; ``--dry-run`` only shows it. What goes with what: see
:mod:`crystal_studio.store.edit`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from crystal_studio.cli.common import EXIT_USAGE, MAX_ID, JsonOpt, ProjectArg, emit_json, err, open_project, parse_ids
from crystal_studio.core.errors import CrystalStudioError


def _one_of(**given) -> str:
    """The one option of ``given`` that is set; a usage error naming them when none or several are."""
    chosen = [name for name, value in given.items() if value is not None]
    if len(chosen) != 1:
        options = ", ".join("--" + name for name in given)
        raise CrystalStudioError(f"say what to change with exactly one of {options}"
                                 + (f" (got {', '.join('--' + c for c in chosen)})" if chosen else ""))
    return chosen[0]


def _id(value: int, option: str) -> int:
    if not 1 <= value <= MAX_ID:
        raise CrystalStudioError(f"{option}: {value} is not an id (ids run from 1 to {MAX_ID})")
    return value


def rename(
    project: ProjectArg,
    dataset: Annotated[tuple[str, str] | None, typer.Option(
        metavar="OLD NEW", help="Rename dataset OLD to NEW (runs that name it follow).")] = None,
    run: Annotated[tuple[int, str] | None, typer.Option(
        metavar="ID NAME", help="Name run ID ('' removes its name).")] = None,
    model: Annotated[tuple[int, str] | None, typer.Option(metavar="ID NAME", help="Rename model ID.")] = None,
    candidate: Annotated[tuple[int, str] | None, typer.Option(
        metavar="ID NOTE", help="Set the note of candidate ID, its label in the app ('' clears it).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rename a dataset, run or model, or set a candidate's note."""
    from crystal_studio.store import candidates as candidate_store
    from crystal_studio.store import edit
    from crystal_studio.store import models as model_store

    what = _one_of(dataset=dataset, run=run, model=model, candidate=candidate)
    proj = open_project(project)
    if what == "dataset":
        old, new = dataset
        runs = edit.rename_dataset(proj, old, new)
        new = new.strip()
        doc = {"renamed": "dataset", "old": old, "new": new, "runs_updated": runs}
        message = (f"dataset '{old}' is called '{new}' already" if old == new else
                   f"renamed dataset '{old}' to '{new}'" + (f" ({runs} run(s) that name it follow)" if runs else ""))
    elif what == "run":
        run_id, name = _id(run[0], "--run"), run[1]
        edit.rename_run(proj, run_id, name)
        name = name.strip()
        doc = {"renamed": "run", "id": run_id, "name": name}
        message = f"run {run_id} is now called '{name}'" if name else f"run {run_id} has no name now"
    elif what == "model":
        model_id, name = _id(model[0], "--model"), edit.check_name(model[1], "model")
        model_store.rename_model(proj, model_id, name)
        doc = {"renamed": "model", "id": model_id, "name": name}
        message = f"model {model_id} is now called '{name}'"
    else:
        candidate_id, note = _id(candidate[0], "--candidate"), candidate[1]
        candidate_store.set_flag(proj, candidate_id, notes=note)
        doc = {"renamed": "candidate", "id": candidate_id, "notes": note}
        message = f"candidate {candidate_id}: note {'set' if note else 'cleared'}"
    err.print(message, highlight=False, soft_wrap=True)
    if json_out:
        emit_json(doc)


def delete(
    project: ProjectArg,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="Delete this dataset with its structures and their properties.")] = None,
    run: Annotated[int | None, typer.Option(
        min=1, max=MAX_ID, help="Delete this run with its metrics, candidates and sampled formulas.")] = None,
    model: Annotated[int | None, typer.Option(min=1, max=MAX_ID, help="Delete this model.")] = None,
    candidates: Annotated[str | None, typer.Option(help="Delete these candidates (comma-separated ids).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only show what would be deleted.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete a dataset, run, model or candidates, saying first what goes with it.

    Without --yes it asks at a terminal and refuses elsewhere (exit 2, nothing deleted, what would go
    on stderr); --dry-run only shows what would go.
    """
    from crystal_studio.store import edit
    from crystal_studio.store import models as model_store

    what = _one_of(dataset=dataset, run=run, model=model, candidates=candidates)
    ids = parse_ids(candidates, "--candidates") if candidates is not None else []
    if candidates is not None and not ids:
        raise CrystalStudioError("--candidates: give at least one id (e.g. --candidates 3,4)")
    proj = open_project(project)
    plans = {"dataset": lambda: edit.dataset_deletion(proj, dataset), "run": lambda: edit.run_deletion(proj, run),
             "model": lambda: edit.model_deletion(proj, model), "candidates": lambda: edit.candidates_deletion(proj, ids)}
    deletion = plans[what]()
    if dry_run:
        err.print(f"would delete {deletion.summary()}", highlight=False, soft_wrap=True)
        if json_out:
            emit_json({**deletion.as_json(), "dry_run": True})
        return
    if not yes:
        if not sys.stdin.isatty():
            raise CrystalStudioError(f"not deleted (pass --yes to delete, --dry-run to only show this): would delete "
                                     f"{deletion.summary()}")
        if not typer.confirm(f"Delete {deletion.summary()}\nDelete?", default=False, err=True):
            err.print("nothing was deleted")
            raise typer.Exit(EXIT_USAGE)
    if what == "dataset":
        deletion = edit.delete_dataset(proj, dataset)
    elif what == "run":
        deletion = edit.delete_run(proj, run)
    elif what == "model":
        model_store.delete_model(proj, model)
        deletion.deleted = True
    else:
        deletion = edit.delete_candidates(proj, ids)
    err.print(f"deleted {deletion.summary()}", highlight=False, soft_wrap=True)
    if json_out:
        emit_json({**deletion.as_json(), "dry_run": False})


def register(app: typer.Typer) -> None:
    """Add the editing verbs to ``app``."""
    app.command()(rename)
    app.command()(delete)
