"""What every verb module of the command line shares: the consoles, the argument and option
annotations, JSON output, opening the project, exit codes and the small parsers and printers more
than one verb uses.

Conventions (see DESIGN.md): exit 0 success, 2 usage error or nothing done, 3 partial success;
`--json` prints exactly one JSON document on stdout, everything else goes to stderr.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from crystal_studio.core.errors import CrystalStudioError

EXIT_USAGE = 2
"""Usage error or nothing could be done (message on stderr)."""
EXIT_PARTIAL = 3
"""Partial success: some records were skipped (listed on stderr)."""
EXIT_CANCELLED = 130
"""Cancelled by the user (Ctrl+C; 128 + SIGINT, as the shell reports it)."""
EXIT_TERMINATED = 143
"""Stopped by SIGTERM (kill, a batch scheduler, a shutdown; 128 + SIGTERM)."""


def cancelled_exit_code(exc: BaseException) -> int:
    """The exit code of a command that ``exc`` (Ctrl-C, SIGTERM or a cancelled run) ended."""
    from crystal_studio.core.errors import Terminated
    from crystal_studio.jobs.cli_runner import RunCancelled

    terminated = exc.terminated if isinstance(exc, RunCancelled) else isinstance(exc, Terminated)
    return EXIT_TERMINATED if terminated else EXIT_CANCELLED

err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
"""Messages, warnings and progress (stderr). Markup is off: file names and messages print as they are
(a '[cluster]' or 'data[x].cif' would otherwise vanish as a tag); colour goes through :func:`say`."""
out = Console()


def say(label: str, style: str, message: str = "") -> None:
    """One line on stderr: ``label`` in ``style`` (e.g. 'error:' in red), then ``message`` as it is."""
    err.print(Text.assemble((label, style), " " if message else "", message))

ProjectArg = Annotated[Path, typer.Argument(help="Project file (.sqlite), as made by 'crystal-studio new'.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def emit_json(doc: dict) -> None:
    """Print ``doc`` as the one JSON document of the command on stdout."""
    sys.stdout.write(json.dumps(doc, default=str) + "\n")


def open_project(path: Path):
    """The :class:`~crystal_studio.store.project.Project` at ``path`` (the store is imported lazily)."""
    from crystal_studio.store.project import Project

    project = Project.open(path)
    if project.migration_backup is not None:
        err.print(f"updated {path} to schema {project.schema_version}; the file as it was is kept as "
                  f"{project.migration_backup}", markup=False, highlight=False)
    return project


MAX_ID = 2**63 - 1
"""Largest id the store can hold (SQLite's INTEGER); a bigger one names nothing and overflows a query."""


def parse_ids(text: str, option: str) -> list[int]:
    """The ids of a comma-separated ``option`` value; anything else, or an id outside 1…:data:`MAX_ID`,
    is a usage error."""
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CrystalStudioError(f"{option} must be comma-separated integers (got '{text}')") from None
    bad = next((i for i in ids if not 1 <= i <= MAX_ID), None)
    if bad is not None:
        raise CrystalStudioError(f"{option}: {bad} is not an id (ids run from 1 to {MAX_ID})")
    return ids


def finite_positive(value: float, option: str, maximum: float) -> float:
    """``value`` when it is a finite number in (0, ``maximum``]; otherwise (nan, inf, ≤ 0) a usage error."""
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise CrystalStudioError(f"{option} must be a number above 0 and at most {maximum:.10g} (got {value:g})")
    return value


def report_skipped(issues) -> None:
    """List every skipped record, with its reason, on stderr."""
    for issue in issues:
        say("skipped", "yellow", str(issue))
