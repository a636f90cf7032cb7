"""Voxel density maps (Court et al.): round trips, rotation augmentation, U-Net and VAE shapes and
training, on tiny grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystal_studio.ml.voxels import (
    ROTATIONS,
    coordinate_channels,
    maps_to_structure,
    rotate_maps,
    rotation_matrix,
    voxel_skip_reason,
    voxelize_structures,
)

SRTIO3 = Path(__file__).parent / "data" / "good" / "SrTiO3.cif"


def rock_salt() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])


def srtio3() -> Structure:
    return Structure.from_file(SRTIO3)


def _matched_error(found: Structure, truth: Structure) -> float:
    """Largest periodic distance (Å) from each true site to the found site of its species nearest to it."""
    worst = 0.0
    for site in truth:
        same = [s for s in found if s.specie == site.specie]
        worst = max(worst, min(site.distance(s) for s in same))
    return worst


@pytest.mark.parametrize("make", [rock_salt, srtio3])
@pytest.mark.parametrize("n", [16, 32])
def test_round_trip_recovers_sites_within_one_voxel(make, n):
    truth = make()
    shifts = np.random.default_rng(3).uniform(-0.15, 0.15, (len(truth), 3))  # Å, off the grid points
    for k, shift in enumerate(shifts):
        truth.translate_sites([k], shift, frac_coords=False)
    maps = voxelize_structures([truth], n)
    found, reason = maps_to_structure(maps.density[0].numpy(), maps.species[0].numpy(),
                                      coordinate_channels(maps.lattice, n)[0].numpy())
    assert reason is None
    assert found.composition == truth.composition
    assert np.allclose(found.lattice.matrix, truth.lattice.matrix, atol=1e-3)
    voxel = truth.lattice.a / n
    assert _matched_error(found, truth) < 0.5 * voxel


def test_species_map_labels_atoms_and_leaves_space_empty():
    maps = voxelize_structures([srtio3()], 16)
    species = maps.species[0]
    assert species[0, 0, 0] == 38 and species[8, 8, 8] == 22 and species[8, 8, 0] == 8
    assert species[4, 4, 4] == 0  # between atoms
    assert set(species.unique().tolist()) == {0, 8, 22, 38}
    assert float(maps.density[0].max()) > 0.99


def test_rotating_maps_equals_voxelizing_the_rotated_crystal():
    structure = Structure(Lattice.orthorhombic(4.0, 4.2, 4.4), ["Ba", "Ti", "O", "O", "O"],
                          [[0.1, 0.05, 0], [0.5, 0.55, 0.45], [0.5, 0.5, 0.1], [0.5, 0.1, 0.5], [0.1, 0.5, 0.5]])
    maps = voxelize_structures([structure], 8)
    for index in (1, 7, 13, ROTATIONS - 1):
        r = rotation_matrix(index).double().numpy()
        rotated = Structure(Lattice(r @ structure.lattice.matrix @ r.T), structure.species, structure.frac_coords @ r.T)
        expected = voxelize_structures([rotated], 8)
        density, species, lattice = rotate_maps(maps.density, maps.species, maps.lattice, torch.tensor([index]))
        assert torch.allclose(density, expected.density, atol=1e-5)
        assert torch.equal(species, expected.species)
        assert torch.allclose(lattice, expected.lattice, atol=1e-5)


def test_only_small_near_cubic_ordered_cells_are_voxelized():
    assert voxel_skip_reason(srtio3()) is None
    assert voxel_skip_reason(Structure(Lattice.tetragonal(4.0, 6.0), ["Na"], [[0, 0, 0]])) == "not near-cubic (lengths)"
    assert voxel_skip_reason(Structure(Lattice.hexagonal(4.0, 4.0), ["Na"], [[0, 0, 0]])) == "not near-cubic (angles)"
    assert voxel_skip_reason(rock_salt() * (2, 2, 2)) == "more than 40 atoms"
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    assert voxel_skip_reason(disordered) == "partial occupancy"


# ------------------------------------------------------------------------------------------ networks


def _tiny_maps(n: int = 8):
    structures = [srtio3(), rock_salt(), Structure(Lattice.cubic(4.1), ["Ba", "Zr", "O", "O", "O"],
                                                   [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])]
    maps = voxelize_structures(structures, n)
    return maps, coordinate_channels(maps.lattice, n)


def test_unet_and_vae_shapes():
    from crystal_studio.ml.models.voxel_vae import (
        ConditionalVoxelVAE,
        VoxelUNet,
        VoxelUNetConfig,
        VoxelVAEConfig,
        one_hot_deciles,
    )

    maps, coordinates = _tiny_maps(16)
    unet = VoxelUNet(VoxelUNetConfig(grid=16, channels=4, levels=3, elements=[8, 11, 17, 22, 38]))
    assert unet(maps.density).shape == (3, 6, 16, 16, 16)
    assert [f.shape[2] for f in unet.features(maps.density)] == [16, 8, 4]
    assert unet.classes(maps.species).max() == 5 and unet.species(maps.density).shape == (3, 16, 16, 16)
    vae = ConditionalVoxelVAE(VoxelVAEConfig(grid=16, channels=4, latent=32, n_conditions=10))
    condition = one_hot_deciles(np.array([-2.0, 0.3, np.nan]), np.linspace(-1, 1, 9))
    assert condition.sum(dim=1).tolist() == [1.0, 1.0, 0.0] and condition[0, 0] == 1 and condition[1, 6] == 1
    mu, logvar = vae.encode(maps.density, coordinates, condition)
    assert mu.shape == logvar.shape == (3, 32)
    density, coords = vae.decode(mu, condition)
    assert density.shape == (3, 16, 16, 16) and coords.shape == (3, 3, 16, 16, 16) and bool((density >= 0).all())
    terms = vae.losses(maps.density, coordinates, condition, unet)
    assert set(terms) == {"density", "coordinates", "features", "kl"} and all(torch.isfinite(v) for v in terms.values())
    with pytest.raises(ValueError, match="power of two"):
        ConditionalVoxelVAE(VoxelVAEConfig(grid=12))


def test_a_few_training_steps_reduce_the_losses():
    from crystal_studio.ml.models.voxel_vae import ConditionalVoxelVAE, VoxelUNet, VoxelUNetConfig, VoxelVAEConfig

    torch.manual_seed(0)
    maps, coordinates = _tiny_maps(8)
    unet = VoxelUNet(VoxelUNetConfig(grid=8, channels=4, levels=2, elements=[8, 11, 17, 22, 38, 40, 56]))
    optimizer = torch.optim.Adam(unet.parameters(), lr=1e-2)
    seg = []
    for _ in range(15):
        loss = unet.segmentation_loss(maps.density, maps.species)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seg.append(float(loss.detach()))
    assert seg[-1] < 0.75 * seg[0]
    unet.requires_grad_(False)
    vae = ConditionalVoxelVAE(VoxelVAEConfig(grid=8, channels=4, latent=8, n_conditions=3))
    condition = torch.eye(3)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    totals = []
    for _ in range(15):
        terms = vae.losses(maps.density, coordinates, condition, unet, generator)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(float(loss.detach()))
    assert totals[-1] < 0.5 * totals[0]
