"""Progress events and cooperative cancellation shared by every long operation.

A long operation takes ``progress`` (a callable receiving :class:`ProgressEvent`) and ``cancel``
(a :class:`CancelToken`); it reports between units of work and calls ``cancel.check()`` there.
The CLI turns events into rich progress bars, the GUI into Qt signals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from crystal_studio.core.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: ``step`` of ``total`` units done (total 0 = unknown).

    ``metrics`` are values to plot and store (e.g. ``val_loss`` after an epoch, ``batch_loss`` after a
    batch); ``position`` places a within-step report on the step axis (e.g. epoch 3 + batch 40/100 =
    3.4); ``run_id`` is set on the event that announces the stored run a job works on, so a window
    can follow the run without asking the store.
    """

    step: int
    total: int = 0
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    position: float | None = None
    run_id: int | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    """A progress callback that ignores everything."""


class CancelToken:
    """A thread-safe flag; workers call :meth:`check` between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled()
