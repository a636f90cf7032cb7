"""A table view that stays smooth while a job thread runs Python code.

Painting a table makes hundreds of calls from Qt into the Python model (``data``/``multiData``,
``rowCount``, ``columnCount``, ``headerData``). Each such call must take Python's GIL, and while a job
thread is busy in Python code (parsing a small import, importing torch's lazy modules, an optimizer
loop) every hand-over of the GIL costs up to the interpreter's switch interval (5 ms): a screen of
rows then took seconds to paint (issue 15, docs/benchmarks.md).

The classes here enter every event of the view, its viewport, headers and scroll bars through a
Python override that only calls Qt's own handler: those overrides are the point, not dead code. PySide
keeps the GIL across that call, so the model's calls made while the event is handled find the GIL
held by the GUI thread; it is given up only at the interpreter's usual time slices (every 5 ms of
Python work) instead of before every call. With a thread spinning in Python, one wheel-scroll of the
structures table went from ~1 s (165–218 hand-overs) to 26–57 ms (3–11).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QHeaderView, QScrollBar, QTableView, QWidget


class _HeldHeaderView(QHeaderView):
    """A header whose events (paint, clicks, resizing) are handled under one hold of the GIL; clickable
    and highlighting the selected sections, as ``QTableView``'s own headers are."""

    def __init__(self, orientation: Qt.Orientation, parent: QWidget | None = None):
        super().__init__(orientation, parent)
        self.setSectionsClickable(True)
        self.setHighlightSections(True)

    def event(self, event: QEvent) -> bool:
        return super().event(event)

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        return super().viewportEvent(event)


class _HeldScrollBar(QScrollBar):
    """A scroll bar whose events (dragging the handle, clicks, wheel) are handled under one hold of the GIL."""

    def event(self, event: QEvent) -> bool:
        return super().event(event)


class ResponsiveTableView(QTableView):
    """``QTableView`` whose paint, scroll, keyboard and mouse handling holds the GIL from start to end
    (see the module docstring); otherwise the same widget."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setHorizontalHeader(_HeldHeaderView(Qt.Orientation.Horizontal, self))
        self.setVerticalHeader(_HeldHeaderView(Qt.Orientation.Vertical, self))
        self.setVerticalScrollBar(_HeldScrollBar(Qt.Orientation.Vertical, self))
        self.setHorizontalScrollBar(_HeldScrollBar(Qt.Orientation.Horizontal, self))

    def event(self, event: QEvent) -> bool:
        return super().event(event)

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        return super().viewportEvent(event)
