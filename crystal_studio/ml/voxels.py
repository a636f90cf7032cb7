"""Crystals as voxel images (Court et al., ``shared/methods.md`` §4) and back.

A crystal becomes three maps on an n×n×n grid spanning its cell, voxel (i, j, k) sitting at the
fractional position (i, j, k) / n:

- **density**: a sum of periodic Gaussians, one per atom, of height 1 and width
  σ = ``width_scale`` × the element's mean ionic radius (its atomic radius where pymatgen has no ionic
  one, 1 Å where it has neither), never under :data:`MIN_SIGMA_VOXELS` voxels so every atom is sampled;
- **species**: the atomic number of the atom whose Gaussian is largest in the voxel, 0 where no
  Gaussian reaches :data:`SPECIES_CUTOFF`;
- **coordinates**: 3 channels holding the Cartesian position (Å) of each voxel, so a decoder knows the
  size and shape of the cell (coordinate convolution).

Only cells the representation handles are voxelized (:func:`voxel_skip_reason`): ordered, near-cubic
(angles within ``angle_tolerance`` of 90°, longest over shortest length at most 1 + ``length_tolerance``),
at most ``max_atoms`` atoms, elements up to plutonium.

Back from maps to a crystal (:func:`maps_to_structure`): atom sites are the local maxima of the
density above :data:`PEAK_THRESHOLD` (``scipy.ndimage.maximum_filter`` on the periodic grid), refined
to sub-voxel positions by fitting a Gaussian through each peak and its two neighbours per axis; each
site takes the species of its peak voxel (peaks on empty voxels are dropped); the lattice is the
least-squares fit of the coordinate channels against the voxels' fractional positions.

Augmentation (:func:`rotate_maps`) applies one of the 24 proper 90° rotations of the grid, the same
rotation to the lattice, and recomputes the coordinate channels, exactly as if the rotated crystal
had been voxelized.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure
from torch import Tensor

from crystal_studio.ml.elements import MAX_Z

SPECIES_CUTOFF = 0.2  # an atom's Gaussian must reach this in a voxel to label it
PEAK_THRESHOLD = 0.25  # a density maximum below this is no atom
MIN_SIGMA_VOXELS = 0.6  # Gaussian widths are at least this many voxel lengths
CHUNK_ELEMENTS = 2 ** 24  # atoms × voxels × structures held at once while voxelizing
ROTATIONS = 24  # proper 90° rotations of the cube


@dataclass
class VoxelMaps:
    """Voxelized crystals: ``density`` (B, n, n, n), ``species`` (B, n, n, n) atomic numbers (0 empty),
    ``lattice`` (B, 3, 3) row vectors in Å; :func:`coordinate_channels` gives the coordinate maps."""

    density: Tensor
    species: Tensor
    lattice: Tensor

    def __len__(self) -> int:
        return len(self.density)


@lru_cache(maxsize=1)
def _radii() -> np.ndarray:
    """Radius (Å) per atomic number 0..MAX_Z (index 0 unused): mean ionic, else atomic, else 1 Å."""
    radii = np.ones(MAX_Z + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            element = Element.from_Z(z)
            for radius in (element.average_ionic_radius, element.atomic_radius):
                if radius is not None and float(radius) > 0:
                    radii[z] = float(radius)
                    break
    return radii


def element_radius(z: int) -> float:
    """The radius (Å) that sets the width of element ``z``'s Gaussian (see the module docstring)."""
    return float(_radii()[z])


def voxel_skip_reason(structure: Structure, max_atoms: int = 40, angle_tolerance: float = 5.0,
                      length_tolerance: float = 0.1) -> str | None:
    """Why ``structure`` is not voxelized (None when it is): partial occupancy, too many atoms, an
    element beyond plutonium, an angle further than ``angle_tolerance`` degrees from 90°, or lengths
    whose ratio exceeds 1 + ``length_tolerance``."""
    if not structure.is_ordered:
        return "partial occupancy"
    if len(structure) > max_atoms:
        return f"more than {max_atoms} atoms"
    if any(site.specie.Z > MAX_Z for site in structure):
        return "element beyond plutonium"
    if np.abs(np.array(structure.lattice.angles) - 90.0).max() > angle_tolerance:
        return "not near-cubic (angles)"
    lengths = np.array(structure.lattice.abc)
    if lengths.max() / lengths.min() > 1.0 + length_tolerance:
        return "not near-cubic (lengths)"
    return None


