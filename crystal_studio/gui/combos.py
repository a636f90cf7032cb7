"""Refilling a combo box from the project without losing the user's choice."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox


def refill_combo(combo: QComboBox, items: list[tuple[str, object]]) -> None:
    """Replace ``combo``'s (text, data) items, keeping the current data chosen when it is still offered
    (else the first item); emits ``currentIndexChanged`` only when the chosen data changed."""
    current = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    for text, data in items:
        combo.addItem(text, data)
    combo.setCurrentIndex(max(combo.findData(current), 0) if combo.count() else -1)
    combo.blockSignals(False)
    if combo.currentData() != current:
        combo.currentIndexChanged.emit(combo.currentIndex())
