"""Formulas as vectors of element fractions ("modified one-hot"), and back to integer formulas.

A composition over an element list becomes the vector of its atom counts normalized to sum 1
(NaCl → 0.5 at Na, 0.5 at Cl). Decoding a vector a model produced keeps the elements at or above a
threshold T, renormalizes, and finds the smallest integer formula whose fractions match within T/4
per element, searching totals up to 1/T atoms per formula unit, then divides by the GCD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition

DEFAULT_THRESHOLD = 0.04  # fractions below this decode to "element absent"


def fraction_vector(composition: Composition | str, symbols: Sequence[str], index: dict[str, int] | None = None
                    ) -> np.ndarray:
    """Atom fractions of ``composition`` over ``symbols`` (sums to 1); KeyError naming an element the
    list does not cover."""
    composition = Composition(composition)
    index = index or {s: i for i, s in enumerate(symbols)}
    vector = np.zeros(len(symbols))
    total = composition.num_atoms
    for element, amount in composition.get_el_amt_dict().items():
        if element not in index:
            raise KeyError(element)
        vector[index[element]] = amount / total
    return vector


def integer_formula(fractions: np.ndarray, symbols: Sequence[str], threshold: float = DEFAULT_THRESHOLD
                    ) -> dict[str, int] | None:
    """The integer formula (element → count, reduced by the GCD) that a fraction vector decodes to,
    or None when no element reaches ``threshold``.

    Elements below ``threshold`` are dropped and the rest renormalized; the smallest total n ≤ 1/T
    whose rounded counts (each ≥ 1) reproduce every fraction within T/4 is used, else the n with the
    smallest largest deviation.
    """
    fractions = np.asarray(fractions, dtype=float)
    kept = np.flatnonzero(fractions >= threshold)
    if kept.size == 0:
        return None
    f = fractions[kept] / fractions[kept].sum()
    best, best_error = None, math.inf
    for n in range(kept.size, max(kept.size, int(round(1.0 / max(threshold, 0.01)))) + 1):
        counts = np.maximum(1, np.rint(f * n)).astype(int)
        error = float(np.abs(counts / counts.sum() - f).max())
        if error < best_error:
            best, best_error = counts, error
        if error <= threshold / 4:
            break
    divisor = np.gcd.reduce(best)
    return {symbols[i]: int(c // divisor) for i, c in zip(kept, best, strict=True)}


def formula_text(counts: dict[str, int]) -> str:
    """A reduced formula string from element counts, in pymatgen's order (e.g. 'Li2O')."""
    return Composition(counts).reduced_formula


def perovskite_triple(formula: str) -> tuple[str, str, str] | None:
    """(A, B, X) of a three-element ABX3 formula (X: the element with three atoms per formula unit;
    A: the cation with the larger average ionic radius), or None for any other formula."""
    from pymatgen.core import Element

    amounts = Composition(formula).reduced_composition.get_el_amt_dict()
    if sorted(amounts.values()) != [1.0, 1.0, 3.0]:
        return None
    anion = next(e for e, n in amounts.items() if n == 3.0)
    cations = sorted((e for e in amounts if e != anion),
                     key=lambda e: -(Element(e).average_ionic_radius or 0.0))
    return cations[0], cations[1], anion
