"""Run a long operation in the terminal with a rich progress bar on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent

T = TypeVar("T")


def run_with_progress(title: str, work: Callable[[ProgressCallback, CancelToken], T], quiet: bool = False) -> T:
    """Call ``work(progress, cancel)`` showing its progress events as a bar on stderr.

    Ctrl-C cancels: the token is set and the KeyboardInterrupt propagates, so transactions roll back.
    """
    cancel = CancelToken()
    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[message]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task(title, total=None, message="")

        def progress(event: ProgressEvent) -> None:
            bar.update(task, completed=event.step, total=event.total or None, message=event.message)

        try:
            return work(progress, cancel)
        except KeyboardInterrupt:
            cancel.cancel()
            raise
