"""Sampling a generative model as a stored run, with the field-standard funnel of checks.

:func:`sample_model` dispatches on the model's kind.

For a composition VAE: draw z ~ N(0, I) (or N(μ(x), σ² I) around a structure's formula), decode to
fraction vectors and to integer formulas, then count the funnel

    sampled → decoded (some element reaches the threshold) → compositionally valid (SMACT neutrality +
    electronegativity) → unique (distinct valid formulas) → novel (not a formula of the training dataset)

Structural validity does not apply to formulas; the summary says so (``validity`` is None). The
distinct formulas, with how often each was drawn and its checks, are stored with the run.

For a crystal VAE (Crystal-LSBO): draw z ~ N(0, I) in the material latent space (or around a
structure's encoded latent with spread σ), decode to structures, then count the funnel

    sampled → decoded (a Structure, not a decode failure) → structurally valid (all distances ≥ 0.5 Å,
    volume ≥ 0.1 Å³) → compositionally valid (SMACT, on top) → unique (StructureMatcher stol 0.5,
    angle_tol 10, ltol 0.3 within the set) → novel (matches no training structure of its reduced formula)

``validity`` is the structural validity rate and ``compositional_validity`` the SMACT rate of all
draws, each on its own (the field-standard numbers); the funnel applies the checks one after the
other. Every decoded structure is stored as a candidate of the run (evaluation JSON as the Candidates
panel reads it, with the property heads' predictions at the drawn latent as ``properties``);
``success`` means it survived the funnel up to *unique*.

For a conditional voxel VAE (Court et al.): draw z ~ N(0, I) (or around a structure's encoded latent
with spread σ; the paper uses σ² = 0.5, i.e. σ ≈ 0.71) under a decile of the model's condition
property, decode to density maps, segment them with the model's U-Net and read the crystals off the
peaks, then count the funnel of the paper

    sampled → decoded (a Structure) → structurally valid → same stoichiometry (the base structure's
    with ``around``, else one of the training set's; stoichiometry = the sorted amounts of the reduced
    formula, e.g. 1:1:3) → not in the training set (no training structure of its reduced formula
    matches) → [within target] → unique (StructureMatcher within the set)

The paper's stage *within target* applies when a property predictor (``target_model``) is given: the
predicted condition property must lie within ``within`` (a fraction, default 0.2) of the draw's target
— the base structure's value with ``around``, else the median value of the model's dataset in the
draw's decile. Every decoded crystal is stored as a candidate; ``success`` means it survived the whole funnel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from crystal_studio.core.chemistry import smact_valid
from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from crystal_studio.store import models as model_store
from crystal_studio.store import samples as sample_store
from crystal_studio.store.project import Project, StructureQuery

FUNNEL = ("sampled", "decoded", "compositionally_valid", "unique", "novel")
CRYSTAL_FUNNEL = ("sampled", "decoded", "structurally_valid", "compositionally_valid", "unique", "novel")
VOXEL_FUNNEL = ("sampled", "decoded", "structurally_valid", "same_stoichiometry", "not_in_training_set", "unique")
VOXEL_TARGET_FUNNEL = VOXEL_FUNNEL[:-1] + ("within_target", "unique")  # with a target predictor
SAMPLE_BATCH = 2048  # formulas decoded per step (progress and cancellation between steps)


@dataclass
class SampleSummary:
    """What a sampling run produced: ``compositional_validity`` is valid draws / n, ``unique_rate``
    distinct valid formulas / valid draws, ``novel_rate`` distinct valid formulas not in the training
    dataset / distinct valid formulas. For crystals, ``validity`` is structurally valid draws / n,
    ``unique_rate`` unique structures / draws valid both ways, ``novel_rate`` novel / unique, and
    ``failures`` counts the draws that decoded to no structure by reason."""

    run_id: int
    model_id: int
    n: int
    validity: float | None  # structural validity; None for formulas (no structure)
    compositional_validity: float
    unique_rate: float
    novel_rate: float
    funnel: dict[str, int]
    element_count_histogram: dict[int, int] = field(default_factory=dict)  # elements per valid formula → count
    note: str = ""
    failures: dict[str, int] = field(default_factory=dict)  # decode failures by reason (crystals)

    def as_json(self) -> dict:
        return asdict(self)


def sample_model(project: Project, model_id: int, n: int, seed: int = 0, around: int | None = None,
                 sigma: float = 1.0, decomposition_class: int | None = None, device: str = "auto",
                 progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                 condition_decile: int | None = None, target_model: int | None = None,
                 within: float = 0.2) -> SampleSummary:
    """Draw ``n`` samples from generative model ``model_id`` and store them as a ``sampling`` run:
    formulas from a composition VAE, crystals (as candidates) from a crystal VAE.

    ``around``: a structure id whose latent mean (its formula's, or its crystal's) centres the draws
    (spread ``sigma``); ``decomposition_class`` (composition VAEs only): draw only this class (1 = on
    the hull, 2 = two products, ...), else the training frequencies; ``condition_decile`` (voxel VAEs
    only): condition every draw on this decile (1..K) of the model's condition property, else the base
    structure's own decile with ``around``, else a uniformly drawn decile per draw; ``target_model``
    (voxel VAEs only): a predictor of the condition property that adds the funnel stage "within
    ``within`` (fraction) of the target" (see the module docstring).
    """
    import torch

    from crystal_studio.core.formulas import fraction_vector
    from crystal_studio.ml.elements import ELEMENTS
    from crystal_studio.ml.models.composition_vae import decode_formulas
    from crystal_studio.ml.predictor import load_state
    from crystal_studio.ml.runtime import package_versions, resolve_device

    cancel = cancel or CancelToken()
    if n < 1:
        raise CrystalStudioError(f"--n must be at least 1 (got {n})")
    if sigma <= 0:
        raise CrystalStudioError(f"--sigma must be positive (got {sigma})")
    record = model_store.get_model(project, model_id)
    if record.kind not in ("composition_vae", "crystal_vae", "voxel_vae"):
        raise CrystalStudioError(f"model {model_id} is a '{record.kind}' model; sampling needs a composition_vae, "
                                 "a crystal_vae or a voxel_vae")
    if condition_decile is not None and record.kind != "voxel_vae":
        raise CrystalStudioError("--condition-decile applies to voxel VAEs only")
    if target_model is not None and record.kind != "voxel_vae":
        raise CrystalStudioError("--target-model applies to voxel VAEs only")
    if not 0 < within < 10:
        raise CrystalStudioError(f"--within must be a fraction above 0 and below 10 (got {within})")
    from crystal_studio.ml.kinds import get_kind

    torch_device = resolve_device(device)
    if record.kind == "voxel_vae":
        if decomposition_class is not None:
            raise CrystalStudioError("--class applies to composition VAEs only")
        return _sample_voxels(project, record, n, seed, around, sigma, condition_decile, torch_device, progress,
                              cancel, target_model, within)
    if record.kind == "crystal_vae":
        if decomposition_class is not None:
            raise CrystalStudioError("--class applies to composition VAEs only")
        return _sample_crystals(project, record, n, seed, around, sigma, torch_device, progress, cancel)
    model = get_kind(record.kind).load().rebuild(record.hyperparameters, record.targets,
                                                 load_state(record.checkpoint, f"model {model_id}"),
                                                 f"model {model_id}").to(torch_device)
    n_classes = model.config.n_classes
    if decomposition_class is not None and not 1 <= decomposition_class <= n_classes:
        raise CrystalStudioError(f"--class must be between 1 and {n_classes} for model {model_id}")
    center = None
    if around is not None:
        formula = project.structure(around).composition.reduced_formula
        try:
            x = torch.as_tensor(fraction_vector(formula, ELEMENTS), dtype=torch.float32, device=torch_device)[None]
        except KeyError as exc:
            raise CrystalStudioError(f"structure {around} ({formula}) has {exc.args[0]}, which the model does not "
                                     "cover") from None
        with torch.no_grad():
            center, _ = model.encode(x)
    parameters = {"model_id": model_id, "n": n, "seed": seed, "around": around, "sigma": sigma,
                  "decomposition_class": decomposition_class, "dataset": record.dataset}
    run_id = model_store.create_run(project, "sampling", parameters, seed, str(torch_device), package_versions())
    model_store.announce_run(run_id, progress)
    with model_store.guarded_run(project, run_id):
        generator = torch.Generator(device=torch_device).manual_seed(seed)
        drawn: list[str | None] = []
        classes: list[int] = []
        while len(drawn) < n:
            cancel.check()
            k = min(SAMPLE_BATCH, n - len(drawn))
            chosen = None if decomposition_class is None else torch.full((k,), decomposition_class - 1,
                                                                          device=torch_device)
            fractions, drawn_classes = model.sample(k, generator, chosen, center, sigma if center is not None else 1.0)
            drawn += decode_formulas(fractions, model.config.threshold)
            classes += (drawn_classes + 1).tolist()
            progress(ProgressEvent(len(drawn), n, f"sampled {len(drawn)} of {n}"))
        known = _dataset_formulas(project, record.dataset)
        summary, rows = _funnel(drawn, classes, known, progress, cancel)
        message = (f"{summary['funnel']['compositionally_valid']} of {n} formulas valid, "
                   f"{summary['funnel']['unique']} unique, {summary['funnel']['novel']} novel")
        sample_store.add_samples(project, run_id, rows, complete_run=message)
    return SampleSummary(run_id=run_id, model_id=model_id, n=n, **summary)


def _sample_crystals(project: Project, record, n: int, seed: int, around: int | None, sigma: float, torch_device,
                     progress: ProgressCallback, cancel: CancelToken) -> SampleSummary:
    """The crystal-VAE branch of :func:`sample_model` (see the module docstring)."""
    import torch

    from crystal_studio.ml.kinds import get_kind
    from crystal_studio.ml.predictor import load_state
    from crystal_studio.ml.runtime import package_versions

    where = f"model {record.id}"
    model = get_kind(record.kind).load().rebuild(record.hyperparameters, record.targets,
                                                 load_state(record.checkpoint, where), where).to(torch_device)
    center = None
    if around is not None:
        structure = project.structure(around)
        try:
            center = model.encode_structures([structure])
        except ValueError as exc:
            raise CrystalStudioError(f"structure {around} cannot be encoded by {where}: {exc}") from None
    parameters = {"model_id": record.id, "kind": record.kind, "n": n, "seed": seed, "around": around,
                  "sigma": sigma, "dataset": record.dataset}
    run_id = model_store.create_run(project, "sampling", parameters, seed, str(torch_device), package_versions())
    model_store.announce_run(run_id, progress)
    with model_store.guarded_run(project, run_id):
        generator = torch.Generator(device=torch_device).manual_seed(seed)
        drawn: list = []  # (structure or None, failure reason, latent, predicted properties)
        while len(drawn) < n:
            cancel.check()
            k = min(SAMPLE_BATCH, n - len(drawn))
            z = torch.randn((k, model.config.latent), generator=generator, device=torch_device)
            if center is not None:
                z = center + sigma * z
            structures, reasons = model.decode(z)
            predicted = model.predict(z)
            for j, (s, r) in enumerate(zip(structures, reasons, strict=True)):
                props = {} if predicted is None else {t: float(v) for t, v in zip(record.targets, predicted[j].tolist(),
                                                                                   strict=True)}
                drawn.append((s, r, z[j].tolist(), props))
            progress(ProgressEvent(len(drawn), n, f"sampled {len(drawn)} of {n}"))
        origin = "prior N(0, I)" if around is None else f"around structure {around} (σ {sigma:g})"
        summary, items = _crystal_funnel(project, record.dataset, drawn, origin, progress, cancel)
        from crystal_studio.store.candidates import add_candidates

        f = summary["funnel"]
        add_candidates(project, run_id, items,
                       complete_run=f"{f['structurally_valid']} of {n} crystals structurally valid, "
                                    f"{f['compositionally_valid']} also compositionally, {f['unique']} unique, "
                                    f"{f['novel']} novel")
    return SampleSummary(run_id=run_id, model_id=record.id, n=n, **summary)


def _crystal_funnel(project: Project, dataset: str | None, drawn: list, origin: str, progress: ProgressCallback,
                    cancel: CancelToken) -> tuple[dict, list]:
    """Checks of every decoded crystal, the summary and the (structure, evaluation JSON) candidates."""
    n = len(drawn)
    failures = Counter(r for s, r, _, _ in drawn if s is None)
    checker = _DecodeChecker(origin, progress, cancel)
    docs, structures = [], []
    for k, (structure, _, latent, props) in enumerate(drawn):
        if structure is not None:
            doc = checker.document(k, n, structure, latent)
            doc["criteria"] = {"structurally_valid": doc["valid"], "compositionally_valid": doc["compositionally_valid"]}
            doc["properties"] = props
            docs.append(doc)
            structures.append(structure)
    passing = [i for i, d in enumerate(docs) if d["valid"] and d["compositionally_valid"]]
    unique = sorted(checker.mark_unique(structures, docs, passing))
    for i, known in zip(unique, checker.in_dataset(project, dataset, structures, docs, unique), strict=True):
        docs[i]["novel"] = not known
        docs[i]["success"] = True
    n_valid = sum(d["valid"] for d in docs)
    funnel = {"sampled": n, "decoded": len(docs), "structurally_valid": n_valid, "compositionally_valid": len(passing),
              "unique": len(unique), "novel": sum(bool(docs[i]["novel"]) for i in unique)}
    histogram = Counter(len(structures[i].composition.elements) for i in passing)
    return {
        "validity": n_valid / n,
        "compositional_validity": sum(d["compositionally_valid"] for d in docs) / n,
        "unique_rate": funnel["unique"] / max(len(passing), 1),
        "novel_rate": funnel["novel"] / max(funnel["unique"], 1),
        "funnel": funnel,
        "element_count_histogram": dict(sorted(histogram.items())),
        "note": "validity: structural (distances ≥ 0.5 Å, volume ≥ 0.1 Å³); compositional validity: SMACT, of all "
                "draws; the funnel applies the checks in turn",
        "failures": dict(failures),
    }, list(zip(structures, docs, strict=True))


class _DecodeChecker:
    """The checks every decoded-crystal funnel shares: one evaluation document per decoded crystal
    (structural validity: distances ≥ 0.5 Å and volume ≥ 0.1 Å³; SMACT validity cached per formula;
    space group of the valid ones), StructureMatcher duplicates within a run, and matches in a
    dataset; progress and cancellation every few hundred crystals."""

    def __init__(self, origin: str, progress: ProgressCallback, cancel: CancelToken):
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self.origin, self.progress, self.cancel = origin, progress, cancel
        self.matcher = StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)
        self._smact: dict[str, bool] = {}

    def document(self, k: int, n: int, structure, latent: list[float]) -> dict:
        """The shared fields of draw ``k`` of ``n``; each funnel adds its criteria and own fields."""
        from crystal_studio.core.structures import min_periodic_distance, spacegroup
        from crystal_studio.ml.models.crystal_vae import MIN_DISTANCE, MIN_VOLUME

        if k % 200 == 0:
            self.cancel.check()
            self.progress(ProgressEvent(k, n, "checking crystals"))
        formula = structure.composition.reduced_formula
        if formula not in self._smact:
            self._smact[formula] = smact_valid(formula)
        dmin = min_periodic_distance(structure)
        valid = bool(dmin >= MIN_DISTANCE and structure.volume >= MIN_VOLUME)
        number, symbol = spacegroup(structure) if valid else (None, None)
        return {"formula": formula, "success": False, "properties": {}, "property_std": {}, "spacegroup": symbol,
                "spacegroup_number": number, "min_distance": dmin, "tolerance_factor": None, "valid": valid,
                "compositionally_valid": self._smact[formula], "site_charges": None, "unique": None, "novel": None,
                "origin": self.origin, "latent": [round(v, 5) for v in latent]}

    def mark_unique(self, structures: list, docs: list[dict], indices: list[int]) -> list[int]:
        """Set ``unique`` on ``indices`` (no StructureMatcher match among the earlier ones of the same
        formula); the unique indices, grouped by formula."""
        kept: dict[str, list[int]] = {}
        for j, i in enumerate(indices):
            if j % 100 == 0:
                self.cancel.check()
                self.progress(ProgressEvent(j, len(indices), "finding duplicates"))
            group = kept.setdefault(docs[i]["formula"], [])
            docs[i]["unique"] = not any(self.matcher.fit(structures[i], structures[other]) for other in group)
            if docs[i]["unique"]:
                group.append(i)
        return [i for group in kept.values() for i in group]

    def in_dataset(self, project: Project, dataset: str | None, structures: list, docs: list[dict],
                   indices: list[int]) -> list[bool]:
        """For each of ``indices``: whether a structure of ``dataset`` with its formula matches it."""
        reference: dict[str, list] = {}
        formulas = sorted({docs[i]["formula"] for i in indices})
        if dataset is not None and formulas:
            for row, structure in project.iter_structures(StructureQuery(dataset=dataset, reduced_formulas=formulas)):
                reference.setdefault(row["reduced_formula"], []).append(structure)
        known = []
        for j, i in enumerate(indices):
            if j % 100 == 0:
                self.cancel.check()
                self.progress(ProgressEvent(j, len(indices), "comparing with the training set"))
            known.append(any(self.matcher.fit(structures[i], ref) for ref in reference.get(docs[i]["formula"], [])))
        return known


def stoichiometry(composition) -> tuple[int, ...]:
    """The sorted amounts of a composition's reduced formula, e.g. (1, 1, 3) for SrTiO3."""
    return tuple(sorted(int(round(v)) for v in composition.reduced_composition.values()))