def padded_atoms(structures: list[Structure]) -> tuple[Tensor, Tensor, Tensor]:
    """Structures as padded tensors: fractional coordinates (B, A, 3), atomic numbers (B, A) with 0
    in padding slots, lattices (B, 3, 3) in Å."""
    width = max(len(s) for s in structures)
    frac = torch.zeros((len(structures), width, 3), dtype=torch.float64)
    numbers = torch.zeros((len(structures), width), dtype=torch.long)
    for b, s in enumerate(structures):
        frac[b, :len(s)] = torch.as_tensor(s.frac_coords)
        numbers[b, :len(s)] = torch.as_tensor([site.specie.Z for site in s])
    lattice = torch.as_tensor(np.stack([s.lattice.matrix for s in structures]))
    return frac.float(), numbers, lattice.float()


def grid_fractions(n: int, device: torch.device | str = "cpu") -> Tensor:
    """Fractional positions (n³, 3) of the voxels, in the order of a flattened (n, n, n) map."""
    axis = torch.arange(n, dtype=torch.float32, device=device) / n
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def coordinate_channels(lattice: Tensor, n: int) -> Tensor:
    """Cartesian position (Å) of every voxel, (B, 3, n, n, n), for lattices (B, 3, 3)."""
    cart = grid_fractions(n, lattice.device) @ lattice  # (B, n³, 3)
    return cart.transpose(1, 2).reshape(len(lattice), 3, n, n, n)


def voxelize(frac: Tensor, numbers: Tensor, lattice: Tensor, n: int, width_scale: float = 0.5
             ) -> tuple[Tensor, Tensor]:
    """Density (B, n, n, n) and species (B, n, n, n) maps of padded crystals (see :func:`padded_atoms`),
    all at once; the caller bounds the batch (B × A × n³ elements are held)."""
    grid = grid_fractions(n, frac.device)
    delta = grid[None, None] - frac[:, :, None]  # (B, A, V, 3)
    delta = delta - torch.round(delta)  # nearest periodic image
    r2 = torch.einsum("bavi,bij->bavj", delta, lattice).square().sum(-1)  # (B, A, V) Å²
    radii = torch.as_tensor(_radii(), dtype=frac.dtype, device=frac.device)[numbers]  # (B, A)
    voxel = lattice.norm(dim=-1).mean(dim=-1, keepdim=True) / n  # (B, 1) Å
    sigma = torch.maximum(width_scale * radii, MIN_SIGMA_VOXELS * voxel)
    gauss = torch.exp(-r2 / (2 * sigma.square()[..., None])) * (numbers > 0)[..., None]
    density = gauss.sum(dim=1)
    best, which = gauss.max(dim=1)
    species = torch.where(best >= SPECIES_CUTOFF, numbers.gather(1, which), 0)
    shape = (len(frac), n, n, n)
    return density.reshape(shape), species.reshape(shape)


