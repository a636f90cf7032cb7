"""Geometry of a drawn crystal, independent of any rendering library.

:func:`build_scene` expands a structure into what the viewer draws: the atoms of a supercell, the
periodic images of atoms lying on cell faces, edges and corners, the bonds between drawn atoms, the
half bonds from drawn atoms to bonded atoms beyond the box (as VESTA draws them) and the cell box. :func:`pick_atom` finds the atom under a mouse ray.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Element, Structure
from scipy.spatial import cKDTree

from crystal_studio.gui.elements import style

BOUNDARY_EPS = 1e-3  # fractional distance from a cell face that counts as "on" it
DEFAULT_BOND_TOLERANCE = 0.3  # Å added to the sum of covalent radii
MIN_BOND_LENGTH = 0.1  # Å; closer pairs are overlapping atoms, not bonds


@dataclass
class Scene:
    """Atoms, bonds and cell of one drawn crystal (all lengths in Å, Cartesian)."""

    positions: np.ndarray  # (N, 3)
    symbols: list[str]  # N element symbols
    site_index: np.ndarray  # (N,) index of the site in the original structure
    frac: np.ndarray  # (N, 3) fractional coordinates in the original cell (may exceed 1 in supercells)
    is_image: np.ndarray  # (N,) True for the extra copies drawn on the far faces/edges/corners
    bonds: np.ndarray  # (M, 2) indices into positions
    stub_atoms: np.ndarray  # (K,) drawn atoms bonded to an atom beyond the box, one entry per such bond
    stub_ends: np.ndarray  # (K, 3) Å: the midpoint of each of those bonds, where its half bond ends
    lattice: np.ndarray  # (3, 3) rows a, b, c of the original cell
    supercell: tuple[int, int, int]

    @property
    def cell(self) -> np.ndarray:
        """(3, 3) rows: the edge vectors of the drawn supercell."""
        return self.lattice * np.asarray(self.supercell, dtype=float)[:, None]

    @property
    def center(self) -> np.ndarray:
        return self.cell.sum(axis=0) / 2.0

    def cell_corners(self) -> np.ndarray:
        """(8, 3) corners of the supercell box, index = 4*i + 2*j + k for corner (i, j, k)."""
        return np.array([np.dot(c, self.cell) for c in itertools.product((0, 1), repeat=3)], dtype=float)


CELL_EDGES = [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7)]


def build_scene(structure: Structure, supercell: tuple[int, int, int] = (1, 1, 1), boundary_images: bool = True,
                bonds: bool = True, bond_tolerance: float = DEFAULT_BOND_TOLERANCE, boundary_bonds: bool = True,
                bond_lengths: dict[tuple[str, str], float] | None = None,
                boundary: tuple[float, float] = (0.0, 1.0)) -> Scene:
    """Expand ``structure`` into a drawable scene.

    ``supercell`` repeats the cell along a, b, c (each 1–5 in the GUI). With ``boundary_images`` every
    periodic copy within the ``boundary`` range (fractions of the drawn box along each axis, as
    VESTA's boundary; the default [0, 1] draws atoms on a face also on the opposite face, so corners,
    edges and faces of the box look complete) is drawn too. Two drawn atoms are bonded when their distance
    is at most the sum of their covalent radii plus ``bond_tolerance`` Å; with ``boundary_bonds`` a drawn
    atom bonded to a periodic image outside the box gets a half bond towards it, so atoms near the box
    edges never float unbonded. ``bond_lengths`` sets the longest bond per element pair (see
    :func:`periodic_bonds`).
    """
    n = np.asarray(supercell, dtype=int)
    if np.any(n < 1):
        raise ValueError(f"supercell repeats must be positive, got {supercell}")
    base = np.mod(structure.frac_coords, 1.0)
    base[np.abs(base - 1.0) < BOUNDARY_EPS] = 0.0
    base[np.abs(base) < BOUNDARY_EPS] = 0.0
    offsets = np.array(list(itertools.product(range(n[0]), range(n[1]), range(n[2]))), dtype=float)
    nsite = len(structure)
    frac = (base[None, :, :] + offsets[:, None, :]).reshape(-1, 3)
    site = np.tile(np.arange(nsite), len(offsets))
    image = np.zeros(len(frac), dtype=bool)
    if boundary_images:
        lo, hi = boundary
        if not lo <= 0 < 1 <= hi:
            raise ValueError(f"boundary range must contain the box [0, 1], got [{lo:g}, {hi:g}]")
        # every periodic copy within [lo, hi] of the drawn box along each axis, beyond the base copies
        ranges = [range(int(np.floor(lo * k)) - 1, int(np.ceil(hi * k)) + 1) for k in n]
        shifts = np.array(list(itertools.product(*ranges)), dtype=float)
        shifts = shifts[~np.all((shifts >= 0) & (shifts < n), axis=1)]  # the base copies are already there
        copies = (base[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        inside = np.all((copies >= lo * n - BOUNDARY_EPS) & (copies <= hi * n + BOUNDARY_EPS), axis=1)
        frac = np.vstack([frac, copies[inside]])
        site = np.concatenate([site, np.tile(np.arange(nsite), len(shifts))[inside]])
        image = np.concatenate([image, np.ones(int(inside.sum()), dtype=bool)])
    lattice = np.array(structure.lattice.matrix, dtype=float)
    positions = frac @ lattice
    site_symbols = [s.specie.symbol if hasattr(s.specie, "symbol") else str(s.specie) for s in structure]
    symbols = [site_symbols[i] for i in site]
    supercell_matrix = lattice * n[:, None]
    if bonds:
        bond_pairs, stub_atoms, stub_ends = periodic_bonds(positions, symbols, supercell_matrix, bond_tolerance,
                                                           beyond_box=boundary_bonds, pair_lengths=bond_lengths)
    else:
        bond_pairs, stub_atoms, stub_ends = np.zeros((0, 2), dtype=int), np.zeros(0, dtype=int), np.zeros((0, 3))
    return Scene(positions, symbols, site, frac, image, bond_pairs, stub_atoms, stub_ends, lattice,
                 tuple(int(x) for x in n))


@cache
def _is_metal(symbol: str) -> bool:
    try:
        return bool(Element(symbol).is_metal)
    except ValueError:
        return False


SAME_POINT = 1e-3  # Å: a periodic copy this close to a drawn atom is that atom


def periodic_bonds(positions: np.ndarray, symbols: list[str], cell: np.ndarray,
                   tolerance: float = DEFAULT_BOND_TOLERANCE, beyond_box: bool = True,
                   pair_lengths: dict[tuple[str, str], float] | None = None) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """Bonds of the drawn atoms at ``positions`` (Å) in the periodic box with edge rows ``cell`` (Å).

    Returns (M, 2) index pairs of bonded drawn atoms, and for each bond from a drawn atom to a periodic
    copy that is not drawn, the atom's index (K,) and the bond's midpoint (K, 3). Atoms are bonded when
    closer than the sum of their covalent radii plus ``tolerance`` Å; in compounds with non-metals,
    metal–metal pairs are not (otherwise the large covalent radii of e.g. Sr would draw Sr–Sr and
    Sr–Ti sticks through an oxide). ``pair_lengths`` replaces that rule for the element pairs it names
    (alphabetical symbol pairs → longest bond in Å, as VESTA's bond table; 0 draws none).
    """
    empty = np.zeros((0, 2), dtype=int), np.zeros(0, dtype=int), np.zeros((0, 3))
    if not len(positions):
        return empty
    radii = np.array([style(s).covalent_radius for s in symbols])
    metal = np.array([_is_metal(s) for s in symbols])
    pair_lengths = {tuple(sorted(pair)): float(length) for pair, length in (pair_lengths or {}).items()}
    cutoff = max(2 * radii.max() + tolerance, *pair_lengths.values(), 0.0)
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float) @ cell if beyond_box else np.zeros((1, 3))
    copies = (positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    source = np.tile(np.arange(len(positions)), len(shifts))  # the drawn atom each copy repeats
    # a drawn boundary image and its original reach the same point beyond the box: keep one copy of it
    _, first = np.unique(np.round(copies / SAME_POINT), axis=0, return_index=True)
    copies, source = copies[np.sort(first)], source[np.sort(first)]
    tree = cKDTree(positions)
    # which drawn atom each copy is (-1: none, it lies beyond the box)
    distance, nearest = tree.query(copies, distance_upper_bound=SAME_POINT)
    drawn = np.where(np.isfinite(distance), nearest, -1)
    pairs = tree.sparse_distance_matrix(cKDTree(copies), cutoff, output_type="ndarray")
    i, k, d = pairs["i"], pairs["j"], pairs["v"]
    j = source[k]
    keep = d <= radii[i] + radii[j] + tolerance
    if not metal.all():
        keep &= ~(metal[i] & metal[j])
    if pair_lengths:
        names = np.array(symbols, dtype=object)
        pairs = [tuple(sorted(p)) for p in zip(names[i], names[j], strict=True)]
        ruled = np.array([pair in pair_lengths for pair in pairs], dtype=bool)
        limit = np.array([pair_lengths.get(pair, 0.0) for pair in pairs])
        keep = np.where(ruled, d <= limit, keep)
    keep &= d > MIN_BOND_LENGTH
    i, k = i[keep], k[keep]
    inside = drawn[k] >= 0
    a, b = i[inside], drawn[k[inside]]
    bonds = np.unique(np.column_stack([np.minimum(a, b), np.maximum(a, b)]), axis=0) if len(a) else empty[0]
    outside_atoms, outside_copies = i[~inside], k[~inside]
    ends = (positions[outside_atoms] + copies[outside_copies]) / 2.0
    return bonds.astype(int), outside_atoms.astype(int), ends


def pick_atom(positions: np.ndarray, radii: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> int | None:
    """Index of the first sphere hit by the ray ``origin + t * direction`` (t > 0), or None."""
    if not len(positions):
        return None
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    rel = positions - np.asarray(origin, dtype=float)
    t = rel @ d
    miss2 = np.einsum("ij,ij->i", rel, rel) - t * t
    hit = (miss2 <= radii * radii) & (t > 0)
    if not hit.any():
        return None
    candidates = np.nonzero(hit)[0]
    return int(candidates[np.argmin(t[candidates])])


MAX_PICKS = 4  # atoms measured together: distance (2), angle (3), dihedral (4)


def measure(points: np.ndarray) -> dict[str, list[float] | float | None]:
    """Geometry of picked atom positions (Å) in click order: the distances between consecutive atoms
    (Å), the angle at the middle atom of three (degrees), the dihedral angle of four about the bond
    between the middle two (degrees, −180 to 180, IUPAC sign)."""
    points = np.asarray(points, dtype=float)
    bonds = np.diff(points, axis=0)
    out: dict[str, list[float] | float | None] = {
        "distances": [float(d) for d in np.linalg.norm(bonds, axis=1)], "angle": None, "dihedral": None}
    if len(points) == 3:
        u, v = -bonds[0], bonds[1]
        cosine = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
        out["angle"] = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    elif len(points) == 4:
        b0, b1, b2 = -bonds[0], bonds[1], bonds[2]
        axis = b1 / np.linalg.norm(b1)
        v = b0 - np.dot(b0, axis) * axis
        w = b2 - np.dot(b2, axis) * axis
        out["dihedral"] = float(np.degrees(np.arctan2(np.dot(np.cross(axis, v), w), np.dot(v, w))))
    return out


MIN_POLYHEDRON_VERTICES = 4  # fewer bonded anions make no solid
MAX_POLYHEDRON_VERTICES = 8  # larger cages (the 12-fold A site of a perovskite) would hide the framework


def coordination_polyhedra(scene: Scene) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Coordination polyhedra of the drawn metal atoms bonded to 4–8 non-metal atoms (tetrahedra,
    octahedra, cubes; not the 12-fold cages of large cations), as VESTA draws them: (centre atom index, vertex positions (k, 3) in Å, triangles (m, 3) indexing them), the
    vertices being every bonded non-metal, drawn or beyond the box (from the half bonds)."""
    from scipy.spatial import ConvexHull, QhullError

    metal = np.array([_is_metal(symbol) for symbol in scene.symbols], dtype=bool)
    neighbours: dict[int, list[np.ndarray]] = {}
    for i, j in scene.bonds:
        for centre, other in ((i, j), (j, i)):
            if metal[centre] and not metal[other]:
                neighbours.setdefault(int(centre), []).append(scene.positions[other])
    for atom, end in zip(scene.stub_atoms, scene.stub_ends, strict=True):
        if metal[atom]:  # the partner beyond the box lies twice as far as the half bond's end
            partner = 2 * end - scene.positions[atom]
            neighbours.setdefault(int(atom), []).append(partner)
    out = []
    for centre, points in sorted(neighbours.items()):
        vertices = np.unique(np.round(np.array(points), 6), axis=0)
        if not MIN_POLYHEDRON_VERTICES <= len(vertices) <= MAX_POLYHEDRON_VERTICES:
            continue
        try:
            hull = ConvexHull(vertices)
        except QhullError:  # flat (e.g. square-planar) coordination: no solid to draw
            continue
        out.append((centre, vertices, hull.simplices.astype(int)))
    return out


def lattice_plane(lattice: np.ndarray, hkl: tuple[int, int, int], supercell: tuple[int, int, int] = (1, 1, 1)) -> np.ndarray:
    """Corners (k, 3) in Å, in order around the polygon, of the (hkl) lattice plane nearest the centre
    of the drawn box (``supercell`` cells of ``lattice`` rows a, b, c): the plane h·x = n in fractional
    coordinates of one cell, n the integer nearest h·(box centre). Raises ValueError for (000)."""
    h = np.asarray(hkl, dtype=float)
    if not h.any():
        raise ValueError("(0 0 0) is not a lattice plane")
    size = np.asarray(supercell, dtype=float)
    level = float(np.round(h @ (size / 2)))
    corners = np.array(list(itertools.product((0, 1), repeat=3)), dtype=float) * size
    points = []
    for a, b in CELL_EDGES:  # where the plane crosses each box edge
        p, q = corners[a], corners[b]
        fp, fq = h @ p - level, h @ q - level
        if fp == fq:
            if fp == 0:
                points.extend([p, q])
            continue
        t = fp / (fp - fq)
        if 0 <= t <= 1:
            points.append(p + t * (q - p))
    if len(points) < 3:
        return np.zeros((0, 3))
    cart = np.unique(np.round(np.array(points) @ lattice, 8), axis=0)
    if len(cart) < 3:
        return np.zeros((0, 3))
    centre = cart.mean(axis=0)
    normal = np.linalg.inv(lattice) @ h  # the reciprocal vector h a* + k b* + l c*
    u = cart[0] - centre
    v = np.cross(normal, u)
    order = np.argsort(np.arctan2((cart - centre) @ v, (cart - centre) @ u))
    return cart[order]
