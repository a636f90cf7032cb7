"""PySide6 6.12.0 took a reference from ``True`` on every Python-side ``emit()`` and aborted the
interpreter after a few hundred emits ("bool_dealloc"); pyproject.toml excludes that release. This
guards against installing a build with the same leak."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    changed = Signal(bool)


def test_many_python_emits_do_not_leak_references():
    emitter = _Emitter()
    seen = []
    emitter.changed.connect(seen.append)
    before = sys.getrefcount(True)
    for k in range(5000):
        emitter.changed.emit(k % 2 == 0)
    assert len(seen) == 5000 and seen[:2] == [True, False]
    seen.clear()
    assert abs(sys.getrefcount(True) - before) < 100
