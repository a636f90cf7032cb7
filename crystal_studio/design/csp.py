"""Crystal structure prediction for given formulas: random symmetric search (PyXtal) + CHGNet relaxation.

The "composition → structure → predicted properties" pipeline. For each formula (typically a composition
VAE's samples, see :func:`formulas_from_samples`):

1. formula units: the space groups that can hold Z formula units (PyXtal's Wyckoff compatibility check)
   are found for Z = 1, 2, ... while the conventional cell keeps at most ``max_atoms`` atoms; each
   space group is used with the smallest Z it can hold;
2. ``trials`` random symmetric crystals: a space group drawn uniformly among those, a random crystal
   from PyXtal (another space group when PyXtal cannot place the atoms), reduced to its primitive cell;
   the draws come from one numpy generator per formula seeded by (``seed``, formula), so a run repeats
   and a formula gets the same crystals whatever else is in the list;
3. each crystal relaxed by CHGNet with a free cell (FIRE, ``fmax`` eV/Å, at most ``relax_steps``);
4. kept: the lowest-energy structurally valid relaxed structure per formula (``keep="best"``), or every
   structurally distinct one, lowest energy first (``keep="distinct"``);
5. the kept structures predicted by the given property models and stored as candidates of ONE run of
   kind ``optimization`` and method ``csp_random``, so the Candidates panel and the ``candidates`` and
   ``export`` verbs show them like any optimization run. A candidate's structure is the relaxed one (also
   stored as its relaxed structure, with its CHGNet energy), its properties hold ``energy_per_atom``
   (CHGNet, eV/atom) beside the models' predictions, and it succeeds when it is structurally valid and
   its relaxation converged.

Formulas that cannot be done (unknown element, too many atoms per formula unit, PyXtal or every
relaxation failing) are reported per formula with the reason; a string that is not a formula is a
:class:`CrystalStudioError` naming it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
from pymatgen.core import Composition, Element, Structure

from crystal_studio.core.errors import Cancelled, CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.core.structures import min_periodic_distance
from crystal_studio.oracles.chgnet_oracle import chgnet_threads
from crystal_studio.store import candidates as candidate_store
from crystal_studio.store import models as model_store
from crystal_studio.store.project import Project

CSP_METHODS = {"random": "csp_random", "lcoms": "csp_lcoms", "mse": "csp_mse"}  # CLI name → stored method name
METHOD_OF = {stored: name for name, stored in CSP_METHODS.items()}
METHOD = CSP_METHODS["random"]
SURROGATE_OF = {"lcoms": "conservative", "mse": "mse"}  # latent methods → the csp_vae surrogate they descend
KEEP_CHOICES = ("best", "distinct")
MAX_ATTEMPTS = 12  # space groups tried for one trial before the trial is given up
# (0.15 s/step either way on an idle 2-core machine) and lose 10-20x when the cores are shared (measured)
CHGNET_MAX_Z = 94  # CHGNet is trained on elements H..Pu
SPEC = {"name": METHOD, "description": "crystal structure prediction: lowest CHGNet energy per formula",
        "objectives": [{"property": "energy_per_atom", "kind": "minimize"}],
        "constraints": {"charge_neutral": False, "template": {"kind": "free"}}}


@dataclass
class FormulaOutcome:
    """What became of one formula: ``status`` 'ok' (a candidate was stored) or 'failed' (``reason``)."""

    formula: str  # reduced formula (the input text when it has none)
    input: str  # as given
    status: str
    reason: str = ""
    energy_per_atom: float | None = None  # eV/atom, CHGNet, of the kept (lowest-energy) structure
    candidate_id: int | None = None  # of the kept (lowest-energy) structure
    candidate_ids: list[int] = field(default_factory=list)  # every stored one (several with keep='distinct')
    spacegroup: str | None = None  # of the kept relaxed structure
    spacegroup_number: int | None = None
    z: int | None = None  # formula units of the generated (conventional) cell
    converged: bool | None = None
    n_generated: int = 0  # random crystals PyXtal made
    n_relaxed: int = 0  # of which CHGNet relaxed without error
    best_from: str = ""  # where the kept structure came from (random crystal, LCOMs decode)
    improvements: list[float] = field(default_factory=list)  # LCOMs: start − decode energy, eV/atom, per decode

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class CspResult:
    run_id: int
    method: str
    n_candidates: int
    formulas: list[FormulaOutcome]
    summary: dict

    @property
    def failed(self) -> list[FormulaOutcome]:
        return [f for f in self.formulas if f.status != "ok"]

    def as_json(self) -> dict:
        """The run, per formula outcomes and, for a single formula, its ``formula`` and ``best``
        (candidate id, CHGNet energy per atom in eV/atom, space group) at the top level;
        ``n_evaluated``: CHGNet relaxations that finished."""
        doc = {"run_id": self.run_id, "method": self.method, "n_candidates": self.n_candidates,
               "n_evaluated": sum(f.n_relaxed for f in self.formulas),
               "formulas": [f.as_json() for f in self.formulas], "summary": self.summary}
        if len(self.formulas) == 1:
            f = self.formulas[0]
            doc["formula"] = f.formula
            doc["best"] = None if f.candidate_id is None else {
                "candidate_id": f.candidate_id, "energy_per_atom": f.energy_per_atom, "spacegroup": f.spacegroup,
                "spacegroup_number": f.spacegroup_number, "from": f.best_from}
        return doc


@dataclass
class _Target:
    text: str
    formula: str
    species: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # per formula unit, in ``species`` order
    problem: str = ""


@dataclass
class _Trial:
    index: int
    spacegroup: int  # the space group it was generated in
    z: int
    generated: Structure
    relaxation: object  # oracles.chgnet_oracle.Relaxation
    valid: bool
    origin: str = ""
    latent: dict | None = None  # LCOMs decodes: start, surrogate energies and improvement (eV/atom)


# --------------------------------------------------------------------------------------------------
# Formulas
# --------------------------------------------------------------------------------------------------


def parse_formula(text: str) -> Composition:
    """The composition of ``text``; CrystalStudioError naming it when it is not a chemical formula."""
    if not isinstance(text, str) or not text.strip():
        raise CrystalStudioError("an empty formula was given")
    try:
        composition = Composition(text.strip())
    except Exception as exc:  # pymatgen raises ValueError, KeyError, ... for bad formula text
        raise CrystalStudioError(f"'{text}' is not a chemical formula ({exc})") from None
    if composition.num_atoms <= 0 or any(amount < 0 for amount in composition.values()):
        raise CrystalStudioError(f"'{text}' is not a chemical formula (no atoms)")
    return composition


def _target(text: str, max_atoms: int) -> _Target:
    composition = parse_formula(text)
    unknown = [getattr(el, "symbol", str(el)) for el in composition.elements if not isinstance(el, Element)]
    if unknown:
        return _Target(text, text.strip(), problem=f"unknown element {', '.join(unknown)}")
    amounts = composition.get_el_amt_dict()
    if any(abs(a - round(a)) > 1e-6 for a in amounts.values()):
        return _Target(text, composition.reduced_formula,
                       problem="fractional amounts: give an integer formula (e.g. Li2O, not LiO0.5)")
    reduced = composition.reduced_composition
    formula = reduced.reduced_formula
    beyond = [el.symbol for el in reduced.elements if el.Z > CHGNET_MAX_Z]
    if beyond:
        return _Target(text, formula, problem=f"CHGNet does not cover {', '.join(beyond)} (elements up to Pu)")
    species = [el.symbol for el in reduced.elements]
    counts = [int(round(reduced[el])) for el in reduced.elements]
    target = _Target(text, formula, species, counts)
    if sum(counts) > max_atoms:
        target.problem = f"one formula unit has {sum(counts)} atoms, more than --max-atoms {max_atoms}"
    return target


def formulas_from_samples(project: Project, run_id: int, top: int) -> list[str]:
    """The ``top`` most often drawn compositionally valid formulas of sampling run ``run_id``."""
    from crystal_studio.store.samples import list_samples

    if top < 1:
        raise CrystalStudioError(f"--top must be at least 1 (got {top})")
    rows = [r for r in list_samples(project, run_id) if r.checks.get("compositionally_valid")]
    if not rows:
        raise CrystalStudioError(f"run {run_id} has no compositionally valid sampled formulas "
                                 "(see 'crystal-studio samples')")
    return [r.formula for r in rows[:top]]


# --------------------------------------------------------------------------------------------------
# Random symmetric crystals
# --------------------------------------------------------------------------------------------------


@functools.cache
def _group(number: int):
    from pyxtal.symmetry import Group

    return Group(number)


def space_groups_for(counts: tuple[int, ...], max_atoms: int) -> dict[int, int]:
    """Space group number → the smallest number of formula units Z (``counts`` atoms each, per element)
    whose conventional cell of at most ``max_atoms`` atoms it can hold (PyXtal's Wyckoff check)."""
    holders: dict[int, int] = {}
    for z in range(1, max_atoms // sum(counts) + 1):
        ions = [z * c for c in counts]
        for number in range(1, 231):
            if number not in holders and _group(number).check_compatible(ions)[0]:
                holders[number] = z
    return holders


def _rng(seed: int, formula: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(formula.encode())])


def random_crystal(species: list[str], counts: list[int], holders: dict[int, int], rng: np.random.Generator
                   ) -> tuple[Structure, int, int]:
    """One random symmetric crystal: (primitive structure, space group generated in, Z). Tries other
    space groups when PyXtal cannot place the atoms; RuntimeError after ``MAX_ATTEMPTS``."""
    from pyxtal import pyxtal

    groups = sorted(holders)
    last = "no space group holds this composition"
    for _ in range(MAX_ATTEMPTS):
        number = int(rng.choice(groups))
        z = holders[number]
        crystal = pyxtal()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # PyXtal prints warnings; stdout is for --json
                crystal.from_random(3, number, species, [z * c for c in counts], random_state=rng)
            if not crystal.valid:
                raise RuntimeError("no valid crystal")
            structure = crystal.to_pymatgen()
        except Exception as exc:  # PyXtal signals with its own exception types (e.g. Comp_CompatibilityError)
            last = f"space group {number}: {type(exc).__name__}: {exc}"
            continue
        try:
            structure = structure.get_primitive_structure(tolerance=0.01)
        except Exception:  # keep the conventional cell
            pass
        return structure, number, z
    raise RuntimeError(f"PyXtal placed no crystal in {MAX_ATTEMPTS} space groups (last: {last})")


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------


def predict_structures(project: Project, formulas: list[str], trials: int = 8, model_ids: list[int] | None = None,
                       seed: int = 0, max_atoms: int = 20, relax_steps: int = 200, fmax: float = 0.1,
                       device: str = "auto", progress: ProgressCallback = no_progress,
                       cancel: CancelToken | None = None, keep: str = "best", dataset: str | None = None,
                       source: dict | None = None, method: str = "random", lcoms: dict | None = None) -> CspResult:
    """Predict crystal structures of ``formulas`` and store them as one run; see the module docstring.

    ``method``: 'random' (``trials`` random symmetric crystals relaxed per formula), 'lcoms' or 'mse'
    (LCOMs at the same CHGNet budget: half the trials relaxed as starts, their latents optimized on the
    csp_vae's conservative or plain-MSE surrogate and decoded, the decodes relaxed; ``lcoms``: settings
    of :class:`~crystal_studio.design.optimizers.lcoms.LCOMsConfig`). ``model_ids``: property
    predictors whose predictions join each candidate's properties (a target both predict comes from
    the first) and, for LCOMs, exactly one csp_vae; ``dataset``: novelty reference (default: the first
    predictor's training dataset, else the csp_vae's); ``source``: where the formulas came from
    (stored with the parameters, e.g. ``{"sampling_run": 3, "top": 10}``). Cancelling marks the run
    cancelled (nothing stored) and raises Cancelled.
    """
    from crystal_studio.design.evaluation import (
        evaluate_structure,
        mark_unique_and_novel,
        summarize,
    )
    from crystal_studio.design.job import _reference_structures
    from crystal_studio.design.relaxation import _displacements
    from crystal_studio.ml.runtime import package_versions, resolve_device
    from crystal_studio.oracles.chgnet_oracle import ChgnetOracle

    cancel = cancel or CancelToken()
    model_ids = list(model_ids or [])
    if not formulas:
        raise CrystalStudioError("give at least one formula (--formula, or --from-samples RUN_ID)")
    if method not in CSP_METHODS:
        raise CrystalStudioError(f"unknown structure-prediction method '{method}' (choose {', '.join(CSP_METHODS)})")
    latent = method in SURROGATE_OF
    if lcoms and not latent:
        raise CrystalStudioError(f"LCOMs settings ({', '.join(lcoms)}) apply to --method lcoms or mse, not {method}")
    if trials < (2 if latent else 1):
        raise CrystalStudioError(f"--trials must be at least {2 if latent else 1} for {method} (got {trials})")
    if max_atoms < 1:
        raise CrystalStudioError(f"--max-atoms must be at least 1 (got {max_atoms})")
    if relax_steps < 1 or not fmax > 0:
        raise CrystalStudioError("--relax-steps must be at least 1 and --fmax positive")
    if keep not in KEEP_CHOICES:
        raise CrystalStudioError(f"--keep must be one of {', '.join(KEEP_CHOICES)} (got '{keep}')")
    targets = _distinct([_target(text, max_atoms) for text in formulas])
    torch_device = resolve_device(device)
    predictors, csp_model, csp_record = _load_models(project, model_ids, method, torch_device)  # fail before the run
    settings = _lcoms_config(lcoms) if latent else None
    reference = dataset or (predictors[0][1][0].dataset if predictors else None) or (
        csp_record.dataset if csp_record is not None else None)
    spec = spec_for(targets)
    name = CSP_METHODS[method]
    parameters = {"method": name, "formulas": list(formulas), "trials": trials, "models": model_ids, "seed": seed,
                  "max_atoms": max_atoms, "relax_steps": relax_steps, "fmax": fmax, "keep": keep,
                  "reference_dataset": reference, "source": source, "spec": spec.to_dict(),
                  "n_candidates": len(targets) * (1 if keep == "best" else trials), "n_steps": relax_steps}
    if settings is not None:
        parameters["lcoms"] = asdict(settings)
    versions = package_versions()
    versions["pyxtal"] = _version("pyxtal")
    versions["chgnet"] = _version("chgnet")
    run_id = model_store.create_run(project, "optimization", parameters, seed, str(torch_device), versions)
    model_store.announce_run(run_id, progress)
    outcomes = [FormulaOutcome(t.formula, t.text, "failed" if t.problem else "pending", t.problem) for t in targets]
    per_formula = trials + (settings.steps if settings is not None else 0)
    job = _Job(project, run_id, progress, cancel, sum(per_formula for t in targets if not t.problem), fmax,
               relax_steps)
    with model_store.guarded_run(project, run_id), chgnet_threads(torch_device):
        job.oracle = ChgnetOracle(str(torch_device))
        kept: list[tuple[int, _Trial]] = []  # (index of the formula, trial)
        for k, (target, outcome) in enumerate(zip(targets, outcomes, strict=True)):
            if target.problem:
                continue
            n_random = (trials + 1) // 2 if latent else trials
            relaxed, errors = job.random_trials(target, n_random, max_atoms, _rng(seed, target.formula), outcome)
            if latent and relaxed:
                relaxed += job.latent_trials(target, relaxed, trials - n_random, csp_model, SURROGATE_OF[method],
                                             settings, outcome, errors)
            outcome.n_relaxed = len(relaxed)
            if not relaxed:
                outcome.reason = ("no random crystal could be relaxed: " if outcome.n_generated
                                  else "PyXtal generated no crystal: ") + "; ".join(errors[:3])
                outcome.status = "failed"
                continue
            outcome.reason = f"{len(errors)} of {trials} trials failed ({errors[0]})" if errors else ""
            kept += [(k, t) for t in _chosen(relaxed, keep)]

        cancel.check()
        progress(ProgressEvent(job.total, job.total, "predicting properties"))
        structures = [t.relaxation.final for _, t in kept]
        predicted = _predict(predictors, structures, cancel)
        evaluations = []
        for (_, trial), (props, stds, _) in zip(kept, predicted, strict=True):
            relaxation = trial.relaxation
            props["energy_per_atom"] = relaxation.energy_per_atom
            evaluation = evaluate_structure(relaxation.final, spec, props, stds)
            evaluation.criteria["structurally_valid"] = evaluation.structurally_valid
            evaluation.criteria["relaxation_converged"] = relaxation.converged
            evaluations.append(evaluation)
        mark_unique_and_novel(structures, evaluations, _reference_structures(project, reference, evaluations))
        items = []
        for (_, trial), evaluation, (_, _, problems) in zip(kept, evaluations, predicted, strict=True):
            relaxation = trial.relaxation
            displacement = _displacements(trial.generated, relaxation.final)
            summary = {"converged": relaxation.converged, "steps": relaxation.steps,
                       "energy_per_atom": relaxation.energy_per_atom, "max_force": relaxation.max_force,
                       "fmax": fmax, "rmsd": float(np.sqrt(np.mean(displacement ** 2))),
                       "max_displacement": float(displacement.max()),
                       "volume_change": relaxation.final.volume / trial.generated.volume - 1.0,
                       "properties": evaluation.properties, "criteria": evaluation.criteria,
                       "success_after": evaluation.success, "from": trial.origin}
            doc = evaluation.as_json()
            doc["origin"] = f"{name}: trial {trial.index}, {trial.origin}, Z={trial.z}"
            doc["csp"] = {"trial": trial.index, "generated_spacegroup_number": trial.spacegroup, "z": trial.z,
                          "generated_nsites": len(trial.generated), "from": trial.origin}
            if trial.latent is not None:
                doc["csp"]["lcoms"] = trial.latent
            if problems:
                doc["prediction_errors"] = problems
            doc["relaxation"] = summary
            items.append((relaxation.final, doc))
        ok = len({k for k, _ in kept})  # formulas with a stored structure
        run_summary = summarize([doc for _, doc in items], spec)
        ids = candidate_store.add_candidates(
            project, run_id, items, relaxed_energies=[t.relaxation.energy_per_atom for _, t in kept],
            complete_run=f"structures for {ok} of {len(outcomes)} formulas; {len(items)} candidates, "
                         f"{run_summary['success_rate']:.0%} valid and converged")
        for (k, trial), cid, evaluation in zip(kept, ids, evaluations, strict=True):
            outcome = outcomes[k]
            outcome.candidate_ids.append(cid)
            if outcome.candidate_id is None:  # the first kept one is the lowest in energy
                outcome.status = "ok"
                outcome.candidate_id = cid
                outcome.energy_per_atom = trial.relaxation.energy_per_atom
                outcome.spacegroup = evaluation.spacegroup_symbol
                outcome.spacegroup_number = evaluation.spacegroup_number
                outcome.z = trial.z
                outcome.converged = trial.relaxation.converged
                outcome.best_from = trial.origin
    return CspResult(run_id, name, len(items), outcomes, run_summary)


class _Job:
    """The relaxations of one structure-prediction run, with its progress and metric rows."""

    def __init__(self, project: Project, run_id: int, progress: ProgressCallback, cancel: CancelToken, total: int,
                 fmax: float, relax_steps: int):
        self.project, self.run_id, self.progress, self.cancel = project, run_id, progress, cancel
        self.total, self.fmax, self.relax_steps = total, fmax, relax_steps
        self.done = 0  # progress units: relaxations and latent steps
        self.rows = 0  # metric rows stored
        self.oracle = None

    def report(self, message: str, metrics: dict[str, float] | None = None) -> None:
        self.done += 1
        if metrics:
            model_store.record_metrics(self.project, self.run_id, self.rows, metrics)
            self.rows += 1
        self.progress(ProgressEvent(min(self.done, self.total), self.total, message, metrics or {}))

    def relax(self, structure: Structure):
        """CHGNet relaxation of one structure (RuntimeError when it fails or gives a non-finite energy)."""
        return relax_one(self.oracle, structure, self.fmax, self.relax_steps, self.cancel)

    def _trial(self, index: int, spacegroup: int, z: int, generated: Structure, origin: str, relaxation,
               latent: dict | None = None) -> _Trial:
        from crystal_studio.design.evaluation import structurally_valid

        final = relaxation.final
        valid = structurally_valid(min_periodic_distance(final), final.volume)
        return _Trial(index, spacegroup, z, generated, relaxation, valid, origin, latent)

    def random_trials(self, target: _Target, n: int, max_atoms: int, rng: np.random.Generator,
                      outcome: FormulaOutcome) -> tuple[list[_Trial], list[str]]:
        """``n`` random symmetric crystals relaxed; (relaxed trials, failure messages)."""
        holders = space_groups_for(tuple(target.counts), max_atoms)
        relaxed, errors = [], []
        for i in range(n):
            self.cancel.check()
            try:
                generated, number, z = random_crystal(target.species, target.counts, holders, rng)
            except RuntimeError as exc:
                errors.append(f"trial {i + 1}: {exc}")
                self.report(f"{target.formula}: trial {i + 1} not generated")
                continue
            outcome.n_generated += 1
            try:
                relaxation = self.relax(generated)
            except RuntimeError as exc:
                errors.append(f"trial {i + 1} (space group {number}): {exc}")
                self.report(f"{target.formula}: trial {i + 1} relaxation failed")
                continue
            relaxed.append(self._trial(i + 1, number, z, generated, f"random symmetric crystal (PyXtal, space "
                                                                    f"group {number})", relaxation))
            self.report(f"{target.formula}: trial {i + 1}/{n} {relaxation.energy_per_atom:.3f} eV/atom",
                        {"energy_per_atom": relaxation.energy_per_atom, "relax_steps": float(relaxation.steps),
                         "converged": float(relaxation.converged)})
        return relaxed, errors

    def latent_trials(self, target: _Target, starts: list[_Trial], n: int, model, surrogate: str, settings,
                      outcome: FormulaOutcome, errors: list[str]) -> list[_Trial]:
        """LCOMs from the ``n`` lowest-energy relaxed ``starts`` that fit the csp_vae: latent stage on
        ``surrogate``, decodes relaxed; the decodes' trials (their ``latent`` holds the start's energy,
        the surrogate's energies before and after and the true improvement, eV/atom)."""
        from crystal_studio.design.optimizers.lcoms import optimize_latents
        from crystal_studio.ml.models.crystal_vae import skip_reason

        fitting = sorted((t for t in starts if skip_reason(t.relaxation.final, model.config.max_sites) is None),
                         key=lambda t: t.relaxation.energy_per_atom)[:n]
        if not fitting:
            errors.append(f"no relaxed start has at most {model.config.max_sites} sites (the csp_vae's limit)")
            self.done += settings.steps + n
            return []

        def true_energy(structures: list[Structure]) -> list[float]:
            try:
                return [r.energy_per_atom for r in self.oracle.predict(structures)]
            except Exception:  # CHGNet cannot score a decode (e.g. atoms on top of each other): not plotted
                return [math.nan] * len(structures)

        def on_step(row: dict[str, float]) -> None:
            metrics = {f"lcoms/{key}": value for key, value in row.items() if key != "step"}
            self.report(f"{target.formula}: latent step {int(row['step'])}/{settings.steps}, surrogate "
                        f"{row['surrogate_mean']:.3f} eV/atom", metrics)

        latent = optimize_latents(model, [t.relaxation.final for t in fitting], surrogate, settings, true_energy,
                                  on_step, self.cancel)
        trials = []
        for j, (start, decoded, reason) in enumerate(zip(fitting, latent.decoded, latent.reasons, strict=True)):
            index = len(starts) + j + 1
            self.cancel.check()
            if decoded is None:
                errors.append(f"trial {index}: decode of trial {start.index} failed ({reason})")
                self.report(f"{target.formula}: decode of trial {start.index} failed")
                continue
            outcome.n_generated += 1
            try:
                relaxation = self.relax(decoded)
            except RuntimeError as exc:
                errors.append(f"trial {index} (decode of trial {start.index}): {exc}")
                self.report(f"{target.formula}: decode of trial {start.index}: relaxation failed")
                continue
            improvement = start.relaxation.energy_per_atom - relaxation.energy_per_atom
            info = {"start_trial": start.index, "surrogate": surrogate,
                    "start_energy_per_atom": start.relaxation.energy_per_atom,
                    "surrogate_start": latent.surrogate_start[j], "surrogate_end": latent.surrogate_end[j],
                    "improvement": improvement}
            outcome.improvements.append(improvement)
            trials.append(self._trial(index, start.spacegroup, start.z, decoded,
                                      f"{surrogate} LCOMs decode of trial {start.index}", relaxation, info))
            self.report(f"{target.formula}: decode of trial {start.index} {relaxation.energy_per_atom:.3f} eV/atom "
                        f"({improvement:+.3f} vs its start)",
                        {"energy_per_atom": relaxation.energy_per_atom, "relax_steps": float(relaxation.steps),
                         "converged": float(relaxation.converged), "lcoms/improvement": improvement})
        return trials


def spec_for(targets: list[_Target]):
    """The run's design spec: lowest CHGNet energy per atom and, for a single formula, that composition
    fixed (criterion ``composition_kept``)."""
    from crystal_studio.design.spec import spec_from_dict

    doc = json.loads(json.dumps(SPEC))
    valid = [t for t in targets if not t.problem]
    if len(valid) == 1:
        doc["constraints"]["formula"] = valid[0].formula
        doc["name"] = f"structure of {valid[0].formula}"
        doc["description"] = f"crystal structure prediction: the lowest-CHGNet-energy structure of {valid[0].formula}"
    return spec_from_dict(doc)


def relax_one(oracle, structure: Structure, fmax: float, max_steps: int, cancel: CancelToken, frames: int = 0):
    """CHGNet relaxation of one structure with a free cell (``fmax`` eV/Å, at most ``max_steps``);
    RuntimeError when CHGNet/ASE fails or the energy is not finite, so one bad crystal fails one trial."""
    try:
        [relaxation] = oracle.relax([structure], fmax=fmax, max_steps=max_steps, relax_cell=True, cancel=cancel,
                                    frames=frames)
    except Cancelled:
        raise
    except Exception as exc:  # CHGNet/ASE signal with many exception types
        raise RuntimeError(f"relaxation failed: {exc}") from None
    if not math.isfinite(relaxation.energy_per_atom):
        raise RuntimeError("relaxation failed: non-finite energy")
    return relaxation


def _load_models(project: Project, model_ids: list[int], method: str, device):
    """(predictors as (id, (record, predictor)), csp_vae or None, its record or None) of ``model_ids``."""
    from crystal_studio.ml.kinds import CSP_KINDS, get_kind
    from crystal_studio.ml.predictor import load_predictor, load_state

    predictors, csp = [], []
    for mid in model_ids:
        record = model_store.get_model(project, mid)
        if record.kind in CSP_KINDS:
            csp.append(record)
        else:
            predictors.append((mid, load_predictor(project, mid, device)))
    if method not in SURROGATE_OF:
        if csp:
            raise CrystalStudioError(f"--method {method} does not use a csp_vae (model {csp[0].id}); "
                                     "use --method lcoms or mse, or drop it from --models")
        return predictors, None, None
    if len(csp) != 1:
        raise CrystalStudioError(f"--method {method} needs exactly one csp_vae among --models (got {len(csp)}); "
                                 "train one with: crystal-studio train PROJECT --dataset POLYMORPHS --model csp_vae")
    record = csp[0]
    where = f"model {record.id}"
    model = get_kind(record.kind).load().rebuild(record.hyperparameters, record.targets,
                                                 load_state(record.checkpoint, where), where)
    return predictors, model.to(device), record


def _lcoms_config(settings: dict | None):
    """LCOMs settings (name → value; values may be text as typed after --set), type-checked."""
    from crystal_studio.core.options import apply_options
    from crystal_studio.design.optimizers.lcoms import LCOMsConfig

    config = apply_options(LCOMsConfig(), settings, "lcoms")
    config.validate()
    return config


def repeat_csp(project: Project, run_id: int, device: str = "auto", progress: ProgressCallback = no_progress,
               cancel: CancelToken | None = None) -> CspResult:
    """Run stored structure-prediction run ``run_id`` again as a new run from its stored parameters."""
    run = model_store.get_run(project, run_id)
    p = run.parameters
    if run.kind != "optimization" or p.get("method") not in METHOD_OF:
        raise CrystalStudioError(f"run {run_id} is not a structure-prediction run ({', '.join(METHOD_OF)})")
    return predict_structures(project, list(p["formulas"]), p["trials"], list(p.get("models") or []), p["seed"],
                              p["max_atoms"], p["relax_steps"], p["fmax"], device, progress, cancel,
                              keep=p.get("keep", "best"), dataset=p.get("reference_dataset"), source=p.get("source"),
                              method=METHOD_OF[p["method"]], lcoms=p.get("lcoms"))


def _distinct(targets: list[_Target]) -> list[_Target]:
    """One target per reduced formula (the first), failing ones kept as they are."""
    seen, out = set(), []
    for t in targets:
        if t.formula in seen:
            continue
        seen.add(t.formula)
        out.append(t)
    return out


def _chosen(relaxed: list[_Trial], keep: str) -> list[_Trial]:
    """Structurally valid relaxations first, then by energy; the first, or every distinct one."""
    ranked = sorted(relaxed, key=lambda t: (not t.valid, t.relaxation.energy_per_atom))
    if keep == "best":
        return ranked[:1]
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    out: list[_Trial] = []
    for trial in ranked:
        if not any(matcher.fit(trial.relaxation.final, o.relaxation.final) for o in out):
            out.append(trial)
    return out


def _predict(predictors: list, structures: list[Structure], cancel: CancelToken
             ) -> list[tuple[dict[str, float], dict[str, float], dict[str, str]]]:
    """(properties, spreads, model id → error) per structure; a model that cannot featurize a structure
    (e.g. an element it was not trained on) leaves that structure's properties out and says why."""
    from crystal_studio.ml.predictor import predict_structures as predict

    out = [({}, {}, {}) for _ in structures]
    for model_id, (_, predictor) in predictors:
        if not structures:
            break
        try:
            batches = [(list(range(len(structures))), predict(predictor, structures, cancel=cancel))]
        except CrystalStudioError:
            batches = []
            for i, structure in enumerate(structures):
                try:
                    batches.append(([i], predict(predictor, [structure], cancel=cancel)))
                except CrystalStudioError as exc:
                    out[i][2][str(model_id)] = str(exc)
        for indices, (mean, std) in batches:
            for row, i in enumerate(indices):
                for t, m, d in zip(predictor.targets, mean[row].tolist(), std[row].tolist(), strict=True):
                    out[i][0].setdefault(t, float(m))
                    out[i][1].setdefault(t, float(d))
    return out


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
