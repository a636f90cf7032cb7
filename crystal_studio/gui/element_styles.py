"""Dialogs for how elements are drawn: per-element colour and radius (every open view redraws, see
:func:`gui.elements.set_element_style`) and the longest bond per element pair of one view."""

from __future__ import annotations

import itertools
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


AUTO_BOND = 0.0  # a pair's length box at this value: bonds follow the covalent radii + tolerance rule


class BondLengthsDialog(QDialog):
    """The longest bond (Å) of every element pair of ``symbols``; 'auto' keeps the radii rule and a
    length under 0.1 Å draws no bonds for that pair. ``apply`` receives {(A, B): length} on each change."""

    def __init__(self, symbols: list[str], lengths: dict[tuple[str, str], float],
                 apply: Callable[[dict[tuple[str, str], float]], None], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Bond lengths per element pair")
        self.apply = apply
        self.spins: dict[tuple[str, str], QDoubleSpinBox] = {}
        elements = sorted(set(symbols), key=lambda s: style(s).Z)
        grid = QGridLayout()
        grid.addWidget(QLabel("<b>Pair</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Longest bond</b>"), 0, 1)
        for row, (a, b) in enumerate(itertools.combinations_with_replacement(elements, 2), start=1):
            pair = tuple(sorted((a, b)))
            spin = QDoubleSpinBox()
            spin.setRange(AUTO_BOND, 10.0)
            spin.setDecimals(2)
            spin.setSingleStep(0.05)
            spin.setSuffix(" Å")
            spin.setSpecialValueText("auto (radii)")
            spin.setMinimumWidth(130)
            spin.setToolTip(f"Longest {a}–{b} bond drawn; 'auto' follows the covalent radii, under 0.1 Å draws none")
            spin.setValue(lengths.get(pair, AUTO_BOND))
            spin.valueChanged.connect(lambda _value: self.apply(self.lengths()))
            self.spins[pair] = spin
            grid.addWidget(QLabel(f"{a}–{b}"), row, 0)
            grid.addWidget(spin, row, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(buttons)

    def lengths(self) -> dict[tuple[str, str], float]:
        """The pairs given a length (not 'auto'), alphabetical symbol pair → Å."""
        return {pair: spin.value() for pair, spin in self.spins.items() if spin.value() != AUTO_BOND}
