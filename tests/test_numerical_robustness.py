"""Numerical robustness (issue 17 item 4): NaN/inf in training or optimization ends the run cleanly with
a message and keeps the last good state; degenerate cells an optimizer proposes are rejected with a
counted reason; predictions outside a predictor's training domain are flagged (ml/domain.py) in
``predict``, ``evaluate`` and on candidates.

The GNN trainer's own NaN guard (best checkpoint kept; a first-epoch divergence fails the run) is
tested in tests/test_ml_training.py (test_nan_guard_keeps_the_best_checkpoint,
test_nan_in_the_first_epoch_fails_cleanly).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.paths import RESOURCES
from crystal_studio.design import job as job_module
from crystal_studio.design.evaluation import lattice_problem
from crystal_studio.design.job import run_optimization
from crystal_studio.design.optimizers.base import Optimizer, Proposal, StepReport
from crystal_studio.design.optimizers.smoacs import SmoacsOptimizer
from crystal_studio.design.spec import load_spec
from crystal_studio.ml.domain import domain_flags, domain_reference, spread_scores
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project
from tests.clitools import invoke_cli
from tests.ml_synthetic import synthetic_crystals, write_csv

SPEC = RESOURCES / "specs" / "smoacs_perovskite_gap_2.5eV.json"
PEROVSKITE_SITES = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def perovskite(a: str, b: str, x: str, lattice: Lattice) -> Structure:
    return Structure(lattice, [a, b, x, x, x], PEROVSKITE_SITES)


# ------------------------------------------------------------------ NaN/inf in an optimization


def test_a_non_finite_loss_stops_smoacs_and_keeps_the_archived_candidates(design_project, monkeypatch):
    project, model_id, _ = design_project
    real = SmoacsOptimizer.loss

    def poisoned(self, step):
        total, terms, mean = real(self, step)
        return (total * math.nan if step >= 6 else total), terms, mean  # steps 1-6 fine, step 7 poisoned

    monkeypatch.setattr(SmoacsOptimizer, "loss", poisoned)
    result = run_optimization(project, load_spec(SPEC), "smoacs", [model_id], n_candidates=4, n_steps=20, seed=1,
                              device="cpu", settings={"archive_every": 2})
    run = model_store.get_run(project, result.run_id)
    assert run.status == "completed"
    stop = ("stopped at step 7: the loss of 4 of 4 crystals became non-finite (NaN/inf); kept the candidates "
            "archived up to step 6")
    assert result.summary["stopped"] == stop and stop in run.message
    steps = [s for s, _ in model_store.run_metrics(project, result.run_id)["loss/best"]]
    assert steps == [1, 2, 3, 4, 5, 6]  # nothing recorded from the poisoned step on
    records = candidate_store.list_candidates(project, result.run_id)
    assert 1 <= len(records) == result.n_candidates
    assert all(math.isfinite(v) for r in records for v in r.evaluation["properties"].values())


def test_a_loss_that_is_non_finite_from_the_start_ends_with_no_candidates_and_says_why(design_project, monkeypatch):
    project, model_id, _ = design_project
    real = SmoacsOptimizer.loss
    monkeypatch.setattr(SmoacsOptimizer, "loss", lambda self, step: (lambda t: (t[0] * math.inf, *t[1:]))(
        real(self, step)))
    result = run_optimization(project, load_spec(SPEC), "smoacs", [model_id], n_candidates=3, n_steps=5, seed=1,
                              device="cpu")
    assert result.n_candidates == 0 and "stopped at step 1" in result.summary["stopped"]
    assert model_store.get_run(project, result.run_id).status == "completed"


# ------------------------------------------------------------------ degenerate cells


@pytest.mark.parametrize(("lattice", "reason"), [
    (np.diag([3.9, 3.9, 3.9]), None),
    (np.diag([3.9, 3.9, 0.2]), "lattice vector under 0.5 Å"),
    (np.diag([3.9, 3.9, 900.0]), "lattice vector over 500 Å"),
    (np.array([[4.0, 0, 0], [0, 4.0, 0], [4.0, 4.0, 1e-3]]), "flat cell"),
    (np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, math.nan]]), "non-finite lattice"),
])
def test_degenerate_cells_are_named(lattice, reason):
    structure = Structure(Lattice(lattice, pbc=(True, True, True)), ["Sr", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]],
                          validate_proximity=False)
    assert lattice_problem(structure) == reason


class _Degenerate(Optimizer):
    """An optimizer whose final crystals include degenerate cells (as a runaway optimizer's would)."""

    name = "degenerate"

    def steps(self):
        yield StepReport(1, 1, {"loss/best": 0.0})

    def candidates(self):
        good = perovskite("Sr", "Ti", "O", Lattice.cubic(3.9))
        flat = perovskite("Ba", "Ti", "O", Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 1e-4]]))
        needle = perovskite("Ca", "Ti", "O", Lattice.tetragonal(3.9, 0.1))
        nan = perovskite("Sr", "Zr", "O", Lattice.cubic(3.9))
        nan.lattice = Lattice(np.full((3, 3), math.nan))
        props = {"band_gap": 2.5, "formation_energy_per_atom": -1.0}
        return [Proposal(s, props, origin=str(k)) for k, s in enumerate((good, flat, needle, nan, flat.copy()))]


