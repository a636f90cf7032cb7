"""Element display data (colours, radii, periodic-table position) from resources/elements.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from crystal_studio.core.paths import RESOURCES

ELEMENTS_JSON = RESOURCES / "elements.json"


@dataclass(frozen=True)
class ElementStyle:
    """How one element is drawn: Jmol colour, radii in Å and its periodic-table cell (1-based)."""

    symbol: str
    Z: int
    name: str
    color: str  # '#rrggbb'
    covalent_radius: float
    atomic_radius: float
    row: int
    column: int

    @property
    def rgb(self) -> tuple[float, float, float]:
        """Colour as three floats in [0, 1]."""
        return tuple(int(self.color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))

    @property
    def rgb255(self) -> tuple[int, int, int]:
        """Colour as three ints in [0, 255]."""
        return tuple(int(self.color[i:i + 2], 16) for i in (1, 3, 5))


@cache
def element_table() -> dict[str, ElementStyle]:
    """Every element by symbol, in order of atomic number."""
    data = json.loads(ELEMENTS_JSON.read_text(encoding="utf-8"))
    return {symbol: ElementStyle(symbol=symbol, **entry) for symbol, entry in data.items()}


def style(symbol: str) -> ElementStyle:
    """Style of ``symbol``; unknown symbols (e.g. dummy species) get a neutral pink sphere."""
    table = element_table()
    if symbol in table:
        return table[symbol]
    return ElementStyle(symbol, 0, symbol, "#ff1493", 1.5, 1.5, 0, 0)
