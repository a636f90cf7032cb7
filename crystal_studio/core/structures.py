"""Structure checks, derived quantities and the compact JSON form stored in projects.

Lengths are Å, volumes Å³, densities g/cm³.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("SPGLIB_WARNING", "OFF")  # spglib prints search failures to stderr otherwise
import spglib  # noqa: E402
from pymatgen.core import Element, Lattice, Structure  # noqa: E402
from pymatgen.core.periodic_table import get_el_sp  # noqa: E402

# Same defaults as pymatgen's SpacegroupAnalyzer, so results agree with it.
SYMPREC = 0.01  # Å
ANGLE_TOLERANCE = 5.0  # degrees
MIN_DISTANCE = 0.5  # Å; closer atoms make a structure physically invalid
MAX_CELL_EDGE = 1e4  # Å; longer lattice vectors are not a crystal cell (and overflow volumes, densities)
MIN_CELL_EDGE = 0.1  # Å; a shorter reduced lattice vector puts every atom on top of its own periodic image
_AVOGADRO_FACTOR = 1.66053906660  # (g/mol)/Å³ -> g/cm³

_MASS = {el.Z: float(el.atomic_mass) for el in Element}


@dataclass
class StructureInfo:
    """Derived, queryable facts about one structure."""

    formula: str
    reduced_formula: str
    elements: list[str]
    nsites: int
    spacegroup_number: int | None
    spacegroup_symbol: str | None
    volume: float  # Å³ per cell
    density: float  # g/cm³
    min_distance: float  # Å, over periodic images
    valid: bool
    flags: list[str] = field(default_factory=list)


def element_mask(elements: list[str]) -> tuple[int, int]:
    """Two 60-bit integers with bit Z-1 (first, Z ≤ 60) or Z-61 (second) set for each element."""
    low = high = 0
    for symbol in elements:
        z = Element(symbol).Z
        if z <= 60:
            low |= 1 << (z - 1)
        else:
            high |= 1 << (z - 61)
    return low, high


def spglib_cell(structure: Structure) -> tuple:
    return (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])


def spacegroup(structure: Structure) -> tuple[int | None, str | None]:
    """International space-group number and symbol from spglib (None when spglib finds none)."""
    with warnings.catch_warnings():  # spglib 2.5+ warns about its legacy None-on-failure handling
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = spglib.get_symmetry_dataset(spglib_cell(structure), symprec=SYMPREC, angle_tolerance=ANGLE_TOLERANCE)
    if dataset is None:
        return None, None
    return int(dataset.number), str(dataset.international)


@dataclass
class WyckoffSite:
    """One symmetrically distinct site: element, Wyckoff position (multiplicity + letter, e.g. '3c'),
    site symmetry (Hermann–Mauguin) and the fractional coordinates of its first atom."""

    element: str
    wyckoff: str
    site_symmetry: str
    frac: tuple[float, float, float]


@dataclass
class SymmetryReport:
    """Space group, distinct sites and symmetry operations (as x,y,z strings) of a structure."""

    number: int
    symbol: str
    sites: list[WyckoffSite]
    operations: list[str]


def symmetry_report(structure: Structure, symprec: float = SYMPREC) -> SymmetryReport | None:
    """The Wyckoff positions and symmetry operations spglib finds with tolerance ``symprec`` (Å), or
    None when it finds none."""
    from pymatgen.core.operations import SymmOp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = spglib.get_symmetry_dataset(spglib_cell(structure), symprec=symprec, angle_tolerance=ANGLE_TOLERANCE)
    if data is None:
        return None
    sites = []
    to_conventional = len(data.std_types) / len(structure)  # Wyckoff multiplicities count the conventional cell
    for index in sorted(set(int(k) for k in data.equivalent_atoms)):
        multiplicity = round(int(np.sum(data.equivalent_atoms == index)) * to_conventional)
        sites.append(WyckoffSite(structure[index].specie.symbol, f"{multiplicity}{data.wyckoffs[index]}",
                                 str(data.site_symmetry_symbols[index]).strip(),
                                 tuple(float(x) for x in structure[index].frac_coords)))
    operations = [SymmOp.from_rotation_and_translation(r, np.round(t, 6)).as_xyz_str()
                  for r, t in zip(data.rotations, data.translations, strict=True)]
    return SymmetryReport(int(data.number), str(data.international), sites, operations)


CELL_SETTINGS = ("stored", "primitive", "conventional")


def standard_cell(structure: Structure, setting: str, symprec: float = SYMPREC) -> Structure:
    """``structure`` in the standard ``setting`` of its space group found with tolerance ``symprec``
    (Å): "primitive" or "conventional" (pymatgen's standard cells, as in the Materials Project), or
    "stored" (unchanged). Raises ValueError when spglib finds no symmetry at this tolerance."""
    if setting not in CELL_SETTINGS:
        raise ValueError(f"cell setting must be one of {', '.join(CELL_SETTINGS)}, not '{setting}'")
    if setting == "stored":
        return structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=ANGLE_TOLERANCE)
            if setting == "primitive":
                return analyzer.get_primitive_standard_structure()
            return analyzer.get_conventional_standard_structure()
        except Exception as exc:  # spglib's failure surfaces as several exception types across versions
            raise ValueError(f"no symmetry found at symprec {symprec:g} Å ({exc})") from None


NEIGHBOUR_SEARCH_RADIUS = 3.0  # Å; first radius searched for the closest pair, doubled until one is found
PAIRWISE_MAX_SITES = 256  # up to this many atoms the closest pair is found from all minimum-image pairs


def min_periodic_distance(structure: Structure) -> float:
    """Smallest distance (Å) between two atoms, periodic images included (an atom and its own image
    count: a one-atom cell gives its shortest lattice vector).

    Works on the LLL-reduced cell, so a skewed cell neither hides a short image nor multiplies the images
    searched. Up to :data:`PAIRWISE_MAX_SITES` atoms every minimum-image pair is measured (memory
    ~ N² · 27 images); larger cells use pymatgen's neighbour list, whose work grows with the number of
    atoms, not its square. (The neighbour list bins the whole cell in boxes of the search radius, so a
    small cell that is a needle or a sheet — 0.6 × 10⁴ × 10⁴ Å took a minute, 10⁻⁷ Å ran out of
    memory — would be slow; the pairwise search is not.) The neighbour-list radius starts at
    :data:`NEIGHBOUR_SEARCH_RADIUS` and never exceeds the shortest reduced lattice vector, where a pair
    always exists.
    """
    if structure.lattice.volume <= 0:
        return 0.0
    shortest = float(min(structure.lattice.get_lll_reduced_lattice().abc))  # an atom's own image is this far
    if len(structure) <= PAIRWISE_MAX_SITES:
        if len(structure) == 1:
            return shortest
        frac = structure.frac_coords  # pymatgen searches the minimum images on the lattice's (cached) LLL basis
        distances = structure.lattice.get_all_distances(frac, frac)
        np.fill_diagonal(distances, np.inf)
        return float(min(distances.min(), shortest))
    reduced = structure.get_reduced_structure("LLL")
    radius = min(NEIGHBOUR_SEARCH_RADIUS, shortest)
    while True:
        distances = reduced.get_neighbor_list(radius, numerical_tol=1e-8)[3]
        if len(distances) or radius >= shortest:
            return float(distances.min(initial=shortest))
        radius = min(2 * radius, shortest)


def describe(structure: Structure, close_atoms_tolerance: float = MIN_DISTANCE) -> StructureInfo:
    """Compute the derived columns and validity flags of a structure already checked by
    :func:`check_structure`."""
    comp = structure.composition
    numbers = [site.specie.Z for site in structure]
    mass = sum(_MASS[z] for z in numbers)
    volume = float(structure.lattice.volume)
    dmin = min_periodic_distance(structure)
    flags = []
    if dmin < close_atoms_tolerance:
        flags.append(f"atoms {dmin:.3f} Å apart (< {close_atoms_tolerance} Å)")
    number, symbol = spacegroup(structure)
    return StructureInfo(
        formula=comp.formula,
        reduced_formula=comp.reduced_formula,
        elements=sorted({el.symbol for el in comp.elements}, key=lambda s: Element(s).X),
        nsites=len(structure),
        spacegroup_number=number,
        spacegroup_symbol=symbol,
        volume=volume,
        density=mass / volume * _AVOGADRO_FACTOR,
        min_distance=dmin,
        valid=not flags,
        flags=flags,
    )


def check_structure(structure: Structure, ordered_approximation: bool = False) -> Structure:
    """Return a structure fit for storing, or raise ValueError with the reason.

    Rejects NaN/inf lattice or coordinates, lattice vectors longer than :data:`MAX_CELL_EDGE`, zero or
    negative cell volume, cells whose shortest LLL-reduced vector is under :data:`MIN_CELL_EDGE` and partial
    occupancies
    (unless ``ordered_approximation``: then each site keeps its majority species and sites less than
    half occupied are dropped).
    """
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)):
        raise ValueError("lattice contains NaN or infinite values")
    if not np.all(np.isfinite(structure.frac_coords)):
        raise ValueError("atomic coordinates contain NaN or infinite values")
    longest = float(np.hypot.reduce(matrix, axis=1).max())  # hypot: no overflow for 1e200 Å
    if longest > MAX_CELL_EDGE:
        raise ValueError(f"lattice vector of {longest:.3g} Å, over the {MAX_CELL_EDGE:g} Å limit of a crystal cell")
    det = float(np.linalg.det(matrix))
    if det <= 1e-6:
        raise ValueError(f"cell volume is {det:.4g} Å³ (must be positive)")
    if len(structure) == 0:
        raise ValueError("structure has no atoms")
    shortest = float(min(structure.lattice.get_lll_reduced_lattice().abc))
    if shortest < MIN_CELL_EDGE:
        raise ValueError(f"shortest lattice vector is {shortest:.3g} Å (after reduction), under the {MIN_CELL_EDGE:g} Å "
                         "of any crystal cell: every atom would sit on its own periodic image")
    if structure.is_ordered:
        return structure
    disordered = [i for i, site in enumerate(structure) if not site.is_ordered]
    if not ordered_approximation:
        site = structure[disordered[0]]
        return _raise_partial(site, len(disordered))
    species, coords = [], []
    for site in structure:
        occupant, occupancy = max(site.species.items(), key=lambda kv: kv[1])
        if site.species.num_atoms >= 0.5 - 1e-8 and occupancy > 0:
            species.append(occupant)
            coords.append(site.frac_coords)
    if not species:
        raise ValueError("no site is at least half occupied")
    return Structure(structure.lattice, species, coords)


def _raise_partial(site, count: int):
    raise ValueError(
        f"partial occupancy ({site.species.formula} on {count} site(s)); import with the ordered "
        "approximation option to keep the majority species"
    )


def to_json(structure: Structure) -> str:
    """Compact JSON of a structure: lattice matrix (Å), species strings, fractional coordinates,
    and site properties when present."""
    doc = {
        "lattice": np.round(structure.lattice.matrix, 10).tolist(),
        "species": [str(site.specie) for site in structure],
        "frac_coords": np.round(structure.frac_coords, 10).tolist(),
    }
    if structure.site_properties:
        doc["site_properties"] = {
            k: [v.tolist() if isinstance(v, np.ndarray) else v for v in vals]
            for k, vals in structure.site_properties.items()
        }
    return json.dumps(doc, default=float)


def from_json(text: str) -> Structure:
    """Inverse of :func:`to_json`; also accepts pymatgen's own ``Structure.as_dict`` JSON."""
    doc = json.loads(text)
    if "@class" in doc or "sites" in doc:
        return Structure.from_dict(doc)
    return Structure(
        Lattice(doc["lattice"]),
        [get_el_sp(s) for s in doc["species"]],
        doc["frac_coords"],
        site_properties=doc.get("site_properties"),
    )
