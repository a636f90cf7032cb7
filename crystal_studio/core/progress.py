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
    """One progress report: ``step`` of ``total`` units done (total 0 = unknown)."""

    step: int
    total: int = 0
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


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