def test_the_job_rejects_degenerate_candidates_and_counts_each_reason(design_project, monkeypatch):
    project, model_id, _ = design_project
    monkeypatch.setattr(job_module, "make_optimizer", lambda method, spec, *a, **k: _Degenerate(spec, 5, 1))
    result = run_optimization(project, load_spec(SPEC), "smoacs", [model_id], n_candidates=5, n_steps=1,
                              device="cpu")
    assert result.n_candidates == 1
    assert result.summary["rejected"] == {"flat cell": 2, "lattice vector under 0.5 Å": 1, "non-finite lattice": 1}
    run = model_store.get_run(project, result.run_id)
    assert run.status == "completed"
    assert "rejected 2 (flat cell), 1 (lattice vector under 0.5 Å), 1 (non-finite lattice)" in run.message
    [record] = candidate_store.list_candidates(project, result.run_id)
    assert record.formula == "SrTiO3"


def test_smoacs_cells_stay_clamped(design_project):
    """SMOACS never proposes a degenerate cell: its lengths are a0 ± lattice_slack ('a0') or clamped to
    [min_length, max_length] ('free'), its angles 90°."""
    project, model_id, _ = design_project
    for settings in ({}, {"geometry": "free", "lr_lattice": 5.0}):
        result = run_optimization(project, load_spec(SPEC), "smoacs", [model_id], n_candidates=6, n_steps=8, seed=2,
                                  device="cpu", settings=settings)
        assert "rejected" not in result.summary
        for record in candidate_store.list_candidates(project, result.run_id):
            assert lattice_problem(record.structure) is None
            assert all(2.0 - 1e-6 <= x <= 10.0 + 1e-6 for x in record.structure.lattice.abc)


# ------------------------------------------------------------------ NaN in a generative model's training


def test_a_diverging_crystal_vae_fails_with_the_reason_and_keeps_its_last_good_epoch(project, monkeypatch):
    from crystal_studio.ml import crystal_vae_training
    from crystal_studio.ml.kinds import config_for
    from crystal_studio.ml.training import train_model
    from crystal_studio.store.importer import import_paths
    from tests.conftest import GOOD

    import_paths(project, [GOOD], "good")
    real, calls = crystal_vae_training._weighted, {"n": 0}

    def poisoned(terms, config):
        calls["n"] += 1
        loss = real(terms, config)
        return loss * math.nan if calls["n"] > 4 else loss  # 1 batch + 1 validation per epoch: epoch 3 diverges

    monkeypatch.setattr(crystal_vae_training, "_weighted", poisoned)
    config = config_for("crystal_vae", [], epochs=6, hidden=16, channels=4, batch_size=16, max_sites=8,
                        prior_samples=4, device="cpu", threads=1)
    with pytest.raises(CrystalStudioError, match=r"diverged at epoch 3 \(non-finite loss\); try a smaller --lr"):
        train_model(project, "good", config)
    [run] = model_store.list_runs(project, "train")
    assert run.status == "failed" and "diverged at epoch 3" in run.message
    assert [s for s, _ in model_store.run_metrics(project, run.id)["val_loss"]] == [0, 1]
    assert model_store.run_state_path(project, run.id).is_file()  # the last good epoch, to resume from
    assert model_store.list_models(project) == []


