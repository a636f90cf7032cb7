"""Canonical property names, their units, and the dataset column names that map onto them."""

from __future__ import annotations

import re

# Canonical name -> unit.
UNITS: dict[str, str] = {
    "formation_energy_per_atom": "eV/atom",
    "band_gap": "eV",
    "e_above_hull": "eV/atom",
    "bulk_modulus": "GPa",
    "shear_modulus": "GPa",
    "energy_per_atom": "eV/atom",
    "volume_per_atom": "Å³/atom",
    "density": "g/cm³",
    "tolerance_factor": "",
    "magnetic_moment": "μB/cell",
    "efermi": "eV",
    # derived by store/derived.py from a dataset's own convex hull (e_above_hull above is the same unit)
    "decomposition_components": "",
}

# Normalized column name (lower case, non-alphanumerics collapsed to '_') -> canonical name.
_ALIASES: dict[str, str] = {
    "formation_energy_per_atom": "formation_energy_per_atom",
    "formation_energy": "formation_energy_per_atom",
    "e_form": "formation_energy_per_atom",
    "eform": "formation_energy_per_atom",
    "ef": "formation_energy_per_atom",
    "delta_e": "formation_energy_per_atom",
    "form_energy": "formation_energy_per_atom",
    "band_gap": "band_gap",
    "bandgap": "band_gap",
    "gap": "band_gap",
    "eg": "band_gap",
    "band_gap_ev": "band_gap",
    "gap_pbe": "band_gap",
    "e_above_hull": "e_above_hull",
    "energy_above_hull": "e_above_hull",
    "ehull": "e_above_hull",
    "e_hull": "e_above_hull",
    "stability": "e_above_hull",
    "bulk_modulus": "bulk_modulus",
    "k_vrh": "bulk_modulus",
    "bulk_modulus_vrh": "bulk_modulus",
    "shear_modulus": "shear_modulus",
    "g_vrh": "shear_modulus",
    "energy_per_atom": "energy_per_atom",
    "volume_per_atom": "volume_per_atom",
    "density": "density",
    "tolerance_factor": "tolerance_factor",
    "magnetic_moment": "magnetic_moment",
    "efermi": "efermi",
    "e_fermi": "efermi",
}

# Columns that identify a record or hold text, never properties.
ID_COLUMNS = ("id", "material_id", "mp_id", "name", "identifier")
STRUCTURE_COLUMNS = ("cif", "structure", "cif_text", "poscar")


# properties that cannot be negative; predictors that are not followed by gradients clip them at zero
NON_NEGATIVE = frozenset({"band_gap", "bulk_modulus", "e_above_hull", "volume_per_atom", "density"})


def normalize_column(name: str) -> str:
    """Lower-case a column name and collapse runs of non-alphanumerics to '_'."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def canonical_name(column: str) -> str:
    """The canonical property name for a dataset column, or the normalized column name itself."""
    key = normalize_column(column)
    return _ALIASES.get(key, key)


def unit_of(name: str) -> str:
    """Unit string of a canonical property ('' when dimensionless or unknown)."""
    return UNITS.get(name, "")
