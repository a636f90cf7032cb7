"""Element display data (colours, radii, periodic-table position) from resources/elements.json, with
the atom colours of a selectable scheme: VESTA's (default) or Jmol's, as pymatgen ships them."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from crystal_studio.core.paths import RESOURCES

ELEMENTS_JSON = RESOURCES / "elements.json"
COLOR_SCHEMES = ("VESTA", "Jmol")
"""Atom colour schemes (pymatgen's ElementColorSchemes.yaml): VESTA tells F, Mg, Ca and Be apart,
Jmol draws them all green."""
_current = {"scheme": COLOR_SCHEMES[0]}


@dataclass(frozen=True)
class ElementStyle:
    """How one element is drawn: colour of the current scheme, radii in Å and its periodic-table cell (1-based)."""

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


def color_scheme() -> str:
    """The atom colour scheme in use (one of :data:`COLOR_SCHEMES`)."""
    return _current["scheme"]


def set_color_scheme(name: str) -> None:
    """Colour atoms by scheme ``name`` from now on (views redraw to show it)."""
    if name not in COLOR_SCHEMES:
        raise ValueError(f"unknown colour scheme {name!r} (choose {', '.join(COLOR_SCHEMES)})")
    _current["scheme"] = name


@cache
def element_table(scheme: str = COLOR_SCHEMES[0]) -> dict[str, ElementStyle]:
    """Every element by symbol, in order of atomic number, coloured by ``scheme`` (elements the scheme
    lacks keep the colour of resources/elements.json)."""
    data = json.loads(ELEMENTS_JSON.read_text(encoding="utf-8"))
    colors = _scheme_colors(scheme)
    table = {symbol: ElementStyle(symbol=symbol, **entry) for symbol, entry in data.items()}
    return {symbol: replace(s, color="#{:02x}{:02x}{:02x}".format(*colors[symbol])) if symbol in colors else s
            for symbol, s in table.items()}


@cache
def _scheme_colors(scheme: str) -> dict[str, list[int]]:
    import pymatgen.core
    from monty.serialization import loadfn

    return loadfn(Path(pymatgen.core.__file__).parent / "ElementColorSchemes.yaml")[scheme]


_overrides: dict[str, dict[str, object]] = {}  # the user's colour ('#rrggbb') and radii (Å) per element


def set_element_style(symbol: str, color: str | None = None, covalent_radius: float | None = None) -> None:
    """Draw ``symbol`` with ``color`` ('#rrggbb') and/or ``covalent_radius`` (Å, which sizes its
    ball-and-stick sphere and its bonds) instead of the scheme's, in every view from now on."""
    changes: dict[str, object] = {}
    if color is not None:
        if len(color) != 7 or color[0] != "#" or any(c not in "0123456789abcdefABCDEF" for c in color[1:]):
            raise ValueError(f"colour must be '#rrggbb', not {color!r}")
        changes["color"] = color.lower()
    if covalent_radius is not None:
        if not 0.1 <= covalent_radius <= 5.0:
            raise ValueError(f"radius must be within 0.1–5 Å, not {covalent_radius}")
        changes["covalent_radius"] = float(covalent_radius)
    _overrides.setdefault(symbol, {}).update(changes)


def reset_element_styles() -> None:
    """Forget every :func:`set_element_style` change."""
    _overrides.clear()


def style(symbol: str) -> ElementStyle:
    """Style of ``symbol`` in the current colour scheme with the user's changes; unknown symbols (e.g.
    dummy species) get a neutral pink sphere."""
    table = element_table(color_scheme())
    base = table[symbol] if symbol in table else ElementStyle(symbol, 0, symbol, "#ff1493", 1.5, 1.5, 0, 0)
    changes = _overrides.get(symbol)
    return replace(base, **changes) if changes else base
