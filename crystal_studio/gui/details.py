"""Detail pane of one structure: lattice, cell, space group, Wyckoff positions, symmetry operations,
composition and properties."""

from __future__ import annotations

import html

from pymatgen.core import Structure
from PySide6.QtWidgets import QTextBrowser, QWidget

from crystal_studio.core import structures as cs
from crystal_studio.core.properties import unit_of
from crystal_studio.gui.elements import style


def _row(label: str, value: str) -> str:
    return f"<tr><td style='color:#666;padding-right:10px'>{label}</td><td>{value}</td></tr>"


def structure_details_html(row: dict, structure: Structure) -> str:
    """HTML summary of a structure and its store row (ids, properties, flags)."""
    lat = structure.lattice
    comp = structure.composition
    title = html.escape(row.get("reduced_formula") or comp.reduced_formula)
    parts = [f"<h3 style='margin-bottom:2px'>{title}</h3>",
             f"<div style='color:#666'>id {row.get('id')} · {html.escape(str(row.get('dataset', '')))}"
             f"{' · ' + html.escape(row['name']) if row.get('name') else ''}</div>"]
    parts.append("<h4>Lattice</h4><table>")
    parts.append(_row("a, b, c", f"{lat.a:.4f}, {lat.b:.4f}, {lat.c:.4f} Å"))
    parts.append(_row("α, β, γ", f"{lat.alpha:.3f}°, {lat.beta:.3f}°, {lat.gamma:.3f}°"))
    parts.append(_row("Volume", f"{lat.volume:.3f} Å³ ({lat.volume / len(structure):.3f} Å³/atom)"))
    parts.append(_row("Density", f"{structure.density:.4f} g/cm³"))
    number, symbol = row.get("spacegroup_number"), row.get("spacegroup_symbol")
    parts.append(_row("Space group", f"{html.escape(symbol)} (No. {number})" if number else "not determined"))
    parts.append(_row("Sites", str(len(structure))))
    parts.append("</table>")
    parts.append(_symmetry_html(structure))
    parts.append("<h4>Composition</h4><table>")
    for el, amount in sorted(comp.element_composition.items(), key=lambda kv: kv[0].Z):
        color = style(el.symbol).color
        swatch = f"<span style='color:{color};font-size:14pt'>●</span>"
        parts.append(_row(f"{swatch} {el.symbol}", f"{amount:g} ({comp.get_atomic_fraction(el) * 100:.1f} at.%)"))
    parts.append("</table>")
    props = row.get("properties") or {}
    parts.append("<h4>Properties</h4>")
    if props:
        parts.append("<table>")
        for name, value in sorted(props.items()):
            parts.append(_row(html.escape(name), f"{value:.6g} {html.escape(unit_of(name))}"))
        parts.append("</table>")
    else:
        parts.append("<div style='color:#666'>none</div>")
    if row.get("flags"):
        parts.append("<h4>Flags</h4><div style='color:#b5651d'>"
                     + "<br>".join(html.escape(f) for f in row["flags"]) + "</div>")
    return "".join(parts)


SHOWN_OPERATIONS = 12  # symmetry operations listed in full; the rest are counted


def _symmetry_html(structure: Structure) -> str:
    """Wyckoff positions of the distinct sites and the symmetry operations (spglib, symprec 0.01 Å)."""
    report = cs.symmetry_report(structure)
    if report is None:
        return "<h4>Symmetry</h4><div style='color:#666'>spglib found no symmetry at 0.01 Å</div>"
    parts = ["<h4>Wyckoff positions</h4><table>",
             "<tr style='color:#666'><td>atom</td><td>Wyckoff</td><td>site sym.</td><td>x y z</td></tr>"]
    for site in report.sites:
        x, y, z = site.frac
        parts.append(f"<tr><td>{html.escape(site.element)}</td><td>{html.escape(site.wyckoff)}</td>"
                     f"<td>{html.escape(site.site_symmetry)}</td>"
                     f"<td style='white-space:nowrap'>{x + 0.0:.4g} {y + 0.0:.4g} {z + 0.0:.4g}</td></tr>")
    parts.append("</table>")
    ops = report.operations
    listed = "<br>".join(f"{k + 1}. {html.escape(op)}" for k, op in enumerate(ops[:SHOWN_OPERATIONS]))
    more = f"<br><span style='color:#666'>… and {len(ops) - SHOWN_OPERATIONS} more</span>" if len(
        ops) > SHOWN_OPERATIONS else ""
    parts.append(f"<h4>Symmetry operations ({len(ops)})</h4><div style='font-family:monospace'>{listed}{more}</div>")
    return "".join(parts)


class StructureDetails(QTextBrowser):
    """Read-only HTML view of the selected structure."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenExternalLinks(False)
        self.clear_structure()

    def show_structure(self, row: dict, structure: Structure) -> None:
        self.setHtml(structure_details_html(row, structure))

    def clear_structure(self) -> None:
        self.setHtml("<div style='color:#888'>Select a structure in the table to see its details.</div>")