def _sample_voxels(project: Project, record, n: int, seed: int, around: int | None, sigma: float,
                   condition_decile: int | None, torch_device, progress: ProgressCallback,
                   cancel: CancelToken, target_model: int | None, within: float) -> SampleSummary:
    """The voxel-VAE branch of :func:`sample_model` (see the module docstring)."""
    import math

    import torch

    from crystal_studio.ml.kinds import get_kind
    from crystal_studio.ml.predictor import load_state
    from crystal_studio.ml.runtime import package_versions
    from crystal_studio.ml.voxels import voxel_skip_reason

    where = f"model {record.id}"
    model = get_kind(record.kind).load().rebuild(record.hyperparameters, record.targets,
                                                 load_state(record.checkpoint, where), where).to(torch_device)
    n_conditions = model.config.n_conditions
    if condition_decile is not None and not 1 <= condition_decile <= max(n_conditions, 1):
        raise CrystalStudioError(f"--condition-decile must be between 1 and {n_conditions} for {where}"
                                 if n_conditions else f"{where} is unconditioned: leave out --condition-decile")
    condition = record.normalization.get("condition", "none")
    decile = None if condition_decile is None else condition_decile - 1
    center, base = None, None
    if around is not None:
        base = project.structure(around)
        training = record.hyperparameters.get("training", {})
        reason = voxel_skip_reason(base, training.get("max_atoms", 40), training.get("angle_tolerance", 5.0),
                                   training.get("length_tolerance", 0.1))
        if reason is not None:
            raise CrystalStudioError(f"structure {around} cannot be encoded by {where}: {reason}")
        if decile is None and n_conditions:
            value = project.properties_of([around]).get(around, {}).get(condition, math.nan)
            decile = model.decile_of(value) if math.isfinite(value) else None
        base_condition = (model.conditions(torch.tensor([decile], device=torch_device)) if decile is not None
                          else torch.zeros((1, n_conditions), device=torch_device))
        center = model.encode_structures([base], base_condition)
    target = None
    if target_model is not None:
        target = _TargetStage(project, record, model, target_model, within, torch_device,
                              base_value=None if around is None else
                              project.properties_of([around]).get(around, {}).get(condition, math.nan))
    parameters = {"model_id": record.id, "kind": record.kind, "n": n, "seed": seed, "around": around,
                  "sigma": sigma, "condition": condition, "condition_decile": condition_decile,
                  "dataset": record.dataset, "target_model": target_model,
                  "within": within if target_model is not None else None}
    run_id = model_store.create_run(project, "sampling", parameters, seed, str(torch_device), package_versions())
    model_store.announce_run(run_id, progress)
    with model_store.guarded_run(project, run_id):
        generator = torch.Generator(device=torch_device).manual_seed(seed)
        drawn: list = []  # (structure or None, failure reason, latent, decile from 1 or None)
        while len(drawn) < n:
            cancel.check()
            k = min(SAMPLE_BATCH, n - len(drawn))
            z = torch.randn((k, model.config.latent), generator=generator, device=torch_device)
            if center is not None:
                z = center + sigma * z
            if decile is not None:
                deciles = torch.full((k,), decile, device=torch_device)
            elif center is None:
                deciles = torch.randint(max(n_conditions, 1), (k,), generator=generator, device=torch_device)
            else:  # around a structure whose decile is unknown: encoded and decoded without a condition
                deciles = None
            conditions = (model.conditions(deciles) if deciles is not None
                          else torch.zeros((k, n_conditions), device=torch_device))
            structures, reasons = model.decode(z, conditions)
            for j, (structure, reason) in enumerate(zip(structures, reasons, strict=True)):
                chosen = int(deciles[j]) + 1 if deciles is not None and n_conditions else None
                drawn.append((structure, reason, z[j].tolist(), chosen))
            progress(ProgressEvent(len(drawn), n, f"sampled {len(drawn)} of {n}"))
        origin = "prior N(0, I)" if around is None else f"around structure {around} (σ {sigma:g})"
        summary, items = _voxel_funnel(project, record.dataset, drawn, base, condition, origin, progress, cancel,
                                       target)
        from crystal_studio.store.candidates import add_candidates

        f = summary["funnel"]
        stage = f", {f['within_target']} within {within:.0%} of the target" if target is not None else ""
        add_candidates(project, run_id, items,
                       complete_run=f"{f['structurally_valid']} of {n} crystals structurally valid, "
                                    f"{f['same_stoichiometry']} of the same stoichiometry, "
                                    f"{f['not_in_training_set']} not in the training set{stage}, {f['unique']} unique")
    return SampleSummary(run_id=run_id, model_id=record.id, n=n, **summary)