def voxelize_structures(structures: list[Structure], n: int, width_scale: float = 0.5) -> VoxelMaps:
    """:func:`voxelize` over ``structures`` in chunks that bound the memory used."""
    densities, species, lattices = [], [], []
    width = max(len(s) for s in structures)
    chunk = max(1, CHUNK_ELEMENTS // (width * n ** 3 * 3))
    for start in range(0, len(structures), chunk):
        frac, numbers, lattice = padded_atoms(structures[start:start + chunk])
        d, s = voxelize(frac, numbers, lattice, n, width_scale)
        densities.append(d)
        species.append(s.to(torch.int16))
        lattices.append(lattice)
    return VoxelMaps(torch.cat(densities), torch.cat(species), torch.cat(lattices))


@lru_cache(maxsize=1)
def _rotation_matrices() -> Tensor:
    """The 24 proper rotations of the cube as signed permutation matrices (24, 3, 3), identity first."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[range(3), perm] = signs
            if np.linalg.det(matrix) > 0:
                out.append(matrix)
    return torch.as_tensor(np.stack(out), dtype=torch.float32)



def rotation_matrix(index: int) -> Tensor:
    """Rotation ``index`` (0..23, 0 the identity) as a signed permutation matrix (3, 3): a crystal with
    fractional coordinates x (rows) and lattice L becomes x Rᵀ with lattice R L Rᵀ."""
    return _rotation_matrices()[index]


def rotate_maps(density: Tensor, species: Tensor, lattice: Tensor, rotations: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Maps (B, n, n, n) and lattices (B, 3, 3) of crystals rotated by ``rotations`` (B,) indices into
    the 24 proper rotations; the new voxel at fractional g holds the old one at Rᵀ g (periodic)."""
    n = density.shape[-1]
    matrices = _rotation_matrices().to(density.device)[rotations]  # (B, 3, 3)
    index = torch.arange(n, device=density.device)
    grid = torch.stack(torch.meshgrid(index, index, index, indexing="ij"), dim=-1).reshape(-1, 3)  # (V, 3)
    source = torch.remainder(torch.einsum("vi,bij->bvj", grid.float(), matrices).round().long(), n)  # g R = Rᵀ g
    flat = (source[..., 0] * n + source[..., 1]) * n + source[..., 2]  # (B, V)
    rotated = [torch.gather(m.reshape(len(m), -1), 1, flat.to(torch.long)).reshape(m.shape) for m in (density, species)]
    return rotated[0], rotated[1], matrices @ lattice @ matrices.transpose(1, 2)


def random_rotations(count: int, generator: torch.Generator) -> Tensor:
    """``count`` rotation indices drawn uniformly from the 24 (seeded by ``generator``, on the CPU)."""
    return torch.randint(ROTATIONS, (count,), generator=generator)


def lattice_from_coordinates(coordinates: np.ndarray) -> np.ndarray:
    """Least-squares lattice (3, 3), Å, from coordinate channels (3, n, n, n): cart ≈ g L + origin."""
    n = coordinates.shape[-1]
    grid = grid_fractions(n).numpy().astype(np.float64)
    design = np.hstack([grid, np.ones((len(grid), 1))])
    solution, *_ = np.linalg.lstsq(design, coordinates.reshape(3, -1).T.astype(np.float64), rcond=None)
    return solution[:3]


def density_peaks(density: np.ndarray, threshold: float = PEAK_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Periodic local maxima of a density map (n, n, n) above ``threshold``: their voxel indices
    (P, 3) and sub-voxel fractional positions (P, 3) in [0, 1), from a Gaussian fit per axis."""
    from scipy import ndimage

    n = density.shape[0]
    peaks = (ndimage.maximum_filter(density, size=3, mode="wrap") == density) & (density > threshold)
    voxels = np.argwhere(peaks)
    offsets = np.zeros(voxels.shape)
    log = np.log(np.clip(density, 1e-12, None))
    for axis in range(3):
        step = np.zeros(3, dtype=int)
        step[axis] = 1
        below = log[tuple(((voxels - step) % n).T)]
        here = log[tuple(voxels.T)]
        above = log[tuple(((voxels + step) % n).T)]
        curvature = below - 2 * here + above
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(curvature < 0, 0.5 * (below - above) / curvature, 0.0)
        offsets[:, axis] = np.clip(shift, -0.5, 0.5)
    return voxels, np.mod((voxels + offsets) / n, 1.0)


def maps_to_structure(density: np.ndarray, species: np.ndarray, coordinates: np.ndarray,
                      threshold: float = PEAK_THRESHOLD) -> tuple[Structure | None, str | None]:
    """A crystal from a density map (n, n, n), a species map (n, n, n) of atomic numbers and
    coordinate channels (3, n, n, n) in Å; None and the reason when there is none ("non-finite map",
    "non-physical lattice", "no atom found")."""
    if not (np.isfinite(density).all() and np.isfinite(coordinates).all()):
        return None, "non-finite map"
    matrix = lattice_from_coordinates(coordinates)
    if abs(np.linalg.det(matrix)) < 1.0:  # Å³
        return None, "non-physical lattice"
    voxels, frac = density_peaks(density, threshold)
    numbers = species[tuple(voxels.T)] if len(voxels) else np.zeros(0, dtype=int)
    keep = (numbers > 0) & (numbers <= MAX_Z)
    if not keep.any():
        return None, "no atom found"
    frac = frac[keep]
    frac[frac >= 1.0] = 0.0
    return Structure(Lattice(matrix), [int(z) for z in numbers[keep]], frac), None

