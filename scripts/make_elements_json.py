"""Generate resources/elements.json: per-element display data for the GUI.

For every element H..Og: atomic number, name, Jmol colour (from pymatgen's colour schemes, #rrggbb),
covalent radius (Å, Cordero et al. 2008 via ASE), atomic radius (Å, pymatgen; covalent radius where
unknown) and the (row, column) of its cell in an 18-column periodic table with lanthanides and
actinides on rows 9 and 10 (1-based).

Usage:  python scripts/make_elements_json.py
"""

from __future__ import annotations

import json
from pathlib import Path

from ase.data import covalent_radii
from pymatgen.core import Element
from pymatgen.vis.structure_vtk import EL_COLORS

OUT = Path(__file__).resolve().parent.parent / "resources" / "elements.json"
FALLBACK_COLOR = (255, 20, 147)  # Jmol's colour for unknown elements


def table_position(el: Element) -> tuple[int, int]:
    """(row, column) of ``el`` in the display periodic table, 1-based."""
    if 57 <= el.Z <= 71:
        return 9, 3 + el.Z - 57
    if 89 <= el.Z <= 103:
        return 10, 3 + el.Z - 89
    return el.row, el.group


def main() -> None:
    elements = {}
    for el in Element:
        if el.Z > 118:
            continue
        rgb = EL_COLORS["Jmol"].get(el.symbol, FALLBACK_COLOR)
        covalent = float(covalent_radii[el.Z])
        atomic = el.atomic_radius
        row, col = table_position(el)
        elements[el.symbol] = {
            "Z": el.Z,
            "name": el.long_name,
            "color": "#{:02x}{:02x}{:02x}".format(*rgb),
            "covalent_radius": round(covalent, 3),
            "atomic_radius": round(float(atomic), 3) if atomic is not None else round(covalent, 3),
            "row": row,
            "column": col,
        }
    ordered = dict(sorted(elements.items(), key=lambda kv: kv[1]["Z"]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(ordered, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(ordered)} elements to {OUT}")


if __name__ == "__main__":
    main()
