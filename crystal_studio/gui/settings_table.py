"""An editable table of self-describing options (:func:`crystal_studio.core.options.describe_options`).

Used for an optimization method's settings and a model kind's own training settings: one row per
option with its name, its value as text (the default shown) and its help, unit, range and choices as
tooltip. :meth:`SettingsTable.changed` gives only the edited values, as text, for
:func:`crystal_studio.core.options.apply_options` to parse and check.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem, QWidget


def setting_text(value) -> str:
    """An option value as the table shows (and :func:`~crystal_studio.core.options.apply_options` reads) it."""
    if value is None:
        return "auto"
    if isinstance(value, tuple | list):
        return ",".join(f"{v:g}" for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def setting_tooltip(setting: dict, text: str) -> str:
    unit = f" [{setting['unit']}]" if setting.get("unit") else ""
    allowed = f"\none of: {', '.join(setting['choices'])}" if setting.get("choices") else ""
    bounds = [f"≥ {setting['minimum']:g}" if setting.get("minimum") is not None else "",
              f"≤ {setting['maximum']:g}" if setting.get("maximum") is not None else ""]
    bounds_text = f"\nrange: {' and '.join(b for b in bounds if b)}" if any(bounds) else ""
    return f"{setting['help']}{unit}{allowed}{bounds_text}\n(default {text or 'none'})"


class SettingsTable(QTableWidget):
    """Options of a method or model kind: name, editable value (defaults shown), help as tooltip."""

    def __init__(self, parent: QWidget | None = None, object_name: str = "methodSettings"):
        super().__init__(0, 2, parent)
        self.setObjectName(object_name)
        self.setHorizontalHeaderLabels(["Setting", "Value"])
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().setVisible(False)
        self.setMinimumHeight(110)
        self.setMaximumHeight(150)
        self.verticalHeader().setDefaultSectionSize(22)
        self._defaults: dict[str, str] = {}

    def show_options(self, options: list[dict]) -> None:
        """One row per option (``describe_options`` output), values reset to the defaults."""
        self.setRowCount(0)
        self._defaults = {}
        for row, setting in enumerate(options):
            self.insertRow(row)
            name = QTableWidgetItem(setting["name"])
            name.setFlags(name.flags() & ~Qt.ItemFlag.ItemIsEditable)
            text = setting_text(setting["default"])
            value = QTableWidgetItem(text)
            for item in (name, value):
                item.setToolTip(setting_tooltip(setting, text))
            self.setItem(row, 0, name)
            self.setItem(row, 1, value)
            self._defaults[setting["name"]] = text
        self.resizeColumnToContents(0)

    def names(self) -> list[str]:
        return [self.item(row, 0).text() for row in range(self.rowCount())]

    def changed(self) -> dict[str, str]:
        """Settings whose text differs from the default (name → text, parsed by the owner)."""
        out = {}
        for row in range(self.rowCount()):
            name, value = self.item(row, 0).text(), self.item(row, 1).text().strip()
            if value != self._defaults.get(name):
                out[name] = value
        return out

    def set_values(self, values: dict) -> None:
        """Put ``values`` (name → value or text) into the rows of those names."""
        for row in range(self.rowCount()):
            name = self.item(row, 0).text()
            if name in values:
                self.item(row, 1).setText(setting_text(values[name]))
