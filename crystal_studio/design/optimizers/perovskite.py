"""The chemical space of charge-neutral ABX3 perovskites, as tensors the optimizers share.

An oxidation pattern (qA, qB, qX) with qA + qB + 3 qX = 0 fixes the charge of every site role; a
site may only hold elements that commonly take its role's charge (pymatgen's common oxidation
states), so any choice of elements within one pattern is neutral by construction. Shannon radii
(CN 12 for A, 6 for B and X, in Å) per pattern, role and element feed the tolerance-factor loss.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure

from crystal_studio.core.chemistry import perovskite_lattice_from_radii, perovskite_site_radius, tolerance_from_radii
from crystal_studio.design.evaluation import perovskite_template
from crystal_studio.design.optimizers.base import Proposal
from crystal_studio.design.optimizers.objectives import ObjectiveLoss, ensemble_size, tolerance_factor_penalty
from crystal_studio.design.optimizers.settings import PATTERN_CHOICES, PerovskiteSearchConfig
from crystal_studio.design.spec import DesignSpec
from crystal_studio.ml.elements import ELEMENTS, N_ELEMENTS

ROLES = ("A", "B", "X")
# The two oxidation patterns the SMOACS paper uses for ABX3 perovskites, (qA, qB, qX).
PAPER_PATTERNS = ((1, 2, -1), (2, 4, -2))
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
    def from_spec(cls, spec: DesignSpec, patterns: str = "all") -> PerovskiteSpace:
        """The space a spec allows; ``patterns`` 'all' enumerates every neutral (qA, qB, qX) with
        qX ∈ {−1, −2, −3}, 'paper' keeps only :data:`PAPER_PATTERNS`."""
        from crystal_studio.design.spec import SpecError

        if patterns not in PATTERN_CHOICES:
            raise SpecError([f"patterns: '{patterns}' is not one of {', '.join(PATTERN_CHOICES)}"])
        c = spec.constraints
        allowed = set(c.allowed_elements) if c.allowed_elements else None
        forbidden = set(c.forbidden_elements)

        def ok(symbol: str, role: str) -> bool:
            if symbol in forbidden or (allowed is not None and symbol not in allowed):
                return False
            site = c.site_elements.get(role)
            return site is None or symbol in site

        candidates = [s for s in ELEMENTS if Element(s).Z <= MAX_Z and s not in EXCLUDED and not Element(s).is_noble_gas]
        found, masks, radii = [], [], []
        for qx in (-1, -2, -3):
            for qa in (1, 2, 3):
                qb = -3 * qx - qa
                if not 1 <= qb <= 7 or (patterns == "paper" and (qa, qb, qx) not in PAPER_PATTERNS):
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
                        rad[r, i] = perovskite_site_radius(symbol, q, role)
                if mask.any(axis=1).all():
                    found.append((qa, qb, qx))
                    masks.append(mask)
                    radii.append(rad)
        if not found:
            raise SpecError(["constraints: no charge-neutral ABX3 pattern is possible with the allowed elements"])
        roles, ideal = perovskite_template(c.template.supercell)
        return cls(found, torch.tensor(np.array(masks)), torch.tensor(np.array(radii), dtype=torch.float32),
                   c.template.supercell, roles, torch.tensor(ideal, dtype=torch.float32))

    def structure(self, element_indices: np.ndarray, lengths: np.ndarray, frac: np.ndarray) -> Structure:
        """A pymatgen structure from per-site element indices, lattice lengths (Å, angles 90°) and
        fractional coordinates."""
        return Structure(Lattice.orthorhombic(*lengths), [ELEMENTS[i] for i in element_indices], frac % 1.0)

    def role_radii(self, pattern: np.ndarray, elements: np.ndarray) -> np.ndarray:
        """(B, 3) mean Shannon radius (Å) of the A, B and X sites of argmax crystals given their
        pattern (B,) and element indices (B, S)."""
        roles = self.role_index.numpy()
        radii = self.radii.numpy()[pattern][:, roles, :]  # (B, S, E)
        site_r = np.take_along_axis(radii, elements[..., None], axis=2)[..., 0]
        return np.stack([site_r[:, roles == k].mean(axis=1) for k in range(3)], axis=1)

    def site_charges(self, pattern: int) -> list[int]:
        """Oxidation state of every template site under ``pattern``."""
        charges = self.patterns[pattern]
        return [charges[k] for k in self.role_index.tolist()]

    def lattice_constants(self, pattern: np.ndarray, elements: np.ndarray) -> np.ndarray:
        """(B,) cubic lattice constant (Å) of each supercell from its site-mean radii."""
        return perovskite_lattice_from_radii(*self.role_radii(pattern, elements).T, self.supercell)

    def tolerance_factors(self, pattern: np.ndarray, elements: np.ndarray) -> np.ndarray:
        """(B,) Goldschmidt t of argmax crystals from their site-mean radii."""
        return tolerance_from_radii(*self.role_radii(pattern, elements).T)

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
        lengths = np.repeat(self.lattice_constants(pattern, elements)[:, None], 3, axis=1)
        return pattern, elements, lengths



class PerovskiteScorer:
    """The loss and pass/fail of argmax perovskites under a spec, a predictor and the shared settings."""

    def __init__(self, spec: DesignSpec, predictor, space: PerovskiteSpace, config: PerovskiteSearchConfig):
        self.config = config
        self.space = space
        self.caution = config.caution if config.caution is not None else (1.0 if ensemble_size(predictor) > 1 else 0.0)
        self.objective = ObjectiveLoss(spec, predictor, self.caution, config.target_margin, config.bound_margin,
                                       config.linear_bounds)
        self.window = spec.constraints.tolerance_factor

    def tolerance_term(self, t):
        """Weighted tolerance-factor loss of t (tensor or array); 0 without a window."""
        if self.window is None:
            return 0.0 * t
        return self.config.tolerance_weight * tolerance_factor_penalty(t, self.window, self.config.tolerance_band)

    def judge(self, pattern: np.ndarray, elements: np.ndarray, lengths: np.ndarray, frac: np.ndarray,
              mean: torch.Tensor, std: torch.Tensor) -> HardCrystals:
        """Score argmax crystals given the model's mean and spread (B, T)."""
        t = self.space.tolerance_factors(pattern, elements)
        loss = self.objective.total(mean, std).cpu().numpy() + self.tolerance_term(t)
        passes = self.objective.passes(mean).cpu().numpy()
        if self.window is not None:
            passes &= (t >= self.window[0]) & (t <= self.window[1])
        return HardCrystals(pattern, elements, lengths, frac, mean.cpu().numpy(), std.cpu().numpy(), t, loss, passes)

    def metrics(self, hard: HardCrystals) -> dict[str, float]:
        """Criterion and success rates of a batch of argmax crystals, keyed 'rate/<criterion>'."""
        rates = self.objective.criterion_rates(torch.as_tensor(hard.mean))
        if self.window is not None:
            rates["rate/tolerance_factor"] = float(np.mean((hard.tolerance >= self.window[0])
                                                           & (hard.tolerance <= self.window[1])))
        rates["rate/success"] = float(np.mean(hard.passes))
        return rates