class _TargetStage:
    """The funnel stage "within ``within`` of the target": a stored predictor of the voxel VAE's
    condition property, and each draw's target value (the base structure's value when sampling around
    one, else the median value of the model's dataset in the draw's decile)."""

    def __init__(self, project: Project, record, model, target_model: int, within: float, torch_device,
                 base_value: float | None):
        import math

        from crystal_studio.ml.predictor import load_predictor

        self.condition = record.normalization.get("condition", "none")
        if not model.config.n_conditions:
            raise CrystalStudioError(f"model {record.id} is unconditioned: it has no target property for "
                                     "--target-model to check")
        self.model_id, self.within = target_model, within
        _, self.predictor = load_predictor(project, target_model, torch_device)
        if self.condition not in self.predictor.targets:
            raise CrystalStudioError(f"model {target_model} does not predict {self.condition}, the property model "
                                     f"{record.id} is conditioned on (it predicts {', '.join(self.predictor.targets)})")
        if base_value is not None and not math.isfinite(base_value):
            raise CrystalStudioError(f"the base structure has no {self.condition} value, so draws around it have no "
                                     "target for --target-model")
        self.base_value = base_value
        values = np.array([v for _, v in project.property_values(self.condition, StructureQuery(dataset=record.dataset))
                           if math.isfinite(v)])
        decile = np.searchsorted(model.decile_edges.cpu().numpy(), values, side="right")
        self.decile_medians = {int(k): float(np.median(values[decile == k])) for k in np.unique(decile)}

    def target_of(self, decile: int | None) -> float | None:
        """The target value of a draw under ``decile`` (counted from 1; None: no condition)."""
        if self.base_value is not None:
            return self.base_value
        return None if decile is None else self.decile_medians.get(decile - 1)

    def judge(self, structures: list, docs: list[dict], indices: list[int]) -> list[int]:
        """Predict the condition property of ``indices`` and record it with the target on their
        documents; the indices within the tolerance."""
        from crystal_studio.ml.elements import unsupported_elements
        from crystal_studio.ml.predictor import predict_structures

        covered = [i for i in indices if not unsupported_elements(str(e) for e in structures[i].composition.elements)]
        kept = []
        if covered:
            column = self.predictor.targets.index(self.condition)
            mean, std = predict_structures(self.predictor, [structures[i] for i in covered])
            for i, m, d in zip(covered, mean[:, column], std[:, column], strict=True):
                target = self.target_of(docs[i]["condition_decile"])
                ok = target is not None and abs(float(m) - target) <= self.within * abs(target)
                docs[i]["properties"] = {**docs[i]["properties"], self.condition: float(m)}
                docs[i]["property_std"] = {**docs[i]["property_std"], self.condition: float(d)}
                docs[i].update(target={"property": self.condition, "value": target, "within": self.within,
                                       "model_id": self.model_id, "ok": ok})
                docs[i]["criteria"]["within_target"] = ok
                if ok:
                    kept.append(i)
        for i in set(indices) - set(covered):
            docs[i]["criteria"]["within_target"] = False
        return kept


