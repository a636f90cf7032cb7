"""Convex hulls of a dataset's own formation energies: energy above hull and decomposition per entry.

The hull is the one spanned by *these* entries (plus the elements at formation energy 0 eV/atom), not
Materials Project's or any other reference hull, so ``e_above_hull`` here means "above this dataset's
hull". Hull geometry, decompositions and distances come from pymatgen's phase-diagram tools
(:class:`pymatgen.analysis.phase_diagram.PhaseDiagram`); this module only partitions the entries into
chemical spaces so that a dataset with many elements needs no 80-dimensional hull.

Partitioning: every distinct chemical system of the input (e.g. Li-O, Li-Fe-O) that is not contained
in a larger one is a *maximal space*; one ``PhaseDiagram`` is built per maximal space from the hull
candidates of all its subsystems (the lowest entry per reduced composition with negative formation
energy, and the elemental references). Each entry is evaluated in one maximal space that contains it.
This is the same partition as pymatgen's ``PatchedPhaseDiagram`` except that spaces come from *all*
entries (not only those with negative formation energy), so no entry falls back to pymatgen's
approximate SLSQP decomposition across patches, and progress/cancellation work between spaces.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element

from crystal_studio.core.errors import InvalidRecordError
from crystal_studio.core.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress

# e_above_hull values below this (eV/atom) are numerical noise and reported as exactly 0
ZERO_TOL = 1e-9
# a product with less than this atom fraction in a decomposition is dropped (pymatgen's own tolerance)
FRACTION_TOL = PhaseDiagram.numerical_tol

HullInput = tuple[Hashable, "Composition | str", float]


@dataclass(frozen=True)
class HullResult:
    """Where one entry lies relative to the dataset's convex hull.

    Attributes:
        structure_id: the id passed in with the entry.
        formula: reduced formula of the entry (pymatgen convention, e.g. ``"Li2O"``, ``"O2"``).
        chemical_system: its elements joined by ``-`` in alphabetical order (e.g. ``"Li-O"``).
        formation_energy_per_atom: the input formation energy, eV/atom.
        e_above_hull: energy above this dataset's hull, eV/atom; ≥ 0, exactly 0 on the hull.
        decomposition: the hull phases the entry's composition lies on, as (reduced formula,
            atom fraction), fractions summing to 1, largest first; a stable entry is itself alone.
        decomposition_ids: for each product, the id of the dataset entry that is that hull phase,
            or ``None`` for an elemental reference (an element at 0 eV/atom not in the dataset).
        n_components: number of decomposition products (1 for a stable entry or a polymorph).
    """

    structure_id: Hashable
    formula: str
    chemical_system: str
    formation_energy_per_atom: float
    e_above_hull: float
    decomposition: tuple[tuple[str, float], ...]
    decomposition_ids: tuple[Hashable | None, ...]
    n_components: int

    @property
    def stable(self) -> bool:
        """True when the entry is on the hull (``e_above_hull == 0``)."""
        return self.e_above_hull == 0.0


def chemical_system(composition: Composition) -> str:
    """``"Li-O"`` style name of a composition's elements (alphabetical)."""
    return "-".join(sorted(el.symbol for el in composition.elements))


def _composition(structure_id: Hashable, value: Composition | str) -> Composition:
    if isinstance(value, Composition):
        comp = value
    else:
        try:
            comp = Composition(str(value))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRecordError(str(structure_id), f"formula {value!r} is not a composition ({exc})") from None
    if comp.num_atoms <= 0 or not comp.elements:
        raise InvalidRecordError(str(structure_id), f"formula {value!r} has no atoms")
    if any(not isinstance(el, Element) for el in comp.elements):  # oxidation states, dummy species
        amounts: dict[Element, float] = defaultdict(float)
        try:
            for el, amount in comp.items():
                amounts[Element(el.symbol)] += amount
        except ValueError:
            unknown = ", ".join(el.symbol for el in comp.elements if not Element.is_valid_symbol(el.symbol))
            raise InvalidRecordError(str(structure_id), f"formula {value!r} is not a composition "
                                                        f"(unknown element {unknown})") from None
        comp = Composition(amounts)
    return comp


