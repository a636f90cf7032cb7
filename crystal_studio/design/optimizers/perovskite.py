"""The chemical space of charge-neutral ABX3 perovskites, as tensors the optimizers share.

An oxidation pattern (qA, qB, qX) with qA + qB + 3 qX = 0 fixes the charge of every site role; a
site may only hold elements that commonly take its role's charge (pymatgen's common oxidation
states), so any choice of elements within one pattern is neutral by construction. Shannon radii
(CN 12 for A, 6 for B and X, in Å) per pattern, role and element feed the tolerance-factor loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure

from crystal_studio.core.chemistry import ionic_radius
from crystal_studio.design.evaluation import perovskite_template
from crystal_studio.design.spec import DesignSpec
from crystal_studio.ml.elements import ELEMENTS, N_ELEMENTS

ROLES = ("A", "B", "X")
COORDINATION = {"A": "XII", "B": "VI", "X": "VI"}
ANIONS = ("N", "O", "F", "S", "Cl", "Se", "Br", "I")
EXCLUDED = {"H", "Tc", "Pm"}  # hydrogen is no cation here; Tc and Pm are radioactive
MAX_Z = 83  # Bi; heavier elements are radioactive


def el_is_cation(symbol: str) -> bool:
    """Metals and metalloids may sit on A/B sites; other non-metals (C, P, …) may not."""
    el = Element(symbol)
    return bool(el.is_metal or el.is_metalloid)


def _shannon_states(symbol: str) -> set[int]:
    table = Element(symbol).data.get("Shannon radii") or {}
    return {int(k) for k in table if k.lstrip("-").isdigit()}


@dataclass
class PerovskiteSpace:
    """Allowed elements and radii per oxidation pattern and role."""

    patterns: list[tuple[int, int, int]]  # (qA, qB, qX)
    mask: torch.Tensor  # (P, 3, E) bool: element allowed on role under pattern
    radii: torch.Tensor  # (P, 3, E) Å (0 where not allowed)
    supercell: int
    roles: list[str]  # role of each template site
    ideal_frac: torch.Tensor  # (S, 3) ideal fractional coordinates

    @property
    def n_sites(self) -> int:
        return len(self.roles)

    @property
    def role_index(self) -> torch.Tensor:
        """(S,) index into ROLES of each site."""
        return torch.tensor([ROLES.index(r) for r in self.roles])

    @classmethod
    def from_spec(cls, spec: DesignSpec) -> PerovskiteSpace:
        c = spec.constraints
        allowed = set(c.allowed_elements) if c.allowed_elements else None
        forbidden = set(c.forbidden_elements)

        def ok(symbol: str, role: str) -> bool:
            if symbol in forbidden or (allowed is not None and symbol not in allowed):
                return False
            site = c.site_elements.get(role)
            return site is None or symbol in site

        candidates = [s for s in ELEMENTS if Element(s).Z <= MAX_Z and s not in EXCLUDED and not Element(s).is_noble_gas]
        patterns, masks, radii = [], [], []
        for qx in (-1, -2, -3):
            for qa in (1, 2, 3):
                qb = -3 * qx - qa
                if not 1 <= qb <= 7:
                    continue
                mask = np.zeros((3, N_ELEMENTS), dtype=bool)
                rad = np.zeros((3, N_ELEMENTS))
                for r, (role, q) in enumerate(zip(ROLES, (qa, qb, qx), strict=True)):
                    for symbol in candidates:
                        if role == "X" and symbol not in ANIONS:
                            continue
                        if role != "X" and (symbol in ANIONS or not (el_is_cation(symbol))):
                            continue
                        el = Element(symbol)
                        if q not in el.common_oxidation_states or q not in _shannon_states(symbol):
                            continue
                        if not ok(symbol, role):
                            continue
                        i = ELEMENTS.index(symbol)
                        mask[r, i] = True
                        rad[r, i] = ionic_radius(symbol, q, COORDINATION[role])
                if mask.any(axis=1).all():
                    patterns.append((qa, qb, qx))
                    masks.append(mask)
                    radii.append(rad)
        if not patterns:
            from crystal_studio.design.spec import SpecError

            raise SpecError(["constraints: no charge-neutral ABX3 pattern is possible with the allowed elements"])
        roles, ideal = perovskite_template(c.template.supercell)
        return cls(patterns, torch.tensor(np.array(masks)), torch.tensor(np.array(radii), dtype=torch.float32),
                   c.template.supercell, roles, torch.tensor(ideal, dtype=torch.float32))

    def structure(self, element_indices: np.ndarray, lengths: np.ndarray, frac: np.ndarray) -> Structure:
        """A pymatgen structure from per-site element indices, lattice lengths (Å, angles 90°) and
        fractional coordinates."""
        return Structure(Lattice.orthorhombic(*lengths), [ELEMENTS[i] for i in element_indices], frac % 1.0)

    def typical_lattice(self, pattern: int, elements: np.ndarray) -> float:
        """Cubic lattice constant (Å) of the supercell estimated from radii: max(2(rB+rX), √2(rA+rX))."""
        roles = self.role_index.numpy()
        r = [float(np.mean([self.radii[pattern, k, e] for e, role in zip(elements, roles, strict=True) if role == k]))
             for k in range(3)]
        return self.supercell * max(2 * (r[1] + r[2]), math.sqrt(2) * (r[0] + r[2]))

    def tolerance_factors(self, pattern: np.ndarray, elements: np.ndarray) -> np.ndarray:
        """Goldschmidt t (B,) of argmax crystals: pattern (B,) and element indices (B, S)."""
        roles = self.role_index.numpy()
        radii = self.radii.numpy()[pattern][:, roles, :]  # (B, S, E)
        site_r = np.take_along_axis(radii, elements[..., None], axis=2)[..., 0]
        ra, rb, rx = (site_r[:, roles == k].mean(axis=1) for k in range(3))
        return (ra + rx) / (math.sqrt(2) * (rb + rx))

    def random_crystals(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n random neutral crystals on the template: pattern (n,), element indices (n, S) drawn
        uniformly from each site's allowed set, and cubic lattice lengths (n, 3) from radii."""
        roles = self.role_index.numpy()
        mask = self.mask.numpy()
        pattern = rng.integers(0, len(self.patterns), n)
        elements = np.zeros((n, self.n_sites), dtype=int)
        for i in range(n):
            for s, role in enumerate(roles):
                elements[i, s] = rng.choice(np.flatnonzero(mask[pattern[i], role]))
        lengths = np.array([[self.typical_lattice(p, e)] * 3 for p, e in zip(pattern, elements, strict=True)])
        return pattern, elements, lengths

