"""What every verb module of the command line shares: the consoles, the argument and option
annotations, JSON output, opening the project, exit codes and the small parsers and printers more
than one verb uses.

Conventions (see DESIGN.md): exit 0 success, 2 usage error or nothing done, 3 partial success;
`--json` prints exactly one JSON document on stdout, everything else goes to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from crystal_studio.core.errors import CrystalStudioError

EXIT_USAGE = 2
"""Usage error or nothing could be done (message on stderr)."""
EXIT_PARTIAL = 3
"""Partial success: some records were skipped (listed on stderr)."""
EXIT_CANCELLED = 130
"""Cancelled by the user (Ctrl+C)."""

err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console()

ProjectArg = Annotated[Path, typer.Argument(help="Project file (.sqlite), as made by 'crystal-studio new'.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def emit_json(doc: dict) -> None:
    """Print ``doc`` as the one JSON document of the command on stdout."""
    sys.stdout.write(json.dumps(doc, default=str) + "\n")


def open_project(path: Path):
    """The :class:`~crystal_studio.store.project.Project` at ``path`` (the store is imported lazily)."""
    from crystal_studio.store.project import Project

    return Project.open(path)


def parse_ids(text: str, option: str) -> list[int]:
    """The integers of a comma-separated ``option`` value; anything else is a usage error."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CrystalStudioError(f"{option} must be comma-separated integers (got '{text}')") from None


def report_skipped(issues) -> None:
    """List every skipped record, with its reason, on stderr."""
    for issue in issues:
        err.print(f"[yellow]skipped[/yellow] {issue}", markup=True, highlight=False, soft_wrap=True)
