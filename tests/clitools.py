"""Running the command line from tests, in one place.

:func:`run_cli` starts ``crystal-studio`` as a user does (a separate process, real exit codes, real
signals), with a deadline so a hang fails the test; :func:`invoke_cli` runs it in this process (fast,
for output shapes). Both fail the test on a traceback: the command line never shows one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

WIDE = {"COLUMNS": "400"}  # rich tables keep whole lines


def run_cli(*args, timeout: float = 300, prefix: Sequence[str] = (), stdin=subprocess.DEVNULL,
            env: Mapping[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    """``crystal-studio ARGS`` as a separate process (after ``prefix``, e.g. a namespace wrapper),
    within ``timeout`` seconds; ``env`` adds to this process's environment. Arguments may be paths,
    numbers or bytes-like file names."""
    result = subprocess.run([*prefix, sys.executable, "-m", "crystal_studio", *map(os.fsdecode, map(_arg, args))],
                            capture_output=True, text=True, errors="replace", timeout=timeout, stdin=stdin,
                            env={**os.environ, **env} if env else None, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def invoke_cli(*args, json_exit_codes: tuple[int, ...] = (0,)) -> tuple[int, dict | None, str]:
    """``crystal-studio ARGS`` in this process: (exit code, the --json document when the exit code is
    one of ``json_exit_codes``, stdout + stderr). An exception other than the exit is re-raised."""
    from typer.testing import CliRunner

    from crystal_studio.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=WIDE)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    doc = json.loads(result.stdout) if "--json" in args and result.exit_code in json_exit_codes else None
    return result.exit_code, doc, result.stdout + result.stderr


def _arg(value):
    return value if isinstance(value, (bytes, os.PathLike)) else str(value)
