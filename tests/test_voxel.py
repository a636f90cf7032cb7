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
    element_radius,
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


def test_gaussian_widths_follow_ionic_then_atomic_radii():
    assert element_radius(8) == pytest.approx(1.26)  # O2-, mean ionic radius
    assert element_radius(1) == pytest.approx(0.25)  # H: no ionic radius, atomic radius
    assert element_radius(2) == 1.0  # He: neither


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


def test_unet_and_vae_shapes(one_torch_thread):
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


def test_a_few_training_steps_reduce_the_losses(one_torch_thread):
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


# ------------------------------------------------------------------------------------------ stored model and sampling


@pytest.fixture(scope="module")
def voxel_project(tmp_path_factory):
    """A project with 12 synthetic perovskites and rock salts and a tiny voxel VAE trained on them at 8³:
    (project, model id)."""
    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project
    from tests.ml_synthetic import synthetic_crystals, write_csv

    root = tmp_path_factory.mktemp("voxel")
    project = Project.create(root / "p.sqlite")
    import_paths(project, [write_csv(root / "syn.csv", synthetic_crystals(12, seed=5))], "syn")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    config = config_for("voxel_vae", [], grid=8, hidden=4, layers=2, latent=8, epochs=2, batch_size=6, deciles=3,
                        prior_samples=4, device="cpu", seed=1)
    result = train_model(project, "syn", config, "tiny voxel VAE")
    torch.set_num_threads(before)
    yield project, result
    project.close()


def test_trained_voxel_vae_reports_reconstruction_and_is_rebuilt(voxel_project):
    from crystal_studio.ml.kinds import get_kind
    from crystal_studio.ml.predictor import load_state
    from crystal_studio.store import models as model_store

    project, result = voxel_project
    metrics = result.metrics["voxel"]
    assert {"val_occupied_accuracy", "val_prior_validity", "val_decoded_composition_recovery"} <= set(metrics)
    assert metrics["n_train"] + metrics["n_val"] == 12
    record = model_store.get_model(project, result.model_id)
    model = get_kind("voxel_vae").load().rebuild(record.hyperparameters, [], load_state(record.checkpoint, "m"), "m")
    assert model.config.grid == 8 and len(model.decile_edges) == 2
    assert model.unet.config.elements == sorted(model.unet.config.elements) and 8 in model.unet.config.elements
    assert len(model_store.run_metrics(project, result.run_id)["val_loss"]) == 2  # one per VAE epoch


@pytest.mark.parametrize("around", [None, 1])
def test_voxel_sampling_funnel_counts_add_up(voxel_project, around):
    from crystal_studio.design.sampling import VOXEL_FUNNEL, sample_model
    from crystal_studio.store import candidates as candidate_store

    project, result = voxel_project
    summary = sample_model(project, result.model_id, 24, seed=3, around=around, sigma=0.7, device="cpu",
                           condition_decile=2)
    funnel = summary.funnel
    assert tuple(funnel) == VOXEL_FUNNEL and funnel["sampled"] == 24
    counts = list(funnel.values())
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    assert funnel["decoded"] + sum(summary.failures.values()) == 24
    stored = candidate_store.list_candidates(project, summary.run_id)
    assert len(stored) == funnel["decoded"] and sum(c.success for c in stored) == funnel["unique"]
    assert summary.validity == pytest.approx(funnel["structurally_valid"] / 24)


def test_voxel_sampling_refuses_what_does_not_apply(voxel_project):
    from crystal_studio.core.errors import CrystalStudioError
    from crystal_studio.design.sampling import sample_model

    project, result = voxel_project
    with pytest.raises(CrystalStudioError, match="between 1 and 3"):
        sample_model(project, result.model_id, 4, device="cpu", condition_decile=4)
    with pytest.raises(CrystalStudioError, match="composition VAEs only"):
        sample_model(project, result.model_id, 4, device="cpu", decomposition_class=1)