def _voxel_funnel(project: Project, dataset: str | None, drawn: list, base, condition: str, origin: str,
                  progress: ProgressCallback, cancel: CancelToken,
                  target: _TargetStage | None = None) -> tuple[dict, list]:
    """The voxel-VAE funnel (see the module docstring): summary and (structure, evaluation JSON) candidates."""
    n = len(drawn)
    failures = Counter(r for s, r, _, _ in drawn if s is None)
    if base is not None:
        wanted = {stoichiometry(base.composition)}
    else:
        from pymatgen.core import Composition

        wanted = {stoichiometry(Composition(formula)) for formula in _dataset_formulas(project, dataset)}
    checker = _DecodeChecker(origin, progress, cancel)
    docs, structures = [], []
    for k, (structure, _, latent, decile) in enumerate(drawn):
        if structure is not None:
            doc = checker.document(k, n, structure, latent)
            same = doc["valid"] and stoichiometry(structure.composition) in wanted
            doc.update(criteria={"structurally_valid": doc["valid"], "same_stoichiometry": same},
                       same_stoichiometry=same, in_training_set=None, condition=condition, condition_decile=decile)
            docs.append(doc)
            structures.append(structure)
    candidates = [i for i, d in enumerate(docs) if d["same_stoichiometry"]]
    outside = []
    for i, known in zip(candidates, checker.in_dataset(project, dataset, structures, docs, candidates), strict=True):
        docs[i]["in_training_set"], docs[i]["novel"] = known, not known
        if not known:
            outside.append(i)
    on_target = outside if target is None else target.judge(structures, docs, outside)
    unique = checker.mark_unique(structures, docs, on_target)
    for i in unique:
        docs[i]["success"] = True
    n_valid = sum(d["valid"] for d in docs)
    n_unique = len(unique)
    funnel = {"sampled": n, "decoded": len(docs), "structurally_valid": n_valid,
              "same_stoichiometry": len(candidates), "not_in_training_set": len(outside)}
    if target is not None:
        funnel["within_target"] = len(on_target)
    funnel["unique"] = n_unique
    histogram = Counter(len(s.composition.elements) for s, d in zip(structures, docs, strict=True) if d["valid"])
    return {
        "validity": n_valid / n,
        "compositional_validity": sum(d["compositionally_valid"] for d in docs) / n,
        "unique_rate": n_unique / max(len(on_target), 1),
        "novel_rate": len(outside) / max(len(candidates), 1),
        "funnel": funnel,
        "element_count_histogram": dict(sorted(histogram.items())),
        "note": "validity: structural (distances ≥ 0.5 Å, volume ≥ 0.1 Å³); compositional validity: SMACT, of all "
                "draws, not a funnel stage; the funnel applies the checks in turn (Court et al.)",
        "failures": dict(failures),
    }, list(zip(structures, docs, strict=True))


