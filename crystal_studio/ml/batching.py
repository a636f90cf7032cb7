"""Crystals as tensors: periodic neighbour lists, cached graphs and batches.

A batch holds several crystals of different sizes flattened into one set of atoms, with
``batch.crystal[i]`` giving the crystal of atom ``i`` (the layout of PyTorch Geometric). Conventions:

- lattices are (B, 3, 3) with the lattice vectors a, b, c as rows, in Å;
- fractional coordinates are (N, 3), unwrapped values are allowed (only differences matter);
- atom types are either element indices (N,) into :data:`~crystal_studio.ml.elements.ELEMENTS` or
  probabilities (N, N_ELEMENTS) over them ("soft" types, rows summing to one for physical meaning);
- an edge ``e`` points from atom ``center[e]`` to the periodic image of atom ``neighbor[e]`` shifted by
  ``shift[e]`` lattice vectors; its vector in Å is ``(frac[neighbor] + shift - frac[center]) @ lattice``.

Neighbour lists are built without gradients (which neighbours lie within the cutoff is a discrete
choice); distances are then recomputed differentiably from the lattice and coordinates by the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from pymatgen.core import Structure
from torch import Tensor

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.ml.elements import element_index, unsupported_elements

MAX_CANDIDATES = 1 << 21  # (pair, image) candidates examined at once while building neighbour lists


@dataclass
class CrystalBatch:
    """Several crystals as flat tensors (see the module docstring for conventions and units)."""

    types: Tensor  # (N,) long element indices, or (N, N_ELEMENTS) float probabilities
    frac: Tensor  # (N, 3) fractional coordinates
    lattice: Tensor  # (B, 3, 3) Å, rows are lattice vectors
    crystal: Tensor  # (N,) long, crystal index of each atom
    n_atoms: Tensor  # (B,) long
    center: Tensor | None = None  # (E,) long, global atom index
    neighbor: Tensor | None = None  # (E,) long, global atom index
    shift: Tensor | None = None  # (E, 3) integer-valued, in lattice vectors (dtype of frac)
    y: Tensor | None = None  # (B, T) targets in physical units, NaN where unknown

    @property
    def num_crystals(self) -> int:
        return int(self.lattice.shape[0])

    @property
    def has_edges(self) -> bool:
        return self.center is not None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> CrystalBatch:
        """The batch on ``device``; floating tensors (coordinates, lattice, soft types, shifts) cast to
        ``dtype`` when given."""

        def move(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device)

        return CrystalBatch(move(self.types), move(self.frac), move(self.lattice), move(self.crystal),
                            move(self.n_atoms), move(self.center), move(self.neighbor), move(self.shift),
                            None if self.y is None else self.y.to(device))

    def with_edges(self, cutoff: float) -> CrystalBatch:
        """This batch with its neighbour list within ``cutoff`` Å (rebuilt from the current geometry)."""
        center, neighbor, shift = neighbor_list(self.frac, self.lattice, self.n_atoms, cutoff)
        return replace(self, center=center, neighbor=neighbor, shift=shift.to(self.frac.dtype))


def batch_from_tensors(types: Tensor, frac: Tensor, lattice: Tensor, n_atoms: Tensor | Sequence[int]) -> CrystalBatch:
    """A batch (without edges) from flat tensors, e.g. an optimizer's soft types and geometry.

    ``n_atoms`` gives the number of atoms of each crystal in order; gradients flow through ``types``,
    ``frac`` and ``lattice`` untouched.
    """
    n_atoms = torch.as_tensor(n_atoms, dtype=torch.long, device=frac.device)
    crystal = torch.repeat_interleave(torch.arange(len(n_atoms), device=frac.device), n_atoms)
    return CrystalBatch(types, frac, lattice, crystal, n_atoms)


# --------------------------------------------------------------------------------------------------
# Neighbour lists
# --------------------------------------------------------------------------------------------------


def _segment_arange(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For counts c_b: (segment index, position within the segment) of every element of
    ``concat(arange(c_0), arange(c_1), ...)``."""
    segment = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    return segment, torch.arange(int(counts.sum()), device=counts.device) - starts[segment]


@torch.no_grad()
def _image_ranges(lattice: Tensor, cutoff: float) -> Tensor:
    """(B, 3) largest |image shift| along each lattice vector that can hold a neighbour within ``cutoff``
    of a pair whose fractional difference has been wrapped into [-0.5, 0.5]."""
    # Along lattice vector i the fractional component of a vector r is r . inv[:, i], so a vector no
    # longer than the cutoff has |component| <= cutoff * |inv[:, i]|.
    recip = torch.linalg.inv(lattice).norm(dim=1)
    return torch.floor(cutoff * recip + 0.5).long()


