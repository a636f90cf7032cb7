"""Per-element colour and radius dialog: the elements of the shown structure, each with a colour button
and a radius box; changes redraw every open structure view (see :func:`gui.elements.set_element_style`)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.gui.elements import reset_element_styles, set_element_style, style


class ElementStylesDialog(QDialog):
    """Colour and covalent radius (Å, sizing spheres and bonds) of each element in ``symbols``."""

    def __init__(self, symbols: list[str], redraw: Callable[[], None], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Element colours and radii")
        self.redraw = redraw
        self.color_buttons: dict[str, QPushButton] = {}
        self.radius_spins: dict[str, QDoubleSpinBox] = {}
        grid = QGridLayout()
        for column, header in enumerate(("Element", "Colour", "Radius")):
            grid.addWidget(QLabel(f"<b>{header}</b>"), 0, column)
        for row, symbol in enumerate(sorted(set(symbols), key=lambda s: style(s).Z), start=1):
            button = QPushButton()
            button.setToolTip(f"Choose the colour of {symbol}")
            button.clicked.connect(lambda _=False, s=symbol: self._choose_color(s))
            spin = QDoubleSpinBox()
            spin.setRange(0.1, 5.0)
            spin.setDecimals(2)
            spin.setSingleStep(0.05)
            spin.setSuffix(" Å")
            spin.setToolTip(f"Covalent radius of {symbol}: sizes its spheres and which bonds it forms")
            spin.setValue(style(symbol).covalent_radius)
            spin.valueChanged.connect(lambda value, s=symbol: self.set_radius(s, value))
            self.color_buttons[symbol], self.radius_spins[symbol] = button, spin
            self._paint(symbol)
            grid.addWidget(QLabel(symbol), row, 0)
            grid.addWidget(button, row, 1)
            grid.addWidget(spin, row, 2)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(buttons)

    def _paint(self, symbol: str) -> None:
        color = style(symbol).color
        self.color_buttons[symbol].setText(color)
        self.color_buttons[symbol].setStyleSheet(f"background-color: {color};")

    def _choose_color(self, symbol: str) -> None:
        chosen = QColorDialog.getColor(QColor(style(symbol).color), self, f"Colour of {symbol}")
        if chosen.isValid():
            self.set_color(symbol, chosen.name())

    def set_color(self, symbol: str, color: str) -> None:
        """Draw ``symbol`` in ``color`` ('#rrggbb') everywhere."""
        set_element_style(symbol, color=color)
        self._paint(symbol)
        self.redraw()

    def set_radius(self, symbol: str, radius: float) -> None:
        """Give ``symbol`` the covalent radius ``radius`` Å everywhere."""
        set_element_style(symbol, covalent_radius=radius)
        self.redraw()

    def restore_defaults(self) -> None:
        """Back to the colour scheme's colours and the tabulated radii."""
        reset_element_styles()
        for symbol, spin in self.radius_spins.items():
            spin.blockSignals(True)
            spin.setValue(style(symbol).covalent_radius)
            spin.blockSignals(False)
            self._paint(symbol)
        self.redraw()
