"""A periodic-table element picker for composition filters.

Clicking an element cycles it through three states: neutral → *required* (green, the structure must
contain it) → *excluded* (red, it must not) → neutral. :class:`ElementFilterButton` puts the table in
a popup behind one button that summarizes the choice.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.gui.elements import element_table

NEUTRAL, REQUIRED, EXCLUDED = 0, 1, 2
_STATE_STYLE = {
    NEUTRAL: "",
    REQUIRED: "background-color: #2e9d4f; color: white; font-weight: bold;",
    EXCLUDED: "background-color: #c8423a; color: white; text-decoration: line-through;",
}


class PeriodicTableWidget(QWidget):
    """18-column periodic table of tri-state element buttons; emits :attr:`changed` on every click."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setSpacing(2)
        self.buttons: dict[str, QToolButton] = {}
        self._state: dict[str, int] = {}
        for symbol, el in element_table().items():
            if el.Z > 103:
                continue
            button = QToolButton()
            button.setText(symbol)
            button.setToolTip(f"{el.name} (Z = {el.Z})")
            button.setFixedSize(QSize(34, 28))
            button.clicked.connect(lambda _=False, s=symbol: self.cycle(s))
            grid.addWidget(button, el.row, el.column)  # f-block on rows 9-10, row 8 stays blank
            self.buttons[symbol] = button
            self._state[symbol] = NEUTRAL
        grid.setRowMinimumHeight(8, 8)
        legend = QLabel("Click: <span style='color:#2e9d4f'><b>must contain</b></span> → "
                        "<span style='color:#c8423a'><b>must not contain</b></span> → either")
        grid.addWidget(legend, 11, 1, 1, 18)

    def state(self, symbol: str) -> int:
        return self._state[symbol]

    def set_state(self, symbol: str, state: int) -> None:
        """Set ``symbol`` to NEUTRAL, REQUIRED or EXCLUDED."""
        self._state[symbol] = state
        self.buttons[symbol].setStyleSheet(_STATE_STYLE[state])
        self.changed.emit()

    def cycle(self, symbol: str) -> None:
        """Advance ``symbol`` to its next state (what a click does)."""
        self.set_state(symbol, (self._state[symbol] + 1) % 3)

    def required(self) -> list[str]:
        return [s for s, v in self._state.items() if v == REQUIRED]

    def excluded(self) -> list[str]:
        return [s for s, v in self._state.items() if v == EXCLUDED]

    def set_selection(self, required: list[str], excluded: list[str]) -> None:
        """Replace the whole choice."""
        for symbol in self._state:
            state = REQUIRED if symbol in required else EXCLUDED if symbol in excluded else NEUTRAL
            self._state[symbol] = state
            self.buttons[symbol].setStyleSheet(_STATE_STYLE[state])
        self.changed.emit()


def describe_elements(required: list[str], excluded: list[str]) -> str:
    """Short summary of an element choice, e.g. 'with O; without Pb, Cd'."""
    parts = []
    if required:
        parts.append("with " + ", ".join(required))
    if excluded:
        parts.append("without " + ", ".join(excluded))
    return "; ".join(parts) or "Any elements"


class PeriodicTableDialog(QDialog):
    """The periodic table with OK/Clear/Cancel."""

    def __init__(self, required: list[str], excluded: list[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Filter by elements")
        layout = QVBoxLayout(self)
        self.table = PeriodicTableWidget()
        self.table.set_selection(required, excluded)
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.Reset)
        buttons.button(QDialogButtonBox.StandardButton.Reset).setText("Clear")
        buttons.button(QDialogButtonBox.StandardButton.Reset).clicked.connect(
            lambda: self.table.set_selection([], []))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class ElementFilterButton(QPushButton):
    """A button showing the element choice; clicking opens the periodic table. Emits :attr:`changed`."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.required: list[str] = []
        self.excluded: list[str] = []
        self.setToolTip("Filter by elements (periodic table)")
        self.clicked.connect(self.open_picker)
        self._update_text()

    def open_picker(self) -> None:
        dialog = PeriodicTableDialog(self.required, self.excluded, self)
        dialog.accepted.connect(lambda: self.set_elements(dialog.table.required(), dialog.table.excluded()))
        dialog.open()

    def set_elements(self, required: list[str], excluded: list[str]) -> None:
        """Set the choice and emit :attr:`changed`."""
        self.required, self.excluded = list(required), list(excluded)
        self._update_text()
        self.changed.emit()

    def _update_text(self) -> None:
        text = describe_elements(self.required, self.excluded)
        self.setText(text if len(text) < 40 else text[:37] + "…")
        self.setToolTip(f"Filter by elements (periodic table): {text}")
