"""Composition VAE: formula vectors and their decoding, training, and sampling through API and CLI."""

from __future__ import annotations

import numpy as np
import pytest

from crystal_studio.core.chemistry import smact_valid
from crystal_studio.core.formulas import fraction_vector, integer_formula
from tests.clitools import invoke_cli as invoke
from tests.clitools import run_cli
from tests.ml_synthetic import synthetic_crystals, write_csv

SYMBOLS = ("H", "Li", "O", "Na", "Cl", "Ti", "Fe", "Sr", "Zr", "La")


@pytest.mark.parametrize("formula", ["NaCl", "Li2O", "Fe2O3", "SrTiO3", "Li7La3Zr2O12", "O2", "LiH"])
def test_formula_round_trip(formula):
    from pymatgen.core import Composition

    vector = fraction_vector(formula, SYMBOLS)
    assert vector.sum() == pytest.approx(1.0) and (vector >= 0).all()
    counts = integer_formula(vector, SYMBOLS)
    assert Composition(counts).reduced_formula == Composition(formula).reduced_formula


def test_decoding_drops_small_fractions_and_reduces_by_the_gcd():
    noisy = fraction_vector("Fe2O3", SYMBOLS) * 0.97
    noisy[SYMBOLS.index("H")] = 0.03  # below the 0.04 threshold: dropped, the rest renormalized
    assert integer_formula(noisy, SYMBOLS) == {"O": 3, "Fe": 2}
    doubled = np.zeros(len(SYMBOLS))
    doubled[[SYMBOLS.index("Ti"), SYMBOLS.index("O")]] = [4, 8]  # Ti4O8 -> TiO2
    assert integer_formula(doubled / doubled.sum(), SYMBOLS) == {"Ti": 1, "O": 2}
    assert all(isinstance(v, int) for v in integer_formula(np.full(len(SYMBOLS), 0.1), SYMBOLS).values())
    assert integer_formula(np.full(len(SYMBOLS), 0.01), SYMBOLS) is None


def test_fraction_vector_names_an_element_the_list_lacks():
    with pytest.raises(KeyError, match="Xe"):
        fraction_vector("XeF2", SYMBOLS)


def test_smact_validity():
    assert smact_valid("NaCl") and smact_valid("Fe2O3") and smact_valid("SrTiO3")
    assert not smact_valid("NaCl2")


@pytest.fixture(scope="module")
def vae_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvae")
    path = root / "p.sqlite"
    assert invoke("new", path)[0] == 0
    data = write_csv(root / "syn.csv", synthetic_crystals(60, seed=3))
    assert invoke("import", path, data, "--dataset", "syn")[0] == 0
    return path


def test_train_hull_and_sample_through_the_cli(vae_project, one_torch_thread):
    code, hull, output = invoke("hull", vae_project, "--dataset", "syn", "--json")
    assert code == 0, output
    assert hull["entries"] == 60 and hull["stable"] >= 1
    code, trained, output = invoke("train", vae_project, "--dataset", "syn", "--model", "composition_vae",
                                   "--epochs", 15, "--device", "cpu", "--set", "recon_weight=25", "--json")
    assert code == 0, output
    assert trained["kind"] == "composition_vae"
    metrics = trained["metrics"]["composition"]
    assert 0 <= metrics["val_formula_accuracy"] <= 1 and np.isfinite(metrics["val_loss"])

    code, doc, output = invoke("sample", vae_project, "--model", trained["model_id"], "--n", 300, "--seed", 1,
                               "--device", "cpu", "--json")
    assert code == 0, output
    assert {"run_id", "n", "validity", "compositional_validity", "unique_rate", "novel_rate", "funnel"} <= set(doc)
    assert doc["n"] == 300 and doc["validity"] is None and "structural validity" in doc["note"]
    funnel = doc["funnel"]
    assert list(funnel) == ["sampled", "decoded", "compositionally_valid", "unique", "novel"]
    assert funnel["sampled"] == 300 >= funnel["decoded"] >= funnel["compositionally_valid"] >= funnel["unique"]
    assert funnel["unique"] >= funnel["novel"]
    assert doc["compositional_validity"] == pytest.approx(funnel["compositionally_valid"] / 300)

    code, listed, _ = invoke("samples", vae_project, "--run", doc["run_id"], "--json")
    assert code == 0
    assert sum(s["count"] for s in listed["samples"]) == funnel["decoded"]
    assert sum(1 for s in listed["samples"] if s["compositionally_valid"]) == funnel["unique"]
    for sample in listed["samples"]:  # every stored formula is an integer, reduced formula
        from pymatgen.core import Composition

        assert Composition(sample["formula"]).reduced_formula == sample["formula"]

    again = invoke("sample", vae_project, "--model", trained["model_id"], "--n", 300, "--seed", 1, "--device", "cpu",
                   "--json")[1]
    assert again["funnel"] == funnel  # same seed, same draws


def exit_code_and_stderr(*args) -> tuple[int, str]:
    """Run the real command line (its error handling lives in main(), outside typer)."""
    result = run_cli(*args)
    return result.returncode, result.stderr


def test_sampling_refuses_a_predictor_and_bad_settings(vae_project):
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor, save_predictor
    from crystal_studio.store.project import Project

    project = Project.open(vae_project)
    model_id = save_predictor(project, CrystalPredictor(GNNConfig(n_targets=1, hidden=8, layers=1, n_gaussians=4),
                                                        ["band_gap"]), "tiny", metrics={})
    project.close()
    code, stderr = exit_code_and_stderr("sample", vae_project, "--model", model_id, "--n", 10)
    assert code == 2 and "composition_vae" in stderr
    code, stderr = exit_code_and_stderr("train", vae_project, "--dataset", "syn", "--model", "composition_vae",
                                        "--cutoff", 4)
    assert code == 2 and "--cutoff does not apply" in stderr
    code, stderr = exit_code_and_stderr("train", vae_project, "--dataset", "syn", "--model", "composition_vae",
                                        "--set", "latent=0")
    assert code == 2 and "latent" in stderr
