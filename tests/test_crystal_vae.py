"""Crystal VAE (Crystal-LSBO): site arrays, encode/decode shapes, decoding to structures or counted
failures, a tiny training run with property heads, and sampling crystals through the CLI."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystal_studio.ml.elements import ELEMENTS
from crystal_studio.ml.models.crystal_vae import (
    EMPTY,
    N_CLASSES,
    CrystalVAE,
    CrystalVAEConfig,
    arrays_to_structures,
    canonical_sites,
    lattice_matrices,
    structurally_valid,
    structure_arrays,
)
from tests.clitools import invoke_cli as invoke
from tests.ml_synthetic import synthetic_crystals, write_csv

TARGETS = ["formation_energy_per_atom", "band_gap"]


def _perovskite(a: float = 3.9) -> Structure:
    return Structure(Lattice.cubic(a), ["O", "Ti", "Sr", "O", "O"],
                     [[0.5, 0.5, 0], [0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_sites_are_put_in_canonical_order_and_padded():
    species, frac = canonical_sites(_perovskite())
    assert species == ["Sr", "Ti", "O", "O", "O"]  # by electronegativity, then Z, then coordinates
    assert frac[2:].tolist() == sorted(frac[2:].tolist())
    big = Structure(Lattice.cubic(8), ["Na"] * 30, np.random.default_rng(0).random((30, 3)))
    arrays, kept, skipped = structure_arrays([_perovskite(), big], max_sites=20)
    assert kept == [0] and skipped == Counter({"more than 20 sites": 1})
    assert arrays.lattice.shape == (1, 6) and arrays.coords.shape == (1, 20, 3) and arrays.species.shape == (1, 20)
    assert (arrays.species[0, 5:] == EMPTY).all() and ELEMENTS[arrays.species[0, 0]] == "Sr"
    assert arrays.lattice[0].tolist() == pytest.approx([3.9, 3.9, 3.9, 90, 90, 90])


def test_lattice_matrices_match_pymatgen():
    params = np.array([[3.0, 4.0, 5.0, 80.0, 95.0, 110.0], [4.0, 4.0, 4.0, 90.0, 90.0, 90.0]])
    ours = lattice_matrices(torch.as_tensor(params)).numpy()
    for row, matrix in zip(params, ours, strict=True):
        assert matrix == pytest.approx(Lattice.from_parameters(*row).matrix, abs=1e-9)


def test_encode_decode_shapes_and_every_decode_is_a_structure_or_a_reason():
    torch.manual_seed(0)
    config = CrystalVAEConfig(max_sites=8, hidden=16, channels=8, n_targets=2)
    model = CrystalVAE(config).eval()
    arrays, _, _ = structure_arrays([_perovskite(), _perovskite(4.1)], config.max_sites)
    lattice, coords, species = model.tensors(arrays)
    assert model.part_means(lattice, coords, species).shape == (2, 3 + 16 + 16)
    z = model.encode(lattice, coords, species)
    assert z.shape == (2, config.latent)
    assert model.encode_structures([_perovskite()]).shape == (1, config.latent)
    lat, xyz, spc = model.decode_arrays(torch.randn(64, config.latent))
    assert lat.shape == (64, 6) and xyz.shape == (64, 8, 3) and spc.shape == (64, 8)
    assert int(spc.max()) < N_CLASSES
    assert model.predict(z).shape == (2, 2)
    terms = model.losses(lattice, coords, species, torch.tensor([[-1.0, float("nan")], [0.5, 2.0]]))
    assert {f"{p}_{t}" for p in ("lattice", "coord", "element", "combined") for t in ("recon", "kl", "property")} \
        == set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
    for scale in (1.0, 30.0, 1e4):  # far outside the prior too
        structures, reasons = model.decode(scale * torch.randn(32, config.latent))
        assert len(structures) == len(reasons) == 32
        for s, r in zip(structures, reasons, strict=True):
            assert (s is None) != (r is None)
            if s is not None:
                assert isinstance(s, Structure) and len(s) >= 1
                assert (s.frac_coords >= 0).all() and (s.frac_coords < 1).all()
                assert all(1.0 <= x <= 40.0 for x in s.lattice.abc)


def test_decoding_reports_its_failures():
    lattice = np.array([[4, 4, 4, 90, 90, 90], [4, 4, 4, 150, 150, 150], [4, 4, 4, 90, 90, 90],
                        [np.nan, 4, 4, 90, 90, 90]], dtype=float)
    coords = np.tile(np.array([[1.25, -0.5, 0.0], [0.5, 0.5, 0.5]]), (4, 1, 1))
    species = np.array([[37, EMPTY], [37, 21], [EMPTY, EMPTY], [37, 21]])
    structures, reasons = arrays_to_structures(lattice, coords, species)
    assert reasons == [None, "non-physical lattice", "no occupied site", "non-finite decode"]
    assert len(structures[0]) == 1 and structures[0].frac_coords[0].tolist() == pytest.approx([0.25, 0.5, 0.0])
    assert structurally_valid(_perovskite()) and not structurally_valid(
        Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]))


@pytest.fixture(scope="module")
def crystal_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("crystal_vae")
    path = root / "p.sqlite"
    assert invoke("new", path)[0] == 0
    data = write_csv(root / "syn.csv", synthetic_crystals(40, seed=5))
    assert invoke("import", path, data, "--dataset", "syn")[0] == 0
    return path


def test_train_with_property_heads_and_sample_through_the_cli(crystal_project, one_torch_thread):
    code, trained, output = invoke("train", crystal_project, "--dataset", "syn", "--model", "crystal_vae",
                                   "--targets", ",".join(TARGETS), "--epochs", 4, "--batch-size", 16, "--hidden", 16,
                                   "--device", "cpu", "--set", "channels=8", "--set", "prior_samples=32", "--json")
    assert code == 0, output
    assert trained["kind"] == "crystal_vae"
    metrics = trained["metrics"]["crystal"]
    for key in ("val_element_accuracy", "val_site_count_accuracy", "val_prior_validity"):
        assert 0 <= metrics[key] <= 1
    for key in ("val_length_mae", "val_angle_mae", "val_coord_rmse", "val_lattice_property", "val_combined_recon",
                "val_loss"):
        assert np.isfinite(metrics[key])

    from crystal_studio.store import models as model_store
    from crystal_studio.store.project import Project

    project = Project.open(crystal_project)
    record = model_store.get_model(project, trained["model_id"], with_checkpoint=False)
    assert record.targets == TARGETS
    curves = model_store.run_metrics(project, trained["run_id"])
    assert {"train_lattice_recon", "train_coord_kl", "train_element_property", "train_combined_recon", "train_loss",
            "val_loss", "val_prior_validity"} <= set(curves)
    assert len(curves["train_loss"]) == 4
    structure_id = project.ids()[0]
    project.close()

    code, doc, output = invoke("sample", crystal_project, "--model", trained["model_id"], "--n", 60, "--seed", 2,
                               "--device", "cpu", "--json")
    assert code == 0, output
    assert {"run_id", "n", "validity", "compositional_validity", "unique_rate", "novel_rate", "funnel"} <= set(doc)
    funnel = doc["funnel"]
    assert list(funnel) == ["sampled", "decoded", "structurally_valid", "compositionally_valid", "unique", "novel"]
    values = list(funnel.values())
    assert values[0] == 60 and all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert funnel["decoded"] + sum(doc["failures"].values()) == 60
    assert doc["validity"] == pytest.approx(funnel["structurally_valid"] / 60)
    assert 0 <= doc["compositional_validity"] <= 1

    from crystal_studio.store.candidates import list_candidates

    project = Project.open(crystal_project)
    candidates = list_candidates(project, doc["run_id"])
    assert len(candidates) == funnel["decoded"]
    assert sum(c.evaluation["valid"] for c in candidates) == funnel["structurally_valid"]
    assert sum(bool(c.evaluation["unique"]) for c in candidates) == funnel["unique"] == sum(c.success for c in candidates)
    assert set(candidates[0].evaluation["properties"]) == set(TARGETS)
    assert isinstance(candidates[0].structure, Structure) and len(candidates[0].evaluation["latent"]) == 20
    project.close()

    again = invoke("sample", crystal_project, "--model", trained["model_id"], "--n", 60, "--seed", 2, "--device",
                   "cpu", "--json")[1]
    assert again["funnel"] == funnel  # same seed, same draws

    code, around, output = invoke("sample", crystal_project, "--model", trained["model_id"], "--n", 20, "--around",
                                  structure_id, "--sigma", 0.1, "--device", "cpu", "--json")
    assert code == 0, output
    assert around["funnel"]["sampled"] == 20


def test_targets_only_for_kinds_with_property_heads():
    from crystal_studio.core.errors import CrystalStudioError
    from crystal_studio.ml.kinds import config_for

    assert config_for("crystal_vae", TARGETS, epochs=3).targets == TARGETS
    assert config_for("crystal_vae", []).targets == []
    with pytest.raises(CrystalStudioError, match="predicts no properties"):
        config_for("composition_vae", TARGETS)
    from crystal_studio.core.options import apply_options

    assert apply_options(config_for("crystal_vae", []), {"targets": "band_gap,formation_energy_per_atom"},
                         "crystal_vae").targets == ["band_gap", "formation_energy_per_atom"]