def dataset_hull(entries: Iterable[HullInput], progress: ProgressCallback = no_progress,
                 cancel: CancelToken | None = None) -> list[HullResult]:
    """Energy above the hull of these entries, and decomposition, for every entry.

    Args:
        entries: (structure id, composition or formula, formation energy per atom in eV/atom) per entry;
            formation energies are relative to the elements, which are added at 0 eV/atom. When several
            entries share a reduced composition the lowest is the candidate for the hull.
        progress: receives a :class:`ProgressEvent` per batch of chemical spaces (step/total = spaces).
        cancel: checked between chemical spaces; raises :class:`~crystal_studio.core.errors.Cancelled`.

    Returns:
        One :class:`HullResult` per entry, in input order.

    Raises:
        InvalidRecordError: an entry's formula is not a composition or its energy is not a finite number.
    """
    cancel = cancel or CancelToken()
    pd_entries: list[PDEntry] = []
    ids: list[Hashable] = []
    for structure_id, formula, energy in entries:
        comp = _composition(structure_id, formula)
        try:
            energy = float(energy)
        except (TypeError, ValueError):
            energy = math.nan
        if not math.isfinite(energy):
            raise InvalidRecordError(str(structure_id), f"formation energy {energy!r} eV/atom is not a finite number")
        pd_entries.append(PDEntry(comp, energy * comp.num_atoms, name=str(structure_id)))
        ids.append(structure_id)
    if not pd_entries:
        progress(ProgressEvent(0, 0, "no entries"))
        return []

    # the id of every entry, and one elemental reference (0 eV/atom) per element
    id_of: dict[int, Hashable | None] = {id(e): sid for e, sid in zip(pd_entries, ids, strict=True)}
    elements = sorted({el for e in pd_entries for el in e.elements})
    refs = {el: PDEntry(Composition({el: 1}), 0.0, name=f"{el.symbol} (reference)") for el in elements}
    for ref in refs.values():
        id_of[id(ref)] = None

    # hull candidates: lowest entry per reduced composition, kept when below the elements (or elemental);
    # on a tie the first entry wins, and dataset entries come before the references
    lowest: dict[Composition, PDEntry] = {}
    for entry in [*pd_entries, *refs.values()]:
        key = entry.composition.reduced_composition
        best = lowest.get(key)
        if best is None or entry.energy_per_atom < best.energy_per_atom:
            lowest[key] = entry
    candidates_by_space: dict[frozenset[Element], list[PDEntry]] = defaultdict(list)
    for key, entry in lowest.items():
        if key.is_element or entry.energy_per_atom < -PhaseDiagram.formation_energy_tol:
            candidates_by_space[frozenset(entry.elements)].append(entry)

    # maximal chemical spaces over all entries, and which one evaluates each entry
    entries_by_space: dict[frozenset[Element], list[int]] = defaultdict(list)
    for index, entry in enumerate(pd_entries):
        entries_by_space[frozenset(entry.elements)].append(index)
    covered: set[frozenset[Element]] = set()
    for space in entries_by_space:
        covered.update(_proper_subsets(space))
    maximal = sorted((s for s in entries_by_space if s not in covered), key=lambda s: (-len(s), sorted(s)))
    owner: dict[frozenset[Element], frozenset[Element]] = {}
    for space in maximal:
        for sub in (space, *_proper_subsets(space)):
            owner.setdefault(sub, space)
    evaluate_in: dict[frozenset[Element], list[int]] = defaultdict(list)
    for space, indices in entries_by_space.items():
        evaluate_in[owner[space]].extend(indices)

    results: list[HullResult | None] = [None] * len(pd_entries)
    total = len(maximal)
    every = max(1, total // 100)
    progress(ProgressEvent(0, total, f"{len(pd_entries)} entries in {total} chemical spaces"))
    for step, space in enumerate(maximal, start=1):
        cancel.check()
        hull_entries = [e for sub in (space, *_proper_subsets(space)) for e in candidates_by_space.get(sub, ())]
        diagram = PhaseDiagram(hull_entries, elements=sorted(space))
        stable = {id(e) for e in diagram.stable_entries}
        for index in evaluate_in[space]:
            results[index] = _result(diagram, pd_entries[index], ids[index], stable, id_of)
        if step % every == 0 or step == total:
            progress(ProgressEvent(step, total, f"hull of {'-'.join(sorted(el.symbol for el in space))}"))
    return results  # type: ignore[return-value]


def _proper_subsets(space: frozenset[Element]) -> Iterable[frozenset[Element]]:
    members = sorted(space)
    for size in range(1, len(members)):
        for combo in combinations(members, size):
            yield frozenset(combo)


def _result(diagram: PhaseDiagram, entry: PDEntry, structure_id: Hashable, stable: set[int],
            id_of: dict[int, Hashable | None]) -> HullResult:
    comp = entry.composition
    if id(entry) in stable:
        decomp: dict[PDEntry, float] = {entry: 1.0}
        e_hull = 0.0
    else:
        decomp, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)
        e_hull = 0.0 if e_hull < ZERO_TOL else float(e_hull)
    products = _normalized(decomp)
    return HullResult(
        structure_id=structure_id,
        formula=comp.reduced_formula,
        chemical_system=chemical_system(comp),
        formation_energy_per_atom=entry.energy_per_atom,
        e_above_hull=e_hull,
        decomposition=tuple((p.composition.reduced_formula, f) for p, f in products),
        decomposition_ids=tuple(id_of.get(id(p)) for p, _ in products),
        n_components=len(products),
    )


def _normalized(decomp: dict[PDEntry, float]) -> Sequence[tuple[PDEntry, float]]:
    kept = [(p, float(f)) for p, f in decomp.items() if f > FRACTION_TOL]
    total = sum(f for _, f in kept)
    return sorted(((p, f / total) for p, f in kept), key=lambda pf: (-pf[1], pf[0].composition.reduced_formula))
