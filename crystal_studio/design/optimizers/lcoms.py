"""LCOMs latent optimization (``shared/methods.md`` §2): gradient descent on an energy surrogate in the
latent space of a composition-conditioned crystal VAE (:mod:`crystal_studio.ml.models.csp_vae`).

Starting crystals are encoded to their latent means; ``steps`` gradient steps move every latent
downhill on the surrogate E(z, c) with its composition c fixed (steps of ``step_size`` latent units
per standardized-energy gradient; latents clipped to ±``latent_bound``); the final latents are decoded
once, for exactly the starting crystals' atoms. Every ``true_every`` steps the current latents can be
decoded and scored by an independent energy (CHGNet in the structure-prediction job) — LCOMs'
Figure 2: a surrogate that is being exploited shows its own energy falling while the true one rises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from pymatgen.core import Structure

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.options import option, range_problems
from crystal_studio.core.progress import CancelToken
from crystal_studio.ml.models.csp_vae import SURROGATES, CspVAE, composition_vector


@dataclass
class LCOMsConfig:
    """Settings of the latent stage of LCOMs structure prediction."""

    steps: int = option(50, "gradient steps on the latents (paper: 50)", minimum=1)
    step_size: float = option(0.1, "latent units per standardized-energy gradient per step", minimum=0.0)
    latent_bound: float = option(4.0, "latents are kept within ± this (the prior's N(0, I) scale)", minimum=0.1)
    true_every: int = option(10, "score decodes with the independent energy every k steps (0: never)", minimum=0)

    def validate(self) -> None:
        problems = range_problems(self)
        if problems:
            raise CrystalStudioError("lcoms: " + "; ".join(problems))


@dataclass
class LatentOutcome:
    """The latent stage for a batch of starts: decodes (None with a reason where decoding failed),
    surrogate energies (eV/atom) at the start and the end, and the per-step trace (``step``,
    ``surrogate_mean``, ``surrogate_min`` and, on scored steps, ``true_mean``; eV/atom)."""

    decoded: list[Structure | None]
    reasons: list[str | None]
    surrogate_start: list[float]
    surrogate_end: list[float]
    trace: list[dict[str, float]] = field(default_factory=list)


def optimize_latents(model: CspVAE, starts: list[Structure], surrogate: str, config: LCOMsConfig,
                     true_energy: Callable[[list[Structure]], list[float]] | None = None,
                     on_step: Callable[[dict[str, float]], None] | None = None,
                     cancel: CancelToken | None = None) -> LatentOutcome:
    """Run the latent stage from ``starts`` (each must fit the model) on surrogate ``surrogate``
    ('conservative' or 'mse'); ``true_energy`` maps decoded structures to energies per atom (NaN where
    it cannot score one); ``on_step`` gets each trace row as it is made."""
    if surrogate not in SURROGATES:
        raise CrystalStudioError(f"unknown surrogate '{surrogate}' (choose {', '.join(SURROGATES)})")
    config.validate()
    cancel = cancel or CancelToken()
    energy = model.surrogates[surrogate]
    lattice, coords, species = model.structure_tensors(starts)
    composition = composition_vector(species)
    z = model.encode(lattice, coords, species).clamp(-config.latent_bound, config.latent_bound)
    with torch.no_grad():
        start = energy(z, composition).tolist()
    trace = []
    for step in range(1, config.steps + 1):
        cancel.check()
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy.standardized(z, composition).sum(), z)
        z = (z - config.step_size * grad).clamp(-config.latent_bound, config.latent_bound).detach()
        with torch.no_grad():
            values = energy(z, composition)
        row = {"step": float(step), "surrogate_mean": float(values.mean()), "surrogate_min": float(values.min())}
        if true_energy is not None and config.true_every and (step % config.true_every == 0 or step == 1):
            decoded, _ = model.decode(z, species)
            scored = [e for e in true_energy([s for s in decoded if s is not None]) if math.isfinite(e)]
            row["true_mean"] = float(np.mean(scored)) if scored else math.nan
        trace.append(row)
        if on_step is not None:
            on_step(row)
    decoded, reasons = model.decode(z, species)
    with torch.no_grad():
        end = energy(z, composition).tolist()
    return LatentOutcome(decoded, reasons, start, end, trace)
