"""Small synthetic crystals with smooth made-up properties, for the ML tests (no real data needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.cif import CifWriter

A_SITES = ("Sr", "Ba", "Ca", "K", "Na")
B_SITES = ("Ti", "Zr", "Nb", "Ta", "Sn")
X_SITES = ("O", "F")


def synthetic_crystals(n: int, seed: int = 0) -> list[tuple[Structure, dict[str, float]]]:
    """``n`` distorted cubic perovskites ABX3 and rock salts AX with two properties that depend
    smoothly on composition and lattice: 'formation_energy_per_atom' (eV/atom), 'band_gap' (eV) and
    'energy_per_atom' (eV/atom, a stand-in for an absolute energy)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a, b, x = rng.choice(A_SITES), rng.choice(B_SITES), rng.choice(X_SITES)
        if k % 3 == 2:
            length = 4.2 + 0.6 * rng.random()
            structure = Structure(Lattice.cubic(length), [a, x], [[0, 0, 0], [0.5, 0.5, 0.5]])
        else:
            length = 3.8 + 0.4 * rng.random()
            structure = Structure(Lattice.cubic(length), [a, b, x, x, x],
                                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
        structure.perturb(0.05, min_distance=0.01)
        chi = np.mean([Element(s.specie.symbol).X for s in structure])
        spread = np.std([Element(s.specie.symbol).X for s in structure])
        props = {"formation_energy_per_atom": float(-1.5 * spread + 0.2 * (length - 4.0)),
                 "band_gap": float(max(0.0, 2.0 * spread + chi - 2.5))}
        props["energy_per_atom"] = float(props["formation_energy_per_atom"] - 3.0 - 0.5 * chi)
        out.append((structure, props))
    return out


def write_csv(path: Path, crystals: list[tuple[Structure, dict[str, float]]]) -> Path:
    """A CSV with id, cif and property columns, as the shared datasets are laid out."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "cif", "formation_energy_per_atom", "band_gap", "energy_per_atom"])
        for k, (structure, props) in enumerate(crystals):
            writer.writerow([f"syn-{k}", str(CifWriter(structure)), props["formation_energy_per_atom"],
                             props["band_gap"], props["energy_per_atom"]])
    return path
