"""LCOMs structure prediction: the csp_vae (composition-conditioned decodes, conservative and MSE
surrogates), the latent optimizer and the csp job's lcoms/mse methods through the API and the CLI."""

from __future__ import annotations

import json
import math
from contextlib import closing

import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from crystal_studio.cli import app
from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.core.progress import CancelToken
from crystal_studio.design.csp import predict_structures, repeat_csp
from crystal_studio.design.optimizers.lcoms import LCOMsConfig, optimize_latents
from crystal_studio.ml.elements import N_ELEMENTS
from crystal_studio.ml.models.csp_vae import LatentEnergy, mine_adversarial_latents, surrogate_loss
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from tests.ml_synthetic import synthetic_crystals, write_csv

RELAX = {"relax_steps": 80, "device": "cpu"}


def rock_salt(a: float = 5.67) -> Structure:
    return Structure(Lattice.from_parameters(a / 2 ** 0.5, a / 2 ** 0.5, a / 2 ** 0.5, 60, 60, 60), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def lcoms_project(tmp_path_factory):
    """A project with synthetic rock salts and perovskites (with energies) and a tiny csp_vae on them."""
    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model
    from crystal_studio.store.importer import import_paths
    from crystal_studio.store.project import Project

    root = tmp_path_factory.mktemp("lcoms")
    project = Project.create(root / "p.sqlite")
    import_paths(project, [write_csv(root / "syn.csv", synthetic_crystals(60, seed=3))], "syn")
    config = config_for("csp_vae", [], epochs=40, surrogate_epochs=40, hidden=64, surrogate_hidden=128,
                        batch_size=16, max_sites=6, device="cpu", threads=1)
    result = train_model(project, "syn", config, "tiny csp")
    project.close()
    return root / "p.sqlite", result.model_id


def _model(project, model_id):
    from crystal_studio.design.csp import _load_models

    _, model, _ = _load_models(project, [model_id], "lcoms", torch.device("cpu"))
    return model


def _trained_pair(steps: int = 300) -> tuple[LatentEnergy, LatentEnergy, torch.Tensor, torch.Tensor]:
    """A conservative (α = 1) and a plain (α = 0) surrogate fitted to the same bowl-shaped energies."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(256, 4, generator=generator)
    composition = torch.zeros(256, N_ELEMENTS)
    target = (z.square().sum(dim=1) - 4.0) / 3.0
    pair = []
    for alpha in (1.0, 0.0):
        torch.manual_seed(1)
        energy = LatentEnergy(4, 64)
        optimizer = torch.optim.Adam(energy.parameters(), lr=3e-3)
        for _ in range(steps):
            loss = surrogate_loss(energy, z, composition, target, alpha, mining_steps=1, mining_step_size=0.5,
                                  gap_limit=1.0)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        pair.append(energy)
    return pair[0], pair[1], z, composition


def test_conservative_loss_raises_the_surrogate_on_mined_latents_and_plain_mse_does_not():
    conservative, plain, z, composition = _trained_pair()
    gaps = {}
    for name, energy in (("conservative", conservative), ("mse", plain)):
        z_plus = mine_adversarial_latents(energy, z, composition, steps=1, step_size=0.5)
        with torch.no_grad():
            gaps[name] = float(energy.standardized(z_plus, composition).mean() - energy.standardized(z, composition).mean())
    assert gaps["mse"] < -0.1  # an optimizer of the plain surrogate sees energy fall where it steps
    assert gaps["conservative"] > gaps["mse"] + 0.2  # the conservative term pushes it back up there
    with torch.no_grad():  # conservatism costs little fit on the data itself
        target = (z.square().sum(dim=1) - 4.0) / 3.0
        assert float((conservative.standardized(z, composition) - target).square().mean()) < 0.3
    assert surrogate_loss(plain, z, composition, target, 0.0, 1, 0.5, 1.0).keys() == {"loss", "mse"}


def test_every_decode_keeps_the_requested_atoms(lcoms_project):
    from crystal_studio.store.project import Project

    path, model_id = lcoms_project
    with closing(Project.open(path)) as project:
        model = _model(project, model_id)
    starts = [rock_salt(), Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]),
              Structure(Lattice.cubic(5.4), ["Si", "Si"], [[0, 0, 0], [.25, .25, .25]])]
    _, _, species = model.structure_tensors(starts)
    z = torch.randn((30, model.config.latent), generator=torch.Generator().manual_seed(5)) * 2
    decoded, reasons = model.decode(z, species[torch.arange(30) % 3])
    assert sum(s is not None for s in decoded) >= 27, reasons
    for k, structure in enumerate(decoded):
        if structure is not None:
            assert structure.composition == starts[k % 3].composition
    outcome = optimize_latents(model, starts, "conservative", LCOMsConfig(steps=5, true_every=0))
    assert [s.composition for s in outcome.decoded if s is not None] == [
        s.composition for s, d in zip(starts, outcome.decoded, strict=True) if d is not None]
    assert len(outcome.trace) == 5 and outcome.surrogate_end[0] <= outcome.surrogate_start[0] + 1e-6


def test_lcoms_from_a_distorted_rock_salt_finds_rock_salt(lcoms_project):
    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle
    from crystal_studio.store.project import Project

    path, model_id = lcoms_project
    with closing(Project.open(path)) as project:
        model = _model(project, model_id)
    distorted = rock_salt(5.9)
    distorted.perturb(0.25)
    distorted.apply_strain([0.06, -0.04, 0.02])
    oracle = ChgnetOracle("cpu")
    scored = []
    outcome = optimize_latents(model, [distorted], "conservative", LCOMsConfig(steps=10, true_every=5),
                               true_energy=lambda s: [r.energy_per_atom for r in oracle.predict(s)],
                               on_step=scored.append)
    assert [row["step"] for row in scored] == list(range(1, 11))
    assert [row["step"] for row in scored if "true_mean" in row] == [1, 5, 10]
    [decoded] = outcome.decoded
    assert decoded.composition.reduced_formula == "NaCl"
    # the job keeps the lowest of the relaxed starts and relaxed decodes: from this start, rock salt
    [reference, start, relaxed] = oracle.relax([rock_salt(), distorted, decoded], fmax=0.05, max_steps=150)
    best = min((start, relaxed), key=lambda r: r.energy_per_atom)
    assert (StructureMatcher().fit(best.final, reference.final)
            or best.energy_per_atom <= reference.energy_per_atom + 0.010)


def test_tiny_lcoms_run_on_nacl_keeps_the_lowest_relaxation_and_repeats(lcoms_project):
    from crystal_studio.store.project import Project

    path, model_id = lcoms_project
    with closing(Project.open(path)) as project:
        events = []
        result = predict_structures(project, ["NaCl"], 4, [model_id], seed=1, max_atoms=2, method="lcoms",
                                    lcoms={"steps": 10, "true_every": 5}, progress=events.append, **RELAX)
        [outcome] = result.formulas
        assert result.method == "csp_lcoms" and outcome.status == "ok"
        assert outcome.n_relaxed == 4 and len(outcome.improvements) == 2  # 2 starts, 2 decodes: the budget
        run = model_store.get_run(project, result.run_id)
        assert run.parameters["method"] == "csp_lcoms" and run.parameters["lcoms"]["steps"] == 10
        assert run.parameters["spec"]["constraints"]["formula"] == "NaCl"
        metrics = model_store.run_metrics(project, result.run_id)
        assert len(metrics["lcoms/surrogate_mean"]) == 10 and len(metrics["lcoms/true_mean"]) == 3
        assert any("latent step" in e.message for e in events)
        trial_energies = metrics["energy_per_atom"]  # every relaxation: 2 starts, then 2 decodes
        assert len(trial_energies) == 4 and outcome.energy_per_atom == pytest.approx(min(e for _, e in trial_energies))
        assert all(c.structure.composition.reduced_formula == "NaCl" and c.evaluation["criteria"]["composition_kept"]
                   for c in candidate_store.list_candidates(project, result.run_id))
        doc = result.as_json()
        assert doc["formula"] == "NaCl" and doc["best"]["candidate_id"] == outcome.candidate_id
        assert doc["n_evaluated"] == 4 and doc["best"]["spacegroup"]
        again = repeat_csp(project, result.run_id, device="cpu")
        assert again.method == "csp_lcoms" and again.formulas[0].energy_per_atom == pytest.approx(
            outcome.energy_per_atom, abs=1e-5)


def test_lcoms_needs_exactly_one_csp_vae_and_cancels_cleanly(lcoms_project):
    from crystal_studio.store.project import Project

    path, model_id = lcoms_project
    with closing(Project.open(path)) as project:
        with pytest.raises(CrystalStudioError, match="exactly one csp_vae"):
            predict_structures(project, ["NaCl"], 4, [], method="lcoms", **RELAX)
        with pytest.raises(CrystalStudioError, match="does not use a csp_vae"):
            predict_structures(project, ["NaCl"], 4, [model_id], method="random", **RELAX)
        with pytest.raises(CrystalStudioError, match="at least 2"):
            predict_structures(project, ["NaCl"], 1, [model_id], method="lcoms", **RELAX)
        with pytest.raises(CrystalStudioError, match="unknown structure-prediction method"):
            predict_structures(project, ["NaCl"], 4, [model_id], method="pso", **RELAX)
        with pytest.raises(CrystalStudioError, match="apply to --method lcoms"):
            predict_structures(project, ["NaCl"], 4, [], method="random", lcoms={"steps": 3}, **RELAX)
        token = CancelToken()

        def cancel_in_latent_stage(event):
            if "latent step 3" in event.message:
                token.cancel()

        with pytest.raises(Cancelled):
            predict_structures(project, ["NaCl"], 2, [model_id], max_atoms=2, method="mse", lcoms={"steps": 8},
                               progress=cancel_in_latent_stage, cancel=token, **RELAX)
        stopped = model_store.list_runs(project, "optimization")[0]
        assert stopped.status == "cancelled" and candidate_store.list_candidates(project, stopped.id) == []


def test_csp_verb_runs_mse_ablation_and_prints_the_contract(lcoms_project):
    path, model_id = lcoms_project
    result = CliRunner().invoke(app, ["csp", str(path), "--formula", "NaCl", "--method", "mse", "--models",
                                      str(model_id), "--n", "2", "--max-atoms", "2", "--relax-steps", "40",
                                      "--set", "steps=4", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {"run_id", "formula", "best", "n_evaluated"} <= set(doc) and doc["method"] == "csp_mse"
    assert doc["formula"] == "NaCl" and doc["n_evaluated"] == 2
    assert math.isfinite(doc["best"]["energy_per_atom"]) and doc["best"]["spacegroup"]
    bad = CliRunner().invoke(app, ["csp", str(path), "--formula", "NaCl", "--method", "lcoms", "--models",
                                   str(model_id), "--set", "stepz=4", "--device", "cpu"])
    assert isinstance(bad.exception, CrystalStudioError) and "stepz" in str(bad.exception)  # exit 2 in main()


def test_spec_formula_constraint_is_checked_and_validated():
    from crystal_studio.design.evaluation import evaluate_structure
    from crystal_studio.design.spec import SpecError, spec_from_dict

    doc = {"name": "csp", "objectives": [{"property": "energy_per_atom", "kind": "minimize"}],
           "constraints": {"charge_neutral": False, "template": {"kind": "free"}, "formula": "Na2Cl2"}}
    spec = spec_from_dict(doc)
    assert spec.constraints.formula == "NaCl" and "composition_kept" in spec.criteria_names()
    assert "composition NaCl" in spec.summary() and spec_from_dict(spec.to_dict()).constraints.formula == "NaCl"
    assert evaluate_structure(rock_salt(), spec, {"energy_per_atom": -3.6}).criteria["composition_kept"]
    kcl = rock_salt()
    kcl.replace_species({"Na": "K"})
    assert not evaluate_structure(kcl, spec, {"energy_per_atom": -3.6}).criteria["composition_kept"]
    with pytest.raises(SpecError, match="constraints.formula"):
        spec_from_dict({**doc, "constraints": {**doc["constraints"], "formula": "Xq3"}})
