"""SMOACS: batched gradient optimization of crystals through differentiable property predictors.

Each candidate is a soft perovskite: lattice lengths, fractional-coordinate offsets clamped to the
template, per-site logits over elements and logits over oxidation patterns. Soft atom types are
the pattern-weighted mixture of per-pattern softmaxes, where each pattern masks the elements that
cannot take its charge, so the argmax crystal is neutral by construction. The loss combines the
spec's objectives (hinges on predicted properties, optionally ensemble mean ∓ k·std for caution)
and a tolerance-factor hinge computed from soft Shannon radii. Three Adam optimizers (lattice,
atom types, coordinates) with cosine-annealed learning rates; the softmax temperature anneals
linearly; at 1/4, 1/2 and 3/4 of the run the best fifth of the batch is copied over the rest with
noise. Everything is vectorized over the batch; see methods.md §1 (Fujii et al., arXiv 2410.08562).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from crystal_studio.design.optimizers.base import Optimizer, Proposal, StepReport
from crystal_studio.design.optimizers.objectives import ObjectiveLoss, tolerance_factor_penalty
from crystal_studio.design.optimizers.perovskite import PerovskiteSpace
from crystal_studio.design.spec import DesignSpec
from crystal_studio.ml.batching import batch_from_tensors
from crystal_studio.ml.elements import N_ELEMENTS
from crystal_studio.ml.predictor import CrystalPredictor


@dataclass
class SmoacsConfig:
    """Hyperparameters (learning rates per Adam step; lengths Å)."""

    lr_lattice: float = 0.02
    lr_atoms: float = 0.2
    lr_coords: float = 0.005
    temperature_start: float = 1.0
    temperature_end: float = 0.01
    caution: float = 0.0  # k in mean ∓ k·std
    tolerance_weight: float = 1.0
    copy_fraction: float = 0.2
    copy_noise: float = 0.5  # std of noise added to copied logits
    min_length: float = 2.0  # Å per 5-atom cell
    max_length: float = 10.0
    eval_every: int = 10  # steps between argmax-crystal criterion rates


class SmoacsOptimizer(Optimizer):
    name = "smoacs"

    def __init__(self, spec: DesignSpec, predictor: CrystalPredictor, n_candidates: int = 256, n_steps: int = 200,
                 seed: int = 0, device: str | torch.device = "cpu", config: SmoacsConfig | None = None):
        super().__init__(spec, n_candidates, n_steps, seed)
        if spec.constraints.template.kind != "perovskite":
            from crystal_studio.design.spec import SpecError

            raise SpecError(["constraints.template.kind: SMOACS here optimizes perovskite templates; use "
                             "'screen' or 'random' for free templates"])
        self.config = config or SmoacsConfig()
        self.device = torch.device(device)
        self.predictor = predictor.to(self.device).eval()
        for p in self.predictor.parameters():
            p.requires_grad_(False)
        self.space = PerovskiteSpace.from_spec(spec)
        self.objective = ObjectiveLoss(spec, predictor, self.config.caution)
        self.tolerance_window = spec.constraints.tolerance_factor
        self._final: list[Proposal] = []
        self._init_parameters()

    # ------------------------------------------------------------------ state

    def _init_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        b, s, p = self.n_candidates, self.space.n_sites, len(self.space.patterns)
        n = self.space.supercell
        dev = self.device
        self.pattern_logits = (torch.randn(b, p, generator=g) * 0.5).to(dev).requires_grad_()
        self.site_logits = (torch.randn(b, s, N_ELEMENTS, generator=g) * 0.5).to(dev).requires_grad_()
        self.lengths = (n * (3.6 + 0.8 * torch.rand(b, 3, generator=g))).to(dev).requires_grad_()
        self.offsets = (0.02 * torch.randn(b, s, 3, generator=g)).to(dev).requires_grad_()
        self.mask = self.space.mask.to(dev)  # (P, 3, E)
        self.radii = self.space.radii.to(dev)
        self.role_index = self.space.role_index.to(dev)  # (S,)
        self.ideal = self.space.ideal_frac.to(dev)  # (S, 3)
        origin = torch.ones(s, 1, device=dev)
        origin[0] = 0.0  # site 0 fixes the origin
        self.origin_mask = origin

    def _temperature(self, step: int) -> float:
        c = self.config
        frac = step / max(1, self.n_steps - 1)
        return c.temperature_start + (c.temperature_end - c.temperature_start) * frac

    def _site_mask(self) -> Tensor:
        """(P, S, E) allowed elements of every site under every pattern."""
        return self.mask[:, self.role_index, :]

    def soft_types(self, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
        """Pattern weights (B, P), per-pattern site distributions (B, P, S, E) and mixed soft
        types (B, S, E)."""
        weights = torch.softmax(self.pattern_logits / temperature, dim=-1)
        masked = self.site_logits[:, None] + torch.where(self._site_mask(), 0.0, -1e9)[None]
        per_pattern = torch.softmax(masked / temperature, dim=-1)
        types = torch.einsum("bp,bpse->bse", weights, per_pattern)
        return weights, per_pattern, types

    def geometry(self) -> tuple[Tensor, Tensor]:
        """Clamped fractional coordinates (B, S, 3) and diagonal lattices (B, 3, 3), Å."""
        tol = self.spec.constraints.template.coordinate_tolerance
        offsets = self.offsets.clamp(-tol, tol) * self.origin_mask
        frac = self.ideal[None] + offsets
        n = self.space.supercell
        lengths = self.lengths.clamp(self.config.min_length * n, self.config.max_length * n)
        return frac, torch.diag_embed(lengths)

    def _predict(self, types: Tensor, frac: Tensor, lattice: Tensor) -> tuple[Tensor, Tensor]:
        b, s = types.shape[:2]
        batch = batch_from_tensors(types.reshape(b * s, -1), frac.reshape(b * s, 3), lattice, [s] * b)
        return self.predictor(batch)

    def _tolerance_factor(self, weights: Tensor, per_pattern: Tensor) -> Tensor:
        """Soft Goldschmidt t (B,) from pattern- and type-weighted Shannon radii."""
        site_radii = torch.einsum("bpse,pse->bps", per_pattern, self.radii[:, self.role_index, :])
        site_radii = torch.einsum("bp,bps->bs", weights, site_radii)
        role_means = [site_radii[:, self.role_index == k].mean(dim=1) for k in range(3)]
        ra, rb, rx = role_means
        return (ra + rx) / (2 ** 0.5 * (rb + rx))

    def loss(self, step: int) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Per-candidate total loss (B,), its terms, and the predicted means (B, T) of the soft crystals."""
        weights, per_pattern, types = self.soft_types(self._temperature(step))
        frac, lattice = self.geometry()
        mean, std = self._predict(types, frac, lattice)
        terms = self.objective.terms(mean, std)
        if self.tolerance_window is not None:
            t = self._tolerance_factor(weights, per_pattern)
            terms["tolerance_factor"] = self.config.tolerance_weight * tolerance_factor_penalty(t, self.tolerance_window)
        total = torch.stack(list(terms.values())).sum(dim=0)
        return total, terms, mean

    # ------------------------------------------------------------------ argmax crystal

    @torch.no_grad()
    def hard_crystals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Argmax pattern (B,), element indices (B, S), lengths (B, 3) and fractional coordinates."""
        pattern = self.pattern_logits.argmax(dim=-1)
        allowed = self._site_mask()[pattern]  # (B, S, E)
        elements = torch.where(allowed, self.site_logits, torch.tensor(-1e9, device=self.device)).argmax(dim=-1)
        frac, lattice = self.geometry()
        return (pattern.cpu().numpy(), elements.cpu().numpy(), torch.diagonal(lattice, dim1=1, dim2=2).cpu().numpy(),
                frac.cpu().numpy())

    @torch.no_grad()
    def _hard_predictions(self) -> tuple[Tensor, Tensor, np.ndarray, np.ndarray]:
        pattern, elements, _, _ = self.hard_crystals()
        one_hot = torch.nn.functional.one_hot(torch.as_tensor(elements, device=self.device), N_ELEMENTS).float()
        frac, lattice = self.geometry()
        mean, std = self._predict(one_hot, frac, lattice)
        return mean, std, pattern, elements

    @torch.no_grad()
    def _criterion_rates(self) -> dict[str, float]:
        mean, _, pattern, elements = self._hard_predictions()
        rates = self.objective.criterion_rates(mean)
        if self.tolerance_window is not None:
            t = self.space.tolerance_factors(pattern, elements)
            lo, hi = self.tolerance_window
            rates["rate/tolerance_factor"] = float(np.mean((t >= lo) & (t <= hi)))
        return rates

    # ------------------------------------------------------------------ loop

    def _copy_best(self, total: Tensor, g: torch.Generator) -> None:
        """Overwrite the worst candidates with noisy copies of the best ``copy_fraction``."""
        order = torch.argsort(total.detach())
        n_best = max(1, int(self.config.copy_fraction * self.n_candidates))
        best, rest = order[:n_best], order[n_best:]
        source = best[torch.arange(len(rest), device=self.device) % n_best]
        noise = self.config.copy_noise
        with torch.no_grad():
            for tensor, scale in ((self.site_logits, noise), (self.pattern_logits, noise),
                                  (self.offsets, 0.01), (self.lengths, 0.05)):
                tensor[rest] = tensor[source] + scale * torch.randn(tensor[rest].shape, generator=g).to(self.device)

    def steps(self) -> Iterator[StepReport]:
        c = self.config
        groups = [(self.lengths, c.lr_lattice), ((self.site_logits, self.pattern_logits), c.lr_atoms),
                  (self.offsets, c.lr_coords)]
        optimizers = [torch.optim.Adam(p if isinstance(p, tuple) else (p,), lr=lr) for p, lr in groups]
        schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(1, self.n_steps)) for o in optimizers]
        copy_steps = {self.n_steps // 4, self.n_steps // 2, 3 * self.n_steps // 4} - {0}
        g = torch.Generator().manual_seed(self.seed + 1)
        for step in range(self.n_steps):
            total, terms, mean = self.loss(step)
            for o in optimizers:
                o.zero_grad()
            total.sum().backward()
            for o, sched in zip(optimizers, schedulers, strict=True):
                o.step()
                sched.step()
            total = total.detach()
            metrics = {"loss/best": float(total.min()), "loss/mean": float(total.mean()),
                       "temperature": self._temperature(step)}
            metrics.update({f"loss/{name}": float(v.detach().mean()) for name, v in terms.items()})
            if step % c.eval_every == 0 or step == self.n_steps - 1:
                metrics.update(self._criterion_rates())
            if step + 1 in copy_steps:
                self._copy_best(total, g)
            proposals = {t: mean[:, i].detach().cpu().tolist() for i, t in enumerate(self.predictor.targets)}
            yield StepReport(step + 1, self.n_steps, metrics, proposals)
        self._final = self._proposals()

    @torch.no_grad()
    def _proposals(self) -> list[Proposal]:
        mean, std, pattern, elements = self._hard_predictions()
        _, _, lengths, frac = self.hard_crystals()
        total = self.objective.total(mean, std).cpu().numpy()
        if self.tolerance_window is not None:
            t = torch.as_tensor(self.space.tolerance_factors(pattern, elements))
            total = total + self.config.tolerance_weight * tolerance_factor_penalty(t, self.tolerance_window).numpy()
        out = []
        targets = self.predictor.targets
        for i in np.argsort(total, kind="stable"):
            structure = self.space.structure(elements[i], lengths[i], frac[i])
            out.append(Proposal(structure, dict(zip(targets, mean[i].tolist(), strict=True)),
                                dict(zip(targets, std[i].tolist(), strict=True)), origin=f"candidate {i}"))
        return out

    def candidates(self) -> list[Proposal]:
        return self._final

    def parameters(self) -> dict:
        return {**super().parameters(), "config": asdict(self.config), "patterns": self.space.patterns}
