"""Candidate evaluation: every success criterion of a spec, structural and compositional validity,
template checks, tolerance factor, uniqueness within a run and novelty against a dataset.

Property predictions are passed in (from whatever predictor judged the run), so this module needs no
torch. Lengths Å, angles degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Element, Structure

from crystal_studio.core.chemistry import guess_oxidation_states, perovskite_site_radius, tolerance_from_radii
from crystal_studio.core.structures import min_periodic_distance, spacegroup
from crystal_studio.design.spec import DesignSpec, Template

MIN_DISTANCE = 0.5  # Å: structural validity needs every interatomic distance at least this
MIN_VOLUME = 0.1  # Å³: and a cell volume above this

# Ideal fractional positions of the 5-atom cubic ABX3 cell, by role.
PEROVSKITE_SITES = {
    "A": np.array([[0.0, 0.0, 0.0]]),
    "B": np.array([[0.5, 0.5, 0.5]]),
    "X": np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]),
}


def perovskite_template(n: int = 1) -> tuple[list[str], np.ndarray]:
    """Roles and ideal fractional coordinates of an n×n×n ABX3 supercell, ordered A…, B…, X…."""
    shifts = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)], dtype=float)
    roles, coords = [], []
    for role, sites in PEROVSKITE_SITES.items():
        for shift in shifts:
            for site in sites:
                roles.append(role)
                coords.append((site + shift) / n)
    return roles, np.array(coords)


def perovskite_roles(structure: Structure, template: Template) -> dict[str, list[int]] | None:
    """Assign each site the role A, B or X of the ideal perovskite (super)cell, allowing a rigid
    origin shift, when every site lies within ``template.coordinate_tolerance`` (fractional) of a
    distinct ideal site and no element sits on both cation (A/B) and anion (X) sites; None otherwise."""
    roles, ideal = perovskite_template(template.supercell)
    if len(structure) != len(roles):
        return None
    frac = structure.frac_coords
    species = [site.species_string for site in structure]
    for origin in frac:  # try putting each site at the A origin
        shifted = frac - origin
        delta = shifted[:, None, :] - ideal[None, :, :]
        delta -= np.round(delta)
        dist = np.abs(delta).max(axis=2)  # (sites, ideal sites), fractional
        assignment = dist.argmin(axis=1)
        if len(set(assignment)) != len(roles) or dist[np.arange(len(frac)), assignment].max() > template.coordinate_tolerance:
            continue
        result: dict[str, list[int]] = {"A": [], "B": [], "X": []}
        for site_index, ideal_index in enumerate(assignment):
            result[roles[ideal_index]].append(site_index)
        # Mixed anions (ABX2Y) are perovskites too, but no element may sit on both cation and anion sites.
        if not {species[i] for i in result["X"]} & {species[i] for i in result["A"] + result["B"]}:
            return result
    return None


def structurally_valid(min_distance: float, volume: float) -> bool:
    """Structural validity from the shortest interatomic distance (Å) and the cell volume (Å³)."""
    return bool(min_distance >= MIN_DISTANCE and volume > MIN_VOLUME)


MIN_LATTICE_LENGTH = 0.5  # Å: a shorter lattice vector puts every atom on top of its own image
MAX_LATTICE_LENGTH = 500.0  # Å: a longer one is no crystal an optimizer meant (and measuring it takes long)
MIN_VOLUME_FACTOR = 1e-3  # V / (abc): below this the cell is flat (angles summing to 360°)


def lattice_problem(structure: Structure) -> str | None:
    """Why an optimizer's crystal has a degenerate cell, or None for a usable one: "non-finite lattice"
    (NaN/inf lengths, angles or coordinates), "lattice vector under 0.5 Å", "lattice vector over 500 Å",
    "flat cell" (the volume under 1e-3 of a·b·c). The optimization job rejects such crystals before
    evaluating them and counts each reason (design/job.py)."""
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not (np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all()):
        return "non-finite lattice"
    lengths = np.linalg.norm(matrix, axis=1)
    if lengths.min() < MIN_LATTICE_LENGTH:
        return "lattice vector under 0.5 Å"
    if lengths.max() > MAX_LATTICE_LENGTH:
        return "lattice vector over 500 Å"
    if abs(float(np.linalg.det(matrix))) < MIN_VOLUME_FACTOR * float(np.prod(lengths)):
        return "flat cell"
    return None


def angles_ok(structure: Structure, template: Template) -> bool:
    lo, hi = template.angle_window
    return all(lo <= angle <= hi for angle in structure.lattice.angles)


def site_charges_from_guess(structure: Structure, oxidation: dict[str, float] | None) -> list[int] | None:
    """Per-site integer charges from a per-element oxidation guess (None when unknown or fractional)."""
    if not oxidation:
        return None
    charges = [oxidation.get(site.specie.symbol) for site in structure]
    if any(q is None or q != int(q) for q in charges):
        return None
    return [int(q) for q in charges]


def charges_are_neutral(structure: Structure, site_charges: list[int]) -> bool:
    """True when the per-site charges sum to zero and each is a common oxidation state of its element."""
    return sum(site_charges) == 0 and all(
        q in Element(site.specie.symbol).common_oxidation_states for site, q in zip(structure, site_charges, strict=True))


def perovskite_tolerance_factor(structure: Structure, roles: dict[str, list[int]], site_charges: list[int] | None) -> float:
    """Goldschmidt t from the mean Shannon radius of each role's sites (A at CN 12, B and X at CN 6)
    with the given per-site charges — the quantity the perovskite optimizers compute (NaN when a
    charge or radius is unknown)."""
    if site_charges is None or any(q == 0 for q in site_charges):
        return math.nan
    try:
        means = []
        for role in ("A", "B", "X"):
            radii = [perovskite_site_radius(structure[i].specie.symbol, site_charges[i], role) for i in roles[role]]
            means.append(float(np.mean(radii)))
    except (ValueError, KeyError):
        return math.nan
    return float(tolerance_from_radii(*means))


@dataclass
class CandidateEvaluation:
    """All checks for one candidate; ``criteria`` maps each success criterion to pass/fail."""

    formula: str
    spacegroup_symbol: str | None
    spacegroup_number: int | None
    properties: dict[str, float]
    property_std: dict[str, float]
    min_distance: float  # Å
    tolerance_factor: float
    structurally_valid: bool
    compositionally_valid: bool
    criteria: dict[str, bool] = field(default_factory=dict)
    site_charges: list[int] | None = None  # oxidation state of every site (designed or guessed)
    unique: bool = True
    novel: bool = True

    @property
    def success(self) -> bool:
        return all(self.criteria.values())

    def as_json(self) -> dict:
        return {
            "formula": self.formula, "success": self.success, "criteria": self.criteria,
            "properties": self.properties, "property_std": self.property_std,
            "spacegroup": self.spacegroup_symbol, "spacegroup_number": self.spacegroup_number,
            "min_distance": self.min_distance,
            "tolerance_factor": None if math.isnan(self.tolerance_factor) else self.tolerance_factor,
            "valid": self.structurally_valid, "compositionally_valid": self.compositionally_valid,
            "site_charges": self.site_charges,
            "unique": self.unique, "novel": self.novel,
        }


def evaluate_structure(structure: Structure, spec: DesignSpec, properties: dict[str, float],
                       property_std: dict[str, float] | None = None,
                       site_charges: list[int] | None = None) -> CandidateEvaluation:
    """Check one candidate against ``spec`` given its predicted ``properties``.

    ``site_charges`` are the per-site oxidation states the candidate was designed with (an
    optimizer's oxidation pattern); without them the most likely neutral assignment is guessed from
    the composition. They decide charge neutrality and the tolerance factor.
    """
    c = spec.constraints
    dmin = min_periodic_distance(structure)
    if site_charges is not None and len(site_charges) == len(structure) and charges_are_neutral(structure, site_charges):
        neutral = True
    else:
        oxidation = guess_oxidation_states(structure.composition)
        neutral = oxidation is not None
        site_charges = site_charges_from_guess(structure, oxidation)
    elements = {el.symbol for el in structure.composition.elements}
    roles = perovskite_roles(structure, c.template) if c.template.kind == "perovskite" else None
    t = perovskite_tolerance_factor(structure, roles, site_charges) if roles else math.nan
    number, symbol = spacegroup(structure)
    criteria = property_criteria(spec, properties)
    if c.charge_neutral:
        criteria["charge_neutral"] = neutral
    if c.template.kind == "perovskite":
        criteria["template_kept"] = roles is not None and angles_ok(structure, c.template)
    if c.tolerance_factor is not None:
        criteria["tolerance_factor"] = bool(np.isfinite(t) and c.tolerance_factor[0] <= t <= c.tolerance_factor[1])
    criteria["min_distance"] = dmin >= c.min_distance
    if c.allowed_elements or c.forbidden_elements or c.site_elements:
        criteria["elements_allowed"] = _elements_allowed(structure, elements, roles, spec)
    if c.formula:
        criteria["composition_kept"] = structure.composition.reduced_formula == c.formula
    return CandidateEvaluation(
        formula=structure.composition.reduced_formula,
        spacegroup_symbol=symbol,
        spacegroup_number=number,
        properties=dict(properties),
        property_std=dict(property_std or {}),
        min_distance=dmin,
        tolerance_factor=t,
        structurally_valid=structurally_valid(dmin, structure.volume),
        compositionally_valid=neutral,
        site_charges=site_charges,
        criteria=criteria,
    )


def property_criteria(spec: DesignSpec, properties: dict[str, float]) -> dict[str, bool]:
    """Pass/fail of every objective criterion of ``spec`` for predicted ``properties`` (missing or
    non-finite values fail)."""
    criteria = {}
    for objective in spec.objectives:
        if objective.has_criterion:
            value = properties.get(objective.property, math.nan)
            criteria[objective.criterion_name] = bool(np.isfinite(value) and objective.passes(value))
    return criteria


def rejudged(criteria: dict[str, bool], spec: DesignSpec, properties: dict[str, float]) -> dict[str, bool]:
    """``criteria`` of an evaluated structure with the property criteria replaced by those of another
    model's ``properties`` (the structural and chemical checks do not depend on the model)."""
    return {**criteria, **property_criteria(spec, properties)}


def _elements_allowed(structure: Structure, elements: set[str], roles, spec: DesignSpec) -> bool:
    c = spec.constraints
    if c.allowed_elements and not elements <= set(c.allowed_elements):
        return False
    if elements & set(c.forbidden_elements):
        return False
    if c.site_elements:
        if roles is None:
            return False
        for role, allowed in c.site_elements.items():
            if any(structure[i].specie.symbol not in allowed for i in roles[role]):
                return False
    return True


def mark_unique_and_novel(structures: list[Structure], evaluations: list[CandidateEvaluation],
                          reference: list[Structure] | None = None) -> None:
    """Set ``unique`` (not a StructureMatcher duplicate of an earlier candidate in the list) and
    ``novel`` (matches no reference structure). Comparisons only run within a reduced formula."""
    matcher = StructureMatcher()
    by_formula: dict[str, list[Structure]] = {}
    for s in reference or []:
        by_formula.setdefault(s.composition.reduced_formula, []).append(s)
    seen: dict[str, list[Structure]] = {}
    for structure, ev in zip(structures, evaluations, strict=True):
        earlier = seen.setdefault(ev.formula, [])
        ev.unique = not any(matcher.fit(structure, other) for other in earlier)
        earlier.append(structure)
        ev.novel = not any(matcher.fit(structure, other) for other in by_formula.get(ev.formula, []))


def summarize(evaluations: list[dict], spec: DesignSpec | None = None) -> dict:
    """Run summary from candidates' :meth:`CandidateEvaluation.as_json` documents: success rate, each
    criterion's rate, structural/compositional validity, uniqueness and novelty rates (fractions of
    all candidates). Without ``spec`` (a run that has none, e.g. crystals sampled from a crystal VAE)
    ``criteria`` is empty."""
    n = len(evaluations)
    criteria = spec.criteria_names() if spec is not None else []

    def rate(get) -> float:
        return float(np.mean([bool(get(e)) for e in evaluations])) if n else 0.0

    return {
        "n": n,
        "success_rate": rate(lambda e: e["success"]),
        "criteria": {name: rate(lambda e, name=name: e["criteria"].get(name)) for name in criteria},
        "valid_rate": rate(lambda e: e["valid"]),
        "compositional_validity": rate(lambda e: e["compositionally_valid"]),
        "unique_rate": rate(lambda e: e["unique"]),
        "novel_rate": rate(lambda e: e["novel"]),
        "unique_success_rate": rate(lambda e: e["success"] and e["unique"]),
    }
