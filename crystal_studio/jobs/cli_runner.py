"""Run a long operation in the terminal with a rich progress bar on stderr."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from crystal_studio.core.errors import Cancelled, Terminated
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent

T = TypeVar("T")


class RunCancelled(Cancelled):
    """Ctrl-C or SIGTERM ended a job after it announced stored run ``run_id`` (which says what it kept)."""

    def __init__(self, run_id: int, terminated: bool = False):
        super().__init__(f"run {run_id} cancelled")
        self.run_id = run_id
        self.terminated = terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM raises :class:`Terminated`, so a job stopped by
    ``kill`` or a batch scheduler ends as a Ctrl-C does instead of leaving its run 'running'."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_with_progress(title: str, work: Callable[[ProgressCallback, CancelToken], T], quiet: bool = False) -> T:
    """Call ``work(progress, cancel)`` showing its progress events as a bar on stderr.

    Ctrl-C (or SIGTERM) cancels: the token is set and the KeyboardInterrupt propagates, so transactions
    roll back; once the job has announced its stored run it propagates as :class:`RunCancelled` naming
    that run.
    """
    cancel = CancelToken()
    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[message]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task(title, total=None, message="")
        run_id: int | None = None

        def progress(event: ProgressEvent) -> None:
            nonlocal run_id
            run_id = event.run_id or run_id
            bar.update(task, completed=event.step, total=event.total or None, message=event.message)

        try:
            with sigterm_as_interrupt():
                return work(progress, cancel)
        except KeyboardInterrupt as exc:
            cancel.cancel()
            if run_id is None:
                raise
            raise RunCancelled(run_id, terminated=isinstance(exc, Terminated)) from None
