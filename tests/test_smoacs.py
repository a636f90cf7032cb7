"""SMOACS mechanics that keep it honest: composition-consistent geometry, copy-and-mutate, the archive
of unique crystals, caution with ensembles, shared tolerance factor with the evaluator, settings,
and the independent judge of a run (tiny untrained models, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from crystal_studio.core.chemistry import perovskite_lattice_from_radii
from crystal_studio.core.options import OptionsError, apply_options
from crystal_studio.core.paths import RESOURCES
from crystal_studio.design.evaluation import evaluate_structure, mark_unique_and_novel
from crystal_studio.design.optimizers.perovskite import PAPER_PATTERNS, PerovskiteSpace
from crystal_studio.design.optimizers.settings import SmoacsConfig
from crystal_studio.design.optimizers.smoacs import SmoacsOptimizer
from crystal_studio.design.spec import load_spec
from crystal_studio.ml.elements import ELEMENTS

SPEC = RESOURCES / "specs" / "smoacs_perovskite_gap_2.5eV.json"


@pytest.fixture
def spec():
    return load_spec(SPEC)


def tiny_predictor(members: int = 2, seed: int = 0):
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor

    torch.manual_seed(seed)
    predictor = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                                 ["band_gap", "formation_energy_per_atom"], members=members)
    predictor.set_normalization([2.0, -1.0], [1.0, 0.5])
    return predictor


def test_lattice_follows_the_composition_within_the_slack(spec):
    opt = SmoacsOptimizer(spec, tiny_predictor(), n_candidates=8, n_steps=20, seed=2,
                          config=SmoacsConfig(lattice_slack=0.03, lr_lattice=0.5))
    for _ in opt.steps():
        hard = opt.hard_crystals()
        a0 = perovskite_lattice_from_radii(*opt.space.role_radii(hard.pattern, hard.elements).T)
        ratio = hard.lengths / a0[:, None]
        assert np.all(np.abs(ratio - 1) <= 0.03 + 1e-5)
    for proposal in opt.candidates():
        charges = proposal.site_charges
        ev = evaluate_structure(proposal.structure, spec, proposal.properties, site_charges=charges)
        assert ev.criteria["template_kept"] and ev.criteria["charge_neutral"]
        # coordinates are frozen on the ideal sites by default
        assert np.allclose(proposal.structure.frac_coords % 1, opt.space.ideal_frac.numpy() % 1, atol=1e-6)


def test_free_geometry_and_offsets_stay_inside_their_bounds(spec):
    config = SmoacsConfig(geometry="free", max_offset=0.05, lr_coords=0.05)
    opt = SmoacsOptimizer(spec, tiny_predictor(), n_candidates=6, n_steps=10, seed=0, config=config)
    list(opt.steps())
    for proposal in opt.candidates():
        delta = (proposal.structure.frac_coords - opt.space.ideal_frac.numpy() + 0.5) % 1 - 0.5
        assert np.abs(delta).max() <= 0.05 + 1e-6
        assert all(2.0 <= length <= 10.0 for length in proposal.structure.lattice.abc)


def test_copy_and_mutate_keeps_successful_and_redraws_the_rest(spec):
    opt = SmoacsOptimizer(spec, tiny_predictor(), n_candidates=10, n_steps=5, seed=1,
                          config=SmoacsConfig(keep_fraction=0.2))
    hard = opt.hard_crystals()
    hard.passes[:] = False
    hard.passes[[3, 7]] = True  # "successful" crystals
    hard.loss[:] = np.arange(10, dtype=float)  # 0 and 1 are the best of the rest
    before_sites = opt.site_logits.detach().clone()
    before_patterns = opt.pattern_logits.detach().clone()
    replaced = set(opt.mutate(hard).tolist())
    kept = {0, 1, 3, 7}
    assert replaced == set(range(10)) - kept
    for i in kept:
        assert torch.equal(opt.site_logits[i], before_sites[i])
    donors = [before_patterns[d] for d in (0, 1, 3, 7)]
    for i in replaced:
        assert not torch.allclose(opt.site_logits[i], before_sites[i])  # types re-drawn
        assert any(torch.equal(opt.pattern_logits[i], d) for d in donors)  # pattern weights of a donor


def test_archive_returns_unique_crystals_best_first(spec):
    opt = SmoacsOptimizer(spec, tiny_predictor(), n_candidates=16, n_steps=30, seed=4)
    list(opt.steps())
    proposals = opt.candidates()
    assert 0 < len(proposals) <= 16
    entries = opt.archive.best(16)
    assert len({opt.archive.key(e.elements) for e in entries}) == len(entries)
    ranks = [(not e.passes, e.loss) for e in entries]
    assert ranks == sorted(ranks)
    evaluations = [evaluate_structure(p.structure, spec, p.properties, site_charges=p.site_charges) for p in proposals]
    mark_unique_and_novel([p.structure for p in proposals], evaluations)
    assert all(ev.unique for ev in evaluations)
    assert len(opt.archive) >= len(proposals)


def test_evaluator_and_optimizer_agree_on_the_tolerance_factor(spec):
    opt = SmoacsOptimizer(spec, tiny_predictor(), n_candidates=24, n_steps=15, seed=7)
    list(opt.steps())
    entries = opt.archive.best(24)
    for entry, proposal in zip(entries, opt.candidates(), strict=True):
        ev = evaluate_structure(proposal.structure, spec, proposal.properties, site_charges=proposal.site_charges)
        assert ev.tolerance_factor == pytest.approx(entry.tolerance, abs=1e-6)
        lo, hi = spec.constraints.tolerance_factor
        assert ev.criteria["tolerance_factor"] == (lo <= entry.tolerance <= hi)


def test_caution_defaults_to_one_for_ensembles_only(spec):
    assert SmoacsOptimizer(spec, tiny_predictor(members=3), 2, 1).scorer.caution == 1.0
    assert SmoacsOptimizer(spec, tiny_predictor(members=1), 2, 1).scorer.caution == 0.0
    explicit = SmoacsOptimizer(spec, tiny_predictor(members=3), 2, 1, config=SmoacsConfig(caution=0.5))
    assert explicit.scorer.caution == 0.5


def test_caution_makes_the_loss_pessimistic(spec):
    predictor = tiny_predictor(members=3)
    plain = SmoacsOptimizer(spec, predictor, 8, 1, seed=0, config=SmoacsConfig(caution=0.0))
    careful = SmoacsOptimizer(spec, predictor, 8, 1, seed=0, config=SmoacsConfig(caution=2.0))
    with torch.no_grad():
        assert torch.all(careful.loss(0)[0] >= plain.loss(0)[0] - 1e-6)


def test_paper_patterns_limit_the_chemistry(spec):
    space = PerovskiteSpace.from_spec(spec, "paper")
    assert set(space.patterns) <= set(PAPER_PATTERNS) and space.patterns
    assert len(PerovskiteSpace.from_spec(spec, "all").patterns) > len(space.patterns)


def test_settings_are_parsed_and_checked():
    config = apply_options(SmoacsConfig(), {"geometry": "free", "caution": "auto", "mutate_at": "0.5",
                                             "restart_schedules": "false", "archive_every": "3"}, "smoacs")
    assert (config.geometry, config.caution, config.mutate_at, config.restart_schedules, config.archive_every) == \
        ("free", None, (0.5,), False, 3)
    with pytest.raises(OptionsError, match="smoacs has no setting 'speed'.*settings: .*geometry"):
        apply_options(SmoacsConfig(), {"speed": "1"}, "smoacs")
    with pytest.raises(OptionsError, match="'archive_every': expected an integer, got 'x'"):
        apply_options(SmoacsConfig(), {"archive_every": "x"}, "smoacs")
    with pytest.raises(OptionsError, match="geometry must be one of a0, free"):
        apply_options(SmoacsConfig(), {"geometry": "cubic"}, "smoacs")


@pytest.fixture
def project_with_two_models(project):
    from crystal_studio.ml.predictor import save_predictor

    ids = [save_predictor(project, tiny_predictor(seed=s), f"tiny {s}", metrics={}) for s in (0, 1)]
    return project, ids


def test_judge_verdict_is_stored_beside_the_optimizers(project_with_two_models, spec):
    from crystal_studio.core.errors import CrystalStudioError
    from crystal_studio.design.job import run_optimization, run_summary
    from crystal_studio.store import candidates as candidate_store
    from crystal_studio.store import models as model_store

    project, (own, judge) = project_with_two_models
    result = run_optimization(project, spec, "smoacs", [own], n_candidates=6, n_steps=6, seed=0, device="cpu",
                              settings={"archive_every": "2"}, judge_model=judge)
    summary = result.summary
    assert summary["judge"]["model_id"] == judge
    assert set(summary["judge"]["criteria"]) == set(summary["criteria"])
    records = candidate_store.list_candidates(project, result.run_id)
    for record in records:
        verdict = record.evaluation["judge"]
        assert set(verdict["properties"]) == {"band_gap", "formation_energy_per_atom"}
        assert verdict["properties"] != record.evaluation["properties"]  # another model, other numbers
        assert record.evaluation["site_charges"] is not None
    assert run_summary(project, result.run_id) == summary
    parameters = model_store.get_run(project, result.run_id).parameters
    assert parameters["judge_model"] == judge and parameters["settings"] == {"archive_every": "2"}
    assert parameters["config"]["archive_every"] == 2
    with pytest.raises(CrystalStudioError, match="must not be one of the optimized models"):
        run_optimization(project, spec, "smoacs", [own], 2, 1, judge_model=own)


def test_cli_set_and_judge(project_with_two_models, tmp_path):
    project, (own, judge) = project_with_two_models
    base = [sys.executable, "-m", "crystal_studio", "optimize", str(project.path), "--spec", str(SPEC),
            "--models", str(own), "--candidates", "4", "--steps", "4", "--device", "cpu"]
    done = subprocess.run(base + ["--set", "geometry=free", "--set", "keep_fraction=0.5", "--judge", str(judge),
                                  "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["summary"]["judge"]["model_id"] == judge
    assert "judge (model" in done.stderr  # the table shows both verdicts
    bad = subprocess.run(base + ["--set", "geometry"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--set expects NAME=VALUE" in bad.stderr
    unknown = subprocess.run(base + ["--set", "warp=9"], capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 2 and "smoacs has no setting 'warp'" in unknown.stderr
    listing = subprocess.run([sys.executable, "-m", "crystal_studio", "methods", "--json"], capture_output=True,
                             text=True, timeout=300)
    methods = {m["name"]: m for m in json.loads(listing.stdout)["methods"]}
    assert {"smoacs", "random", "screen"} <= set(methods)
    assert methods["smoacs"]["family"] == "gradient" and methods["screen"]["needs"] == ["predictor", "dataset"]
    settings = {s["name"]: s for s in methods["smoacs"]["options"]}
    assert settings["lattice_slack"]["default"] == 0.03 and "strain" in settings["lattice_slack"]["help"]
    assert settings["geometry"]["choices"] == ["a0", "free"] and settings["min_length"]["unit"] == "Å"
    assert set(settings) >= {"caution", "patterns"}  # the shared perovskite-search options too


def test_mutation_can_redraw_archived_successes(spec):
    opt = SmoacsOptimizer(spec, tiny_predictor(), n_candidates=10, n_steps=5, seed=1,
                          config=SmoacsConfig(keep_fraction=0.2, keep_successful=False))
    hard = opt.hard_crystals()
    hard.passes[:] = False
    hard.passes[[3, 7]] = True
    hard.loss[:] = np.arange(10, dtype=float)
    assert set(opt.mutate(hard).tolist()) == set(range(10)) - {0, 1}  # only the best fifth stays


def test_generated_abx3_formulas_seed_the_site_logits(project_with_two_models, spec):
    """A sampling run's valid ABX3 formulas become the initial assignment of the crystals (composition
    VAE → SMOACS); invalid and non-ABX3 formulas are skipped, and a run without any is refused."""
    from crystal_studio.core.errors import CrystalStudioError
    from crystal_studio.core.formulas import perovskite_triple
    from crystal_studio.design.job import make_optimizer
    from crystal_studio.store import models as model_store
    from crystal_studio.store.samples import add_samples

    assert perovskite_triple("SrTiO3") == ("Sr", "Ti", "O") and perovskite_triple("KMgF3") == ("K", "Mg", "F")
    assert perovskite_triple("NaCl") is None and perovskite_triple("Sr2TiO4") is None
    project, ids = project_with_two_models
    run = model_store.create_run(project, "sampling", {"n": 9}, 0, "cpu", {})
    add_samples(project, run, [("BaZrO3", 4, {"compositionally_valid": True}),
                               ("SrTiO3", 3, {"compositionally_valid": True}),
                               ("NaTiO3", 1, {"compositionally_valid": False}),
                               ("Li2O", 1, {"compositionally_valid": True})], complete_run="done")
    optimizer = make_optimizer("smoacs", spec, tiny_predictor(), project, 4, 1, 0, "cpu", None,
                               {"seed_run": str(run), "init_scale": "0"})
    hard = optimizer.hard_crystals()
    first = [ELEMENTS[i] for i in hard.elements[0]]
    assert first[0] == "Ba" and first[1] == "Zr" and set(first[2:]) == {"O"}
    assert [ELEMENTS[i] for i in hard.elements[1]][:2] == ["Sr", "Ti"]
    assert [ELEMENTS[i] for i in hard.elements[2]][:2] == ["Ba", "Zr"]  # in turn

    empty = model_store.create_run(project, "sampling", {"n": 1}, 0, "cpu", {})
    add_samples(project, empty, [("NaCl", 1, {"compositionally_valid": True})], complete_run="done")
    with pytest.raises(CrystalStudioError, match="no valid ABX3 formula"):
        make_optimizer("smoacs", spec, tiny_predictor(), project, 4, 1, 0, "cpu", None, {"seed_run": str(empty)})
