"""Design specs, candidate evaluation, SMOACS mechanics and the baselines (tiny untrained models)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Composition, Lattice, Structure

from crystal_studio.core.paths import RESOURCES
from crystal_studio.design.evaluation import evaluate_structure, mark_unique_and_novel, summarize
from crystal_studio.design.spec import SpecError, load_spec, spec_from_dict

SPECS = RESOURCES / "specs"


def perovskite(a="Sr", b="Ti", x="O", lattice=3.9) -> Structure:
    return Structure(Lattice.cubic(lattice), [a, b, x, x, x],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


@pytest.fixture
def gap_spec():
    return load_spec(SPECS / "smoacs_perovskite_gap_2.5eV.json")


def test_shipped_specs_load_and_round_trip(tmp_path):
    names = sorted(p.name for p in SPECS.glob("*.json"))
    assert len(names) >= 4
    for path in SPECS.glob("*.json"):
        spec = load_spec(path)
        spec.save(tmp_path / path.name)
        assert load_spec(tmp_path / path.name) == spec
        assert spec.summary().startswith("Find crystals with")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["objectives"][0].update(property="bandgap_xyz"), "objectives[0].property: unknown property"),
    (lambda d: d["objectives"][0].update(kind="close_to"), "objectives[0].kind"),
    (lambda d: d["objectives"][0].pop("value"), "objectives[0].value: required"),
    (lambda d: d["objectives"][0].update(tolerance=0), "needs a tolerance > 0"),
    (lambda d: d["constraints"].update(tolerance_factor=[1.0, 0.8]), "min 1 > max 0.8"),
    (lambda d: d["constraints"].update(allowed_elements=[]), "non-empty list"),
    (lambda d: d["constraints"].update(allowed_elements=["Qq"]), "unknown element(s) 'Qq'"),
    (lambda d: d.update(objectives=[]), "at least one objective"),
    (lambda d: d["constraints"]["template"].update(kind="spinel"), "template.kind"),
])
def test_invalid_specs_name_the_field(change, message):
    doc = json.loads((SPECS / "smoacs_perovskite_gap_2.5eV.json").read_text())
    change(doc)
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        spec_from_dict(doc)


def test_bad_spec_file_is_a_clear_error(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(SpecError, match="s.json: not valid JSON"):
        load_spec(tmp_path / "s.json")


def test_evaluation_checks_on_hand_made_structures(gap_spec):
    good = evaluate_structure(perovskite("Ba", "Ti"), gap_spec, {"band_gap": 2.5, "formation_energy_per_atom": -3})
    assert good.criteria == {"band_gap_target": True, "formation_energy_per_atom_below": True,
                             "charge_neutral": True, "template_kept": True, "tolerance_factor": False,
                             "min_distance": True}  # BaTiO3: t = 1.06
    ca = evaluate_structure(perovskite("Ca", "Ti", lattice=3.8), gap_spec, {"band_gap": 2.4,
                                                                            "formation_energy_per_atom": -3})
    assert ca.success and 0.8 <= ca.tolerance_factor <= 1.0
    charged = evaluate_structure(perovskite("Na", "Ti"), gap_spec, {"band_gap": 2.5, "formation_energy_per_atom": -3})
    assert charged.criteria["charge_neutral"] is False
    moved = perovskite("Ca", "Ti")
    moved.translate_sites([1], [0.2, 0, 0])  # B site 0.2 (fractional) off its ideal position
    assert evaluate_structure(moved, gap_spec, {}).criteria["template_kept"] is False
    sheared = Structure(Lattice.from_parameters(3.9, 3.9, 3.9, 80, 90, 90), moved.species, perovskite().frac_coords)
    assert evaluate_structure(sheared, gap_spec, {}).criteria["template_kept"] is False
    squeezed = perovskite("Ca", "Ti", lattice=0.8)
    squeezed_eval = evaluate_structure(squeezed, gap_spec, {})
    assert not squeezed_eval.criteria["min_distance"] and not squeezed_eval.structurally_valid
    shifted = perovskite("Ca", "Ti")
    shifted.translate_sites(list(range(5)), [0.37, 0.11, 0.5])  # origin does not matter
    assert evaluate_structure(shifted, gap_spec, {}).criteria["template_kept"] is True


def test_uniqueness_novelty_and_summary(gap_spec):
    a, b, c = perovskite("Ca", "Ti", lattice=3.8), perovskite("Ca", "Ti", lattice=3.81), perovskite("Sr", "Zr", lattice=4.1)
    props = {"band_gap": 2.5, "formation_energy_per_atom": -3}
    evs = [evaluate_structure(s, gap_spec, props) for s in (a, b, c)]
    mark_unique_and_novel([a, b, c], evs, reference=[c])
    assert [(e.unique, e.novel) for e in evs] == [(True, True), (False, True), (True, False)]
    summary = summarize([e.as_json() for e in evs], gap_spec)
    assert summary["unique_rate"] == pytest.approx(2 / 3) and summary["novel_rate"] == pytest.approx(2 / 3)
    assert set(summary["criteria"]) == set(gap_spec.criteria_names())


@pytest.fixture(scope="module")
def tiny_predictor():
    from crystal_studio.ml.models.gnn import GNNConfig
    from crystal_studio.ml.predictor import CrystalPredictor

    torch.manual_seed(0)
    predictor = CrystalPredictor(GNNConfig(n_targets=2, hidden=16, layers=1, n_gaussians=8),
                                 ["band_gap", "formation_energy_per_atom"], members=2)
    predictor.set_normalization([1.0, -1.0], [1.0, 1.0])
    return predictor


def test_smoacs_argmax_crystals_are_neutral_and_on_template(gap_spec, tiny_predictor):
    from crystal_studio.design.optimizers.smoacs import SmoacsOptimizer

    opt = SmoacsOptimizer(gap_spec, tiny_predictor, n_candidates=8, n_steps=12, seed=3)
    reports = list(opt.steps())
    assert [r.step for r in reports] == list(range(1, 13))
    proposals = opt.candidates()
    assert len(proposals) == 8
    tol = gap_spec.constraints.template.coordinate_tolerance
    for p in proposals:
        s = p.structure
        assert Composition(s.composition).oxi_state_guesses(), s.composition  # neutral by construction
        ev = evaluate_structure(s, gap_spec, p.properties)
        assert ev.criteria["charge_neutral"] and ev.criteria["template_kept"]
        assert all(angle == pytest.approx(90) for angle in s.lattice.angles)
        ideal = opt.space.ideal_frac.numpy()
        delta = (s.frac_coords - ideal + 0.5) % 1 - 0.5
        assert np.abs(delta).max() <= tol + 1e-6


def test_smoacs_lowers_its_loss_and_is_seeded(gap_spec, tiny_predictor):
    from crystal_studio.design.optimizers.settings import SmoacsConfig
    from crystal_studio.design.optimizers.smoacs import SmoacsOptimizer

    config = SmoacsConfig(temperature_start=1.0, temperature_end=0.5)
    runs = []
    for _ in range(2):
        opt = SmoacsOptimizer(gap_spec, tiny_predictor, n_candidates=8, n_steps=25, seed=5, config=config)
        runs.append([r.metrics["loss/mean"] for r in opt.steps()])
    assert runs[0][-1] < runs[0][0]
    assert runs[0] == pytest.approx(runs[1])


def test_random_baseline_keeps_the_best(gap_spec, tiny_predictor):
    from crystal_studio.design.optimizers.baselines import RandomSearch

    opt = RandomSearch(gap_spec, tiny_predictor, n_candidates=6, n_steps=3, seed=1)
    best = [r.metrics["loss/best"] for r in opt.steps()]
    assert best == sorted(best, reverse=True)  # never gets worse
    proposals = opt.candidates()
    assert len(proposals) == 6
    assert all(evaluate_structure(p.structure, gap_spec, p.properties).criteria["charge_neutral"] for p in proposals)


def test_spec_with_properties_the_model_lacks_is_refused(tiny_predictor):
    from crystal_studio.design.optimizers.smoacs import SmoacsOptimizer

    spec = load_spec(SPECS / "builtin_bulk_modulus_160GPa.json")
    with pytest.raises(SpecError, match="spec needs bulk_modulus"):
        SmoacsOptimizer(spec, tiny_predictor, n_candidates=2, n_steps=1)