@dataclass
class HardCrystals:
    """The argmax crystals of the batch and how the optimizer's model judges them."""

    pattern: np.ndarray  # (B,) oxidation-pattern index
    elements: np.ndarray  # (B, S) element indices
    lengths: np.ndarray  # (B, 3) Å
    frac: np.ndarray  # (B, S, 3)
    mean: np.ndarray  # (B, T) predicted properties
    std: np.ndarray  # (B, T) ensemble spread
    tolerance: np.ndarray  # (B,) Goldschmidt t
    loss: np.ndarray  # (B,) loss of the hard crystal
    passes: np.ndarray  # (B,) bool, every criterion met under the model


@dataclass
class ArchiveEntry:
    """One archived argmax crystal with the optimizer's verdict on it."""

    loss: float
    pattern: int
    elements: np.ndarray  # (S,) element indices
    lengths: np.ndarray  # (3,) Å
    frac: np.ndarray  # (S, 3)
    mean: np.ndarray  # (T,) predicted properties
    std: np.ndarray  # (T,)
    tolerance: float  # Goldschmidt t from the site-mean radii
    passes: bool  # every criterion met under the model
    origin: str


class PerovskiteArchive:
    """The best crystal seen for every distinct assignment of elements to the template's sites.

    For the 5-atom cell the three X sites are equivalent, so their order is ignored; for supercells
    the site-by-site assignment is the key. Lengths follow the composition, so one entry per
    assignment is one structure up to small strains.
    """

    def __init__(self, space: PerovskiteSpace):
        self.space = space
        self._roles = space.roles
        self.entries: dict[tuple, ArchiveEntry] = {}
        self._passing = 0  # entries meeting every criterion (kept up to date by offer)

    def key(self, elements: np.ndarray) -> tuple:
        if self.space.supercell > 1:
            return tuple(int(e) for e in elements)
        by_role = {r: [int(e) for e, role in zip(elements, self._roles, strict=True) if role == r] for r in ROLES}
        return tuple(by_role["A"]), tuple(by_role["B"]), tuple(sorted(by_role["X"]))

    def offer(self, hard: HardCrystals, origin: str) -> None:
        """Add every crystal of ``hard`` that is new or better than the stored one of its assignment."""
        for i in range(len(hard.loss)):
            key = self.key(hard.elements[i])
            loss = float(hard.loss[i])
            old = self.entries.get(key)
            if old is None or loss < old.loss:
                self._passing += bool(hard.passes[i]) - (old.passes if old is not None else 0)
                self.entries[key] = ArchiveEntry(loss, int(hard.pattern[i]), hard.elements[i].copy(),
                                                 hard.lengths[i].copy(), hard.frac[i].copy(), hard.mean[i].copy(),
                                                 hard.std[i].copy(), float(hard.tolerance[i]), bool(hard.passes[i]),
                                                 f"{origin}, candidate {i}")

    def __len__(self) -> int:
        return len(self.entries)

    def n_passing(self) -> int:
        return self._passing

    def best_loss(self) -> float:
        return min(entry.loss for entry in self.entries.values())

    def best(self, n: int) -> list[ArchiveEntry]:
        """The ``n`` best entries: those meeting every criterion under the model first, then by loss."""
        return heapq.nsmallest(n, self.entries.values(), key=lambda entry: (not entry.passes, entry.loss))

    def proposals(self, n: int, targets: list[str]) -> list[Proposal]:
        """The best ``n`` entries as proposals, best first, each with its designed site charges."""
        return [Proposal(self.space.structure(e.elements, e.lengths, e.frac),
                         dict(zip(targets, e.mean.tolist(), strict=True)), dict(zip(targets, e.std.tolist(), strict=True)),
                         origin=e.origin, site_charges=self.space.site_charges(e.pattern))
                for e in self.best(n)]
