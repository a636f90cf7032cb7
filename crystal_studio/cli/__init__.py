"""Command line: `crystal-studio VERB ...`. Thin: parses arguments and calls the same functions the
GUI calls. `crystal-studio` alone launches the GUI.

The verbs live in :mod:`.data`, :mod:`.models`, :mod:`.design`, :mod:`.polymorphs` and :mod:`.edit`,
which share :mod:`.common` and nothing else; this module builds the typer ``app`` from them and defines the entry point
:func:`main`. Conventions: see :mod:`.common` and DESIGN.md ("Command line conventions").
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer

from crystal_studio import __version__
from crystal_studio.cli import data, design, edit, models, polymorphs
from crystal_studio.cli.common import EXIT_USAGE, cancelled_exit_code, err, out, say
from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.jobs.cli_runner import RunCancelled

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    help="Crystal Studio: data-driven inverse design of inorganic crystals. Run without a command to open the app.",
)


@app.callback()
def root(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
         self_test: Annotated[bool, typer.Option(
             "--self-test", help="Check this installation (needs a display, e.g. xvfb-run): open the window on a "
             "temporary built-in project, render a structure, run a tiny training and optimization; exit 0 only "
             "if every check passed.")] = False,
         report: Annotated[Path | None, typer.Option(
             "--report", help="With --self-test: write the JSON report (each check, pass/fail, time, error) here.",
             dir_okay=False)] = None) -> None:
    """Open the desktop application when no command is given."""
    if version:
        out.print(f"crystal-studio {__version__}")
        raise typer.Exit(0)
    if report is not None and not self_test:
        raise typer.BadParameter("--report goes with --self-test", param_hint="--report")
    if self_test:
        if ctx.invoked_subcommand is not None:
            raise typer.BadParameter(f"--self-test takes no command (got '{ctx.invoked_subcommand}')",
                                     param_hint="--self-test")
        from crystal_studio.gui.self_test import run_self_test

        raise typer.Exit(run_self_test(report))
    if ctx.invoked_subcommand is None:
        from crystal_studio.gui.app import run_app

        raise typer.Exit(run_app())


data.register(app)
models.register(app)
design.register(app)
polymorphs.register(app)
edit.register(app)


def main() -> None:
    """Console entry point: user errors print a message and exit 2, never a traceback.

    typer runs in standalone mode, so usage errors exit 2 with click's message and ``typer.Exit``
    codes pass through.
    """
    try:
        app()
    except CrystalStudioError as exc:
        say("error:", "red", str(exc))
        sys.exit(EXIT_USAGE)
    except sqlite3.DatabaseError as exc:  # a damaged page met by a read (writes check the file first)
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_CORRUPT:
            raise
        from crystal_studio.store.project import damaged

        say("error:", "red", str(damaged(exc)))
        sys.exit(EXIT_USAGE)
    except RunCancelled as exc:
        err.print(f"cancelled; run {exc.run_id} keeps what it recorded "
                  f"(see 'crystal-studio runs PROJECT --show {exc.run_id}')")
        sys.exit(cancelled_exit_code(exc))
    except (Cancelled, KeyboardInterrupt) as exc:
        err.print("cancelled; nothing was written")
        sys.exit(cancelled_exit_code(exc))
