"""Chemistry helpers: ionic radii, Goldschmidt tolerance factor, charge-neutrality guesses."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from pymatgen.core import Composition, Element, Species

# Coordination numbers used for Shannon radii in the ABX3 perovskite.
PEROVSKITE_CN = {"A": "XII", "B": "VI", "X": "VI"}


@cache
def ionic_radius(symbol: str, oxidation_state: int, coordination: str) -> float:
    """Shannon ionic radius (Å) of ``symbol`` in ``oxidation_state`` at ``coordination`` (roman).

    Falls back to the nearest tabulated coordination, then to pymatgen's average ionic radius, so
    every element with a known oxidation state gets a value.
    """
    species = Species(symbol, oxidation_state)
    try:
        return float(species.get_shannon_radius(coordination))
    except (KeyError, ValueError):
        pass
    table = (Element(symbol).data.get("Shannon radii") or {}).get(str(oxidation_state), {})
    if table:
        wanted = _roman_to_int(coordination)
        nearest = min(table, key=lambda cn: abs(_roman_to_int(cn) - wanted))
        spins = table[nearest]
        return float(next(iter(spins.values()))["ionic_radius"])
    radius = species.ionic_radius or Element(symbol).average_ionic_radius
    if not radius:
        raise ValueError(f"no ionic radius known for {symbol}{oxidation_state:+d}")
    return float(radius)


def _roman_to_int(numeral: str) -> int:
    values = {"I": 1, "V": 5, "X": 10}
    numeral = "".join(c for c in numeral.upper() if c in values)  # Shannon uses e.g. 'IVSQ', 'IIIb'

    total = 0
    for a, b in zip(numeral, numeral[1:] + " ", strict=True):
        v = values[a]
        total += -v if b in values and values[b] > v else v
    return total


def tolerance_from_radii(ra, rb, rx):
    """Goldschmidt t = (rA + rX) / (√2 (rB + rX)) from radii in Å (floats, numpy arrays or torch tensors)."""
    return (ra + rx) / (math.sqrt(2.0) * (rb + rx))


def perovskite_lattice_from_radii(ra, rb, rx, supercell: int = 1):
    """Cubic ABX3 lattice constant a0 = n · max(2 (rB + rX), √2 (rA + rX)) in Å for an n×n×n cell
    (B–X or A–X contact, whichever is longer), from radii in Å (floats, numpy arrays or torch tensors)."""
    bx, ax = 2.0 * (rb + rx), math.sqrt(2.0) * (ra + rx)
    if hasattr(bx, "maximum"):  # torch tensor
        return supercell * bx.maximum(ax)
    return supercell * np.maximum(bx, ax)


def perovskite_site_radius(symbol: str, oxidation_state: int, role: str) -> float:
    """Shannon radius (Å) of an ion on perovskite role A (CN 12), B (CN 6) or X (CN 6)."""
    return ionic_radius(symbol, oxidation_state, PEROVSKITE_CN[role])


def goldschmidt_tolerance(a: tuple[str, int], b: tuple[str, int], x: tuple[str, int]) -> float:
    """Goldschmidt tolerance factor from (symbol, oxidation) pairs, with Shannon radii at CN 12 (A),
    6 (B) and 6 (X)."""
    return tolerance_from_radii(*(perovskite_site_radius(*ion, role) for ion, role in zip((a, b, x), "ABX", strict=True)))


def guess_oxidation_states(composition: Composition) -> dict[str, float] | None:
    """Most likely charge-neutral oxidation-state assignment (pymatgen's ICSD-based guesser), or
    None when no neutral assignment exists."""
    guesses = composition.oxi_state_guesses(max_sites=-50)
    return dict(guesses[0]) if guesses else None


def is_charge_neutral(composition: Composition) -> bool:
    """True when some combination of known oxidation states makes the formula neutral."""
    if len(composition.elements) == 1:
        return True
    return guess_oxidation_states(composition) is not None


def smact_valid(composition: Composition | str) -> bool:
    """Compositional validity as in CDVAE/DiffCSP (SMACT): some combination of the elements' oxidation
    states is charge neutral and, for ionic compounds, passes the Pauling electronegativity test
    (cations less electronegative than anions); all-metal compositions count as valid alloys."""
    from smact.screening import smact_validity

    return bool(smact_validity(Composition(composition).reduced_formula))