# ------------------------------------------------------------------ out-of-domain flags


def test_spread_scores_and_flags():
    scale = [0.5, 2.0]
    assert spread_scores(np.array([[0.05, 0.4], [np.nan, 0.2], [np.nan, np.nan]]), scale)[:2].tolist() == [0.2, 0.1]
    assert math.isnan(spread_scores(np.array([[np.nan, np.nan]]), scale)[0])
    val = np.abs(np.random.default_rng(0).normal(0.1, 0.02, size=(200, 2)))
    ref = domain_reference(val, scale, ["O", "Sr", "Ti"], [10.0, 14.0])
    assert ref["n"] == 200 and ref["quantiles"]["0.5"] < ref["threshold"] == ref["quantiles"]["0.99"]
    flags = domain_flags(ref, np.array([[0.01, 0.1], [0.5, 5.0], [0.01, 0.1], [0.01, 0.1]]),
                         [["Sr", "Ti", "O"], ["Sr", "Ti", "O"], ["Cs", "Pb", "I"], ["Sr", "O"]], [12.0, 12.0, 12.0, 40.0])
    assert [f["out_of_domain"] for f in flags] == [False, True, True, True]
    assert "ensemble spread" in flags[1]["reason"] and flags[1]["spread_ratio"] > 1
    assert flags[2]["reason"] == "element(s) Cs, I, Pb not in the training data"
    assert flags[3]["reason"].startswith("volume 40 Å³/atom outside the training range 10–14")
    assert domain_reference(np.zeros((5, 2)), scale, ["O"]) is None  # a single member has no spread
    assert domain_flags(None, np.zeros((2, 2)), [["O"], ["O"]]) == [None, None]


cli = functools.partial(invoke_cli, json_exit_codes=(0, 3))  # 3: partly done, still a document


