"""The element vocabulary of the learned models and a table of elemental properties.

Models see an atom as an index into :data:`ELEMENTS` (hydrogen to plutonium, index = Z - 1) or as a
probability distribution over it. The elemental property table seeds the element embeddings, so
chemically similar elements start out close even when a dataset rarely contains them.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
from pymatgen.core import Element

MAX_Z = 94  # plutonium; Materials Project-like datasets contain nothing heavier
ELEMENTS: tuple[str, ...] = tuple(Element.from_Z(z).symbol for z in range(1, MAX_Z + 1))
N_ELEMENTS = len(ELEMENTS)
_INDEX = {symbol: i for i, symbol in enumerate(ELEMENTS)}


def element_index(symbol: str) -> int:
    """Index of an element symbol in :data:`ELEMENTS`; KeyError if the models do not cover it."""
    return _INDEX[symbol]


def unsupported_elements(symbols) -> list[str]:
    """The symbols among ``symbols`` that the models do not cover (sorted, unique)."""
    return sorted({s for s in symbols if s not in _INDEX})


def _number(value) -> float:
    """A pymatgen quantity (possibly None or NaN) as a float, NaN when missing."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@lru_cache(maxsize=1)
def element_feature_table() -> np.ndarray:
    """Standardized elemental properties, shape (N_ELEMENTS, 15), float64.

    Columns before standardization: Z, period, group, Pauling electronegativity, atomic radius (Å),
    atomic mass (u), Mendeleev number, first ionization energy (eV), electron affinity (eV),
    molar volume (cm³/mol), mean ionic radius (Å), block s/p/d/f (one-hot), electronegativity-missing
    flag. Missing values are replaced by the column mean before standardization.
    """
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for every missing property
        for z in range(1, MAX_Z + 1):
            el = Element.from_Z(z)
            ionization = el.ionization_energies[0] if el.ionization_energies else None
            x = _number(el.X)
            rows.append([
                z, el.row, el.group, x, _number(el.atomic_radius), _number(el.atomic_mass), _number(el.mendeleev_no),
                _number(ionization), _number(el.electron_affinity), _number(el.molar_volume),
                _number(el.average_ionic_radius),
                *(float(el.block == b) for b in "spdf"), float(math.isnan(x)),
            ])
    table = np.array(rows, dtype=np.float64)
    means = np.nanmean(table, axis=0)
    missing = np.isnan(table)
    table[missing] = np.take(means, np.nonzero(missing)[1])
    std = table.std(axis=0)
    return (table - table.mean(axis=0)) / np.where(std > 0, std, 1.0)