def test_condition_decile_is_only_for_voxel_vaes_on_the_command_line(design_project):
    import subprocess
    import sys

    project, _, vae_id = design_project
    path = str(project.path)
    project.close()
    done = subprocess.run([sys.executable, "-m", "crystal_studio", "sample", path, "--model", str(vae_id), "--n", "2",
                           "--condition-decile", "3", "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 2 and "decile" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "crystal_studio", "sample", path, "--model", str(vae_id), "--n", "2",
                           "--target-model", "1", "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 2 and "--target-model applies to voxel VAEs only" in done.stderr


@pytest.fixture(scope="module")
def formation_predictor(voxel_project):
    """An untrained formation-energy GNN stored in the voxel project (its predictions only need to exist)."""
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor

    project, _ = voxel_project
    torch.manual_seed(0)
    predictor = CrystalPredictor(GNNConfig(n_targets=1, hidden=8, layers=1, n_gaussians=8),
                                 ["formation_energy_per_atom"], members=2)
    predictor.set_normalization([-0.3], [0.2])
    return save_predictor(project, predictor, "tiny Ef", metrics={}, dataset_id=project.dataset_id("syn"))


@pytest.mark.parametrize("within", [0.2, 9.0])
def test_the_within_target_stage_judges_each_novel_draw_by_the_predictor(voxel_project, formation_predictor,
                                                                         within, monkeypatch):
    """The paper's stage: each draw that is not in the training set is predicted and kept when within the
    tolerance of its decile's median; the stored documents carry the verdict the funnel counted. The tiny
    model decodes no valid crystal, so its decoder is replaced by one returning fresh synthetic crystals
    (the training set's stoichiometries, not its structures)."""
    from crystal_studio.design.sampling import VOXEL_TARGET_FUNNEL, sample_model
    from crystal_studio.ml.models.voxel_vae import VoxelGenerator
    from crystal_studio.store import candidates as candidate_store
    from tests.ml_synthetic import synthetic_crystals

    fresh = [structure for structure, _ in synthetic_crystals(40, seed=77)]
    monkeypatch.setattr(VoxelGenerator, "decode", lambda self, z, conditions: (fresh[:len(z)], [None] * len(z)))
    project, result = voxel_project
    summary = sample_model(project, result.model_id, 40, seed=4, device="cpu", target_model=formation_predictor,
                           within=within)
    funnel = summary.funnel
    assert tuple(funnel) == VOXEL_TARGET_FUNNEL and funnel["not_in_training_set"] > 0, funnel
    counts = list(funnel.values())
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    judged = [c.evaluation for c in candidate_store.list_candidates(project, summary.run_id)
              if "target" in c.evaluation]
    assert len(judged) == funnel["not_in_training_set"]
    for doc in judged:
        value = doc["properties"]["formation_energy_per_atom"]
        assert doc["target"]["ok"] == (abs(value - doc["target"]["value"]) <= within * abs(doc["target"]["value"]))
    assert sum(d["target"]["ok"] for d in judged) == funnel["within_target"]
    if within == 9.0:  # a loose tolerance keeps every judged draw (synthetic Ef medians are far from 0)
        assert funnel["within_target"] == funnel["not_in_training_set"]


def test_the_target_stage_needs_a_predictor_of_the_condition(voxel_project, design_project):
    from crystal_studio.core.errors import CrystalStudioError
    from crystal_studio.design.sampling import sample_model

    project, result = voxel_project
    with pytest.raises(CrystalStudioError, match="not a property predictor"):
        sample_model(project, result.model_id, 4, device="cpu", target_model=result.model_id)
    with pytest.raises(CrystalStudioError, match="fraction"):
        sample_model(project, result.model_id, 4, device="cpu", target_model=result.model_id, within=float("nan"))
    other, _, vae_id = design_project
    with pytest.raises(CrystalStudioError, match="voxel VAEs only"):
        sample_model(other, vae_id, 4, device="cpu", target_model=1)