@torch.no_grad()
def _neighbors_chunk(frac: Tensor, lattice: Tensor, n_atoms: Tensor, reach: Tensor, cutoff: float
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbour list of a few crystals (local atom indices), all in float64; see :func:`neighbor_list`."""
    starts = torch.cumsum(n_atoms, 0) - n_atoms
    # every ordered pair (i, j) of atoms of the same crystal, with its vector wrapped into the cell
    pair_crystal, pair_pos = _segment_arange(n_atoms * n_atoms)
    n_pair = n_atoms[pair_crystal]
    i = starts[pair_crystal] + pair_pos // n_pair
    j = starts[pair_crystal] + pair_pos % n_pair
    delta = frac[j] - frac[i]
    base = -torch.round(delta)
    pair_vec = torch.einsum("pk,pkl->pl", delta + base, lattice[pair_crystal])
    # every image shift within the reach of each crystal
    dims = 2 * reach + 1
    n_images = dims.prod(dim=1)
    image_crystal, image_pos = _segment_arange(n_images)
    d = dims[image_crystal]
    images = torch.stack([image_pos // (d[:, 1] * d[:, 2]), (image_pos // d[:, 2]) % d[:, 1], image_pos % d[:, 2]],
                         dim=1) - reach[image_crystal]
    image_vec = torch.einsum("pk,pkl->pl", images.to(lattice.dtype), lattice[image_crystal])
    # every (pair, image) combination of each crystal
    per_crystal = n_atoms * n_atoms
    cand_crystal, cand_pos = _segment_arange(per_crystal * n_images)
    n_img = n_images[cand_crystal]
    pair = (torch.cumsum(per_crystal, 0) - per_crystal)[cand_crystal] + cand_pos // n_img
    image = (torch.cumsum(n_images, 0) - n_images)[cand_crystal] + cand_pos % n_img
    dist2 = (pair_vec[pair] + image_vec[image]).square().sum(dim=1)
    shift = base[pair] + images[image].to(base.dtype)
    is_self = (i[pair] == j[pair]) & (shift == 0).all(dim=1)
    keep = (dist2 < cutoff * cutoff) & ~is_self
    pair, shift = pair[keep], shift[keep]
    return i[pair], j[pair], shift.long()


@torch.no_grad()
def neighbor_list(frac: Tensor, lattice: Tensor, n_atoms: Tensor, cutoff: float,
                  max_candidates: int = MAX_CANDIDATES) -> tuple[Tensor, Tensor, Tensor]:
    """All periodic neighbours closer than ``cutoff`` Å, for every atom of every crystal.

    Returns ``(center, neighbor, shift)``: global atom indices (E,) and integer image shifts (E, 3),
    sorted by crystal then center atom. Works on the device of the inputs, in float64; crystals are
    processed in chunks of at most ``max_candidates`` (pair, image) candidates to bound memory (one
    crystal larger than that is processed alone).
    """
    device = frac.device
    frac64, lattice64 = frac.detach().double(), lattice.detach().double()
    n_atoms = n_atoms.to(device)
    reach = _image_ranges(lattice64, cutoff)
    cost = (n_atoms * n_atoms * (2 * reach + 1).prod(dim=1)).tolist()
    atom_starts = (torch.cumsum(n_atoms, 0) - n_atoms).tolist()
    counts = n_atoms.tolist()
    out_c, out_n, out_s = [], [], []
    first = 0
    while first < len(counts):
        last, total = first + 1, cost[first]
        while last < len(counts) and total + cost[last] <= max_candidates:
            total += cost[last]
            last += 1
        a0 = atom_starts[first]
        a1 = atom_starts[last - 1] + counts[last - 1]
        c, n, s = _neighbors_chunk(frac64[a0:a1], lattice64[first:last], n_atoms[first:last], reach[first:last],
                                   cutoff)
        out_c.append(c + a0)
        out_n.append(n + a0)
        out_s.append(s)
        first = last
    if not out_c:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros((0, 3), dtype=torch.long, device=device)
    center, neighbor, shift = torch.cat(out_c), torch.cat(out_n), torch.cat(out_s)
    order = torch.argsort(center, stable=True)
    return center[order], neighbor[order], shift[order]


# --------------------------------------------------------------------------------------------------
# Cached graphs
# --------------------------------------------------------------------------------------------------


@dataclass
class CrystalGraph:
    """One crystal with its neighbour list, ready to be batched (CPU tensors, local atom indices)."""

    types: Tensor  # (n,) long element indices
    frac: Tensor  # (n, 3) float32
    lattice: Tensor  # (3, 3) float32, Å
    center: Tensor  # (E,) int32
    neighbor: Tensor  # (E,) int32
    shift: Tensor  # (E, 3) int16
    y: Tensor | None = None  # (T,) float32 targets, NaN where unknown

    @property
    def n_atoms(self) -> int:
        return int(self.types.shape[0])


def structure_arrays(structure: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(element indices (n,), fractional coordinates (n, 3), lattice (3, 3) Å) of an ordered structure;
    CrystalStudioError if it has elements the models do not cover."""
    bad = unsupported_elements(site.specie.symbol for site in structure)
    if bad:
        raise CrystalStudioError(f"{structure.composition.reduced_formula}: element(s) {', '.join(bad)} "
                                 "not covered by the models (H to Pu)")
    types = np.array([element_index(site.specie.symbol) for site in structure], dtype=np.int64)
    return types, np.array(structure.frac_coords, dtype=np.float64), np.array(structure.lattice.matrix, dtype=np.float64)


def build_graphs(structures: Sequence[Structure], cutoff: float, targets: np.ndarray | None = None,
                 chunk: int = 256, progress: ProgressCallback = no_progress,
                 cancel: CancelToken | None = None) -> list[CrystalGraph]:
    """Graphs with neighbour lists within ``cutoff`` Å for ordered structures of covered elements.

    ``targets`` is an optional (len(structures), T) array of labels (NaN where unknown). Neighbour
    lists are built ``chunk`` crystals at a time, reporting progress and honouring ``cancel`` between
    chunks.
    """
    cancel = cancel or CancelToken()
    graphs: list[CrystalGraph] = []
    for start in range(0, len(structures), chunk):
        cancel.check()
        progress(ProgressEvent(start, len(structures), "building neighbour lists"))
        part = [structure_arrays(s) for s in structures[start:start + chunk]]
        n_atoms = torch.tensor([len(t) for t, _, _ in part])
        frac = torch.from_numpy(np.concatenate([f for _, f, _ in part]))
        lattice = torch.from_numpy(np.stack([lat for _, _, lat in part]))
        center, neighbor, shift = neighbor_list(frac, lattice, n_atoms, cutoff)
        atom_starts = torch.cumsum(n_atoms, 0) - n_atoms
        crystal_of_edge = torch.repeat_interleave(torch.arange(len(part)), n_atoms)[center]
        edge_counts = torch.bincount(crystal_of_edge, minlength=len(part)).tolist()
        local_c = (center - atom_starts[crystal_of_edge]).int().split(edge_counts)
        local_n = (neighbor - atom_starts[crystal_of_edge]).int().split(edge_counts)
        shifts = shift.to(torch.int16).split(edge_counts)
        for k, (types, f, lat) in enumerate(part):
            y = None if targets is None else torch.as_tensor(targets[start + k], dtype=torch.float32)
            graphs.append(CrystalGraph(torch.from_numpy(types), torch.from_numpy(f).float(),
                                       torch.from_numpy(lat).float(), local_c[k], local_n[k], shifts[k], y))
    return graphs


def collate(graphs: Sequence[CrystalGraph]) -> CrystalBatch:
    """Concatenate cached graphs into one batch (atom and edge indices offset per crystal)."""
    n_atoms = torch.tensor([g.n_atoms for g in graphs])
    n_edges = torch.tensor([g.center.shape[0] for g in graphs])
    atom_offset = torch.repeat_interleave(torch.cumsum(n_atoms, 0) - n_atoms, n_edges)
    y = torch.stack([g.y for g in graphs]) if graphs and graphs[0].y is not None else None
    return CrystalBatch(
        types=torch.cat([g.types for g in graphs]),
        frac=torch.cat([g.frac for g in graphs]),
        lattice=torch.stack([g.lattice for g in graphs]),
        crystal=torch.repeat_interleave(torch.arange(len(graphs)), n_atoms),
        n_atoms=n_atoms,
        center=torch.cat([g.center for g in graphs]).long() + atom_offset,
        neighbor=torch.cat([g.neighbor for g in graphs]).long() + atom_offset,
        shift=torch.cat([g.shift for g in graphs]).float(),
        y=y,
    )