@pytest.fixture(scope="module")
def domain_model(tmp_path_factory):
    """A 3-member GNN trained through the CLI on 60 synthetic perovskites and rock salts, 20 held-out
    crystals like them (as CIFs and a labelled CSV), and crystals unlike them."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("domain")
    project = root / "p.sqlite"
    crystals = synthetic_crystals(80, seed=3)
    assert cli("new", project)[0] == 0
    assert cli("import", project, write_csv(root / "train.csv", crystals[:60]), "--dataset", "syn")[0] == 0
    code, doc, out = cli("train", project, "--dataset", "syn", "--model", "gnn", "--targets",
                         "formation_energy_per_atom,band_gap", "--epochs", "15", "--ensemble", "3", "--device", "cpu",
                         "--seed", "1", "--batch-size", "8", "--hidden", "16", "--layers", "2", "--cutoff", "4.5",
                         "--threads", "1", "--json")
    assert code == 0, out
    torch.set_num_threads(threads)
    like = root / "like"
    like.mkdir()
    for k, (structure, _) in enumerate(crystals[60:]):
        structure.to(filename=str(like / f"like{k}.cif"))
    unlike = root / "unlike"
    unlike.mkdir()
    for name, structure in {
        "CsPbI3": perovskite("Cs", "Pb", "I", Lattice.cubic(4.0)),  # elements never trained on
        "AuHg": Structure(Lattice.cubic(3.0), ["Au", "Hg"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "SrTiO3-expanded": perovskite("Sr", "Ti", "O", Lattice.cubic(8.0)),  # a cell unlike any trained on
        "SrTiO3-crushed": perovskite("Sr", "Ti", "O", Lattice.cubic(2.6)),
    }.items():
        structure.to(filename=str(unlike / f"{name}.cif"))
    return {"project": project, "model_id": doc["model_id"], "like": like, "unlike": unlike,
            "held_out_csv": write_csv(root / "held.csv", crystals[60:])}


def test_the_trained_model_stores_its_domain(domain_model):
    project = Project.open(domain_model["project"])
    domain = model_store.get_model(project, domain_model["model_id"]).hyperparameters["training"]["domain"]
    assert domain["quantile"] == 0.99 and domain["threshold"] > 0 and domain["n"] == 12  # val + test splits
    assert set(domain["quantiles"]) == {"0.5", "0.9", "0.95", "0.99"}
    assert set(domain["elements"]) <= {"Sr", "Ba", "Ca", "K", "Na", "Ti", "Zr", "Nb", "Ta", "Sn", "O", "F"}
    assert 5 < domain["volume_per_atom"][0] < domain["volume_per_atom"][1] < 100
    project.close()


def test_predict_flags_crystals_unlike_the_training_data_and_few_like_it(domain_model):
    code, like, _ = cli("predict", domain_model["project"], "--model", domain_model["model_id"], domain_model["like"],
                        "--json")
    assert code == 0
    flagged = [row for row in like["predictions"] if row["out_of_domain"]]
    assert len(flagged) <= 4, flagged  # of 20 held-out crystals like the training ones
    code, unlike, _ = cli("predict", domain_model["project"], "--model", domain_model["model_id"],
                          domain_model["unlike"], "--json")
    assert code == 0
    rows = {Path(row["source"]).stem: row for row in unlike["predictions"]}
    assert all(row["out_of_domain"] for row in rows.values()), rows
    assert "element(s) Cs, I, Pb not in the training data" in rows["CsPbI3"]["domain_reason"]
    assert "outside the training range" in rows["SrTiO3-expanded"]["domain_reason"]
    median_like = float(np.median([row["domain_spread_ratio"] for row in like["predictions"]]))
    assert rows["CsPbI3"]["domain_spread_ratio"] > 2 * median_like  # the members disagree there
    code, _, table = cli("predict", domain_model["project"], "--model", domain_model["model_id"],
                         domain_model["unlike"] / "CsPbI3.cif")
    assert code == 0 and "domain" in table and "OUT" in table


def test_evaluate_counts_the_crystals_out_of_domain(domain_model):
    code, doc, _ = cli("evaluate", domain_model["project"], "--model", domain_model["model_id"], "--data",
                       domain_model["held_out_csv"], "--json")
    assert code == 0 and doc["n"] == 20
    assert doc["out_of_domain"]["n"] == len(doc["out_of_domain"]["sources"]) <= 4
    code, _, table = cli("evaluate", domain_model["project"], "--model", domain_model["model_id"], "--data",
                         domain_model["held_out_csv"])
    assert code == 0 and "of 20 structures out of the training domain" in table


def test_candidates_carry_the_domain_flag(domain_model):
    project = Project.open(domain_model["project"])
    result = run_optimization(project, load_spec(SPEC), "smoacs", [domain_model["model_id"]], n_candidates=6,
                              n_steps=6, seed=0, device="cpu")
    records = candidate_store.list_candidates(project, result.run_id)
    assert records and all({"out_of_domain", "spread_ratio", "reason"} <= set(r.evaluation["domain"]) for r in records)
    assert result.summary["out_of_domain"] == sum(r.evaluation["domain"]["out_of_domain"] for r in records)
    code, doc, _ = cli("candidates", domain_model["project"], "--run", result.run_id, "--json")
    assert code == 0 and all("out_of_domain" in c["domain"] for c in doc["candidates"])
    project.close()
