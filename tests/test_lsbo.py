"""Latent-space Bayesian optimization: the BO loop, its trust region, LCA retraining and the CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystal_studio.core.paths import RESOURCES
from crystal_studio.design.optimizers.lsbo import LatentBO, LatentConsistencyRetrainer
from crystal_studio.design.optimizers.settings import LCAConfig, LSBOConfig
from crystal_studio.ml.kinds import get_kind
from crystal_studio.ml.predictor import load_state

SPEC = RESOURCES / "specs" / "smoacs_perovskite_gap_2.5eV.json"


class CubicDecoder:
    """A stand-in for a crystal VAE whose latent z (4-d) decodes to rock-salt NaCl with a = 5 + z₀ Å;
    z₁ > 2.5 decodes to nothing (a failed decode)."""

    class config:  # noqa: N801 (mirrors CrystalVAE.config)
        latent = 4

    lattice_mean = torch.zeros(6)

    def decode(self, z: torch.Tensor):
        structures, reasons = [], []
        for row in z.tolist():
            if row[1] > 2.5:
                structures.append(None)
                reasons.append("no occupied site")
            else:
                structures.append(Structure(Lattice.cubic(5.0 + row[0]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
                reasons.append(None)
        return structures, reasons


def lattice_target(structures):
    """Exact black box: −(a − 6.5)², best at a = 6.5 Å (z₀ = 1.5)."""
    scores = np.array([-(s.lattice.a - 6.5) ** 2 if s is not None else math.nan for s in structures])
    return scores, [None if s is None else {"properties": {"a": s.lattice.a}} for s in structures]


def test_bo_improves_on_its_seeds_and_counts_failed_decodes(one_torch_thread):
    torch.manual_seed(0)
    loop = LatentBO(CubicDecoder(), lattice_target, LSBOConfig(raw_samples=64, restarts=4, trust_radius=0.0))
    loop.evaluate(torch.tensor([[-2.0, 0, 0, 0], [-1.5, 0, 0, 0], [-2.5, 0, 0, 0], [-1.0, 2.9, 0, 0]]), "dataset seed")
    seeds_best = loop.best_score()
    assert seeds_best == pytest.approx(-(3.5 - 6.5) ** 2)
    x, y = loop.training_data()  # the failed decode is filled in below the worst score
    assert y[3, 0] == pytest.approx(y[:3].min() - 1.0)
    for step in range(1, 13):
        metrics = loop.iterate(step)
        assert metrics["loss/best"] == pytest.approx(-loop.best_score()) and "bo/log_acquisition" in metrics
    assert loop.best_score() > -0.1 > seeds_best  # a within 0.32 Å of the optimum, from 1.5 Å at best
    assert 0.0 < loop.valid_share() <= 1.0


def test_trust_radius_keeps_queries_near_the_best_latent(one_torch_thread):
    torch.manual_seed(1)
    loop = LatentBO(CubicDecoder(), lattice_target, LSBOConfig(raw_samples=32, restarts=2, trust_radius=0.25))
    loop.evaluate(torch.tensor([[-2.0, 0, 0, 0], [0.0, 0, 0, 0], [-1.0, 0, 0, 0]]), "dataset seed")
    for step in range(1, 6):
        best = max(loop.observations, key=lambda o: o.score).z
        loop.iterate(step)
        assert np.abs(loop.observations[-1].z - best).max() <= 0.25 + 1e-6


def test_latent_consistency_retraining_makes_decode_and_encode_agree_around_a_point(tiny_crystal_vae, one_torch_thread):
    from crystal_studio.ml.models.crystal_vae import structure_arrays
    from tests.conftest import GOOD

    record = tiny_crystal_vae
    vae = get_kind("crystal_vae").load().rebuild(record.hyperparameters, [], load_state(record.checkpoint, "m"), "m")
    structures = [Structure.from_file(GOOD / "SrTiO3.cif"), Structure.from_file(GOOD / "GaN_hex.vasp")]
    arrays, _, _ = structure_arrays(structures, vae.config.max_sites)
    center = vae.encode_structures(structures[:1])
    probe = center + 0.3 * torch.randn((32, vae.config.latent), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = float(vae.consistency_loss(probe))
    config = LCAConfig(lca_steps=60, lca_lr=1e-3, lca_gamma=10.0)
    LatentConsistencyRetrainer(vae, arrays, {"recon": 5.0, "kl": 1.0, "property": 1.0}, config, seed=0)(center)
    with torch.no_grad():
        after = float(vae.consistency_loss(probe))
    assert after < 0.7 * before  # measured: 3.3 -> 1.7
    assert not vae.training  # left in eval mode


def test_latent_methods_need_a_crystal_vae_and_say_so(design_project):
    project, model_id, vae_id = design_project
    path = str(project.path)
    project.close()
    base = [sys.executable, "-m", "crystal_studio", "optimize", path, "--spec", str(SPEC), "--models", str(model_id),
            "--candidates", "2", "--steps", "1", "--device", "cpu"]
    missing = subprocess.run([*base, "--method", "lsbo"], capture_output=True, text=True)
    assert missing.returncode == 2 and "--generator" in missing.stderr
    wrong_kind = subprocess.run([*base, "--method", "lca-lsbo", "--generator", str(model_id)], capture_output=True,
                                text=True)
    assert wrong_kind.returncode == 2 and "needs a crystal_vae" in wrong_kind.stderr
    unused = subprocess.run([*base, "--method", "smoacs", "--generator", str(vae_id)], capture_output=True, text=True)
    assert unused.returncode == 2 and "does not use a generator" in unused.stderr


def test_a_failing_gp_fit_keeps_the_previous_hyperparameters(monkeypatch, one_torch_thread):
    import botorch.fit
    from botorch.exceptions.errors import ModelFittingError

    torch.manual_seed(0)
    loop = LatentBO(CubicDecoder(), lattice_target, LSBOConfig(raw_samples=32, restarts=2, trust_radius=0.0))
    loop.evaluate(torch.tensor([[-2.0, 0, 0, 0], [-1.5, 0, 0, 0], [0.5, 0, 0, 0]]), "dataset seed")
    loop.iterate(1)
    fitted = loop._hyper

    def fail(*_args, **_kwargs):
        raise ModelFittingError("All attempts to fit the model have failed.")

    monkeypatch.setattr(botorch.fit, "fit_gpytorch_mll", fail)
    metrics = [loop.iterate(step) for step in (2, 3)]
    assert loop.fit_failures == 2 and metrics[-1]["bo/fit_failures"] == 2.0
    assert loop._hyper is fitted and len(loop.observations) == 6  # the run goes on with the last good fit