def _dataset_formulas(project: Project, dataset: str | None) -> set[str]:
    if dataset is None:
        return set()
    rows = project.page(StructureQuery(dataset=dataset), limit=project.count(StructureQuery(dataset=dataset)),
                        with_properties=False)
    return {r["reduced_formula"] for r in rows}


def _funnel(drawn: list[str | None], classes: list[int], known: set[str], progress: ProgressCallback,
            cancel: CancelToken) -> tuple[dict, list[tuple[str, int, dict]]]:
    from pymatgen.core import Composition

    n = len(drawn)
    counts = Counter(f for f in drawn if f is not None)
    first_class = {}
    for formula, c in zip(drawn, classes, strict=True):
        if formula is not None:
            first_class.setdefault(formula, c)
    rows, valid_draws, histogram = [], 0, Counter()
    for k, (formula, count) in enumerate(counts.most_common()):
        if k % 500 == 0:
            cancel.check()
            progress(ProgressEvent(k, len(counts), "checking formulas"))
        valid = smact_valid(formula)
        n_elements = len(Composition(formula).elements)
        checks = {"compositionally_valid": valid, "novel": formula not in known, "n_elements": n_elements,
                  "decomposition_class": first_class[formula]}
        rows.append((formula, count, checks))
        if valid:
            valid_draws += count
            histogram[n_elements] += count
    valid_rows = [r for r in rows if r[2]["compositionally_valid"]]
    funnel = {"sampled": n, "decoded": sum(counts.values()), "compositionally_valid": valid_draws,
              "unique": len(valid_rows), "novel": sum(1 for r in valid_rows if r[2]["novel"])}
    return {
        "validity": None,
        "compositional_validity": valid_draws / n,
        "unique_rate": funnel["unique"] / max(valid_draws, 1),
        "novel_rate": funnel["novel"] / max(funnel["unique"], 1),
        "funnel": funnel,
        "element_count_histogram": dict(sorted(histogram.items())),
        "note": "formulas have no structure: structural validity does not apply",
    }, rows


def element_prevalence(formulas: list[str], symbols: tuple[str, ...]) -> np.ndarray:
    """Share of formulas containing each element of ``symbols`` (the quantity compared by the KL check)."""
    from pymatgen.core import Composition

    index = {s: i for i, s in enumerate(symbols)}
    counts = np.zeros(len(symbols))
    for formula in formulas:
        for element in Composition(formula).elements:
            counts[index[element.symbol]] += 1
    return counts / max(len(formulas), 1)
