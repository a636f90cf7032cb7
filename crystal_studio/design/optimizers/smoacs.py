"""SMOACS: batched gradient optimization of crystals through differentiable property predictors.

Each candidate is a soft perovskite: per-site logits over elements, logits over oxidation patterns,
and a lattice. Soft atom types are the pattern-weighted mixture of per-pattern softmaxes, where each
pattern masks the elements that cannot take its charge, so the argmax ("hard") crystal is neutral by
construction (methods.md §1; Fujii et al., arXiv 2410.08562).

What keeps the optimizer honest against a model it could exploit:

- **Composition-consistent geometry** (``geometry='a0'``, the default): the cubic lattice constant
  follows the soft site-mean Shannon radii, a0 = n·max(2(rB + rX), √2(rA + rX)), and the optimizer
  may only strain each axis by ±``lattice_slack``; coordinates stay on the ideal sites unless
  ``max_offset`` > 0. The model is never asked about cells far from where such compounds live.
- **Copy-and-mutate** at fractions ``mutate_at`` of the run, ranked by the loss of the hard crystal:
  hard crystals meeting every criterion are kept, then the best ``keep_fraction`` of the batch; the
  rest take a kept donor's pattern weights and geometry with freshly drawn site logits, and the Adam
  optimizers are rebuilt (no stale moments).
- **Archive**: every ``archive_every`` steps the hard crystals are pooled by composition on the
  template (one entry per distinct assignment, its best loss); the result is the best unique
  ``n_candidates`` of the pool, like a random search choosing from its whole budget.
- **Caution** with ensembles: predictions enter the loss as mean ± k·std in the direction that hurts
  (k = 1 by default for ensembles, 0 for single models).
- The tolerance-factor loss aims t at the window's centre, from the same site-mean radii the
  evaluator uses with the candidate's own oxidation pattern.

Three Adam optimizers (lattice, atom types, coordinates) with cosine-annealed learning rates; the
softmax temperature anneals linearly. Everything is vectorized over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor

from crystal_studio.core.chemistry import perovskite_lattice_from_radii, tolerance_from_radii
from crystal_studio.design.optimizers.base import Optimizer, Proposal, StepReport
from crystal_studio.design.optimizers.perovskite import (
    ROLES,
    HardCrystals,
    PerovskiteArchive,
    PerovskiteScorer,
    PerovskiteSpace,
)
from crystal_studio.design.optimizers.settings import SmoacsConfig
from crystal_studio.design.spec import DesignSpec, SpecError
from crystal_studio.ml.batching import batch_from_tensors
from crystal_studio.ml.elements import N_ELEMENTS, element_index
from crystal_studio.ml.predictor import CrystalPredictor


class SmoacsOptimizer(Optimizer):
    name = "smoacs"
    config_class = SmoacsConfig

    def __init__(self, spec: DesignSpec, predictor: CrystalPredictor, n_candidates: int = 256, n_steps: int = 200,
                 seed: int = 0, device: str | torch.device = "cpu", config: SmoacsConfig | None = None,
                 seed_formulas: list[tuple[str, str, str]] | None = None):
        """``seed_formulas``: (A, B, X) element triples that bias the initial site logits (see
        :attr:`SmoacsConfig.seed_run`), crystal i taking triple i mod their number."""
        super().__init__(spec, n_candidates, n_steps, seed)
        self.seed_formulas = list(seed_formulas or [])
        if spec.constraints.template.kind != "perovskite":
            raise SpecError(["constraints.template.kind: SMOACS here optimizes perovskite templates; use "
                             "'screen' or 'random' for free templates"])
        self.config = config or SmoacsConfig()
        self.config.validate()
        c = self.config
        self.device = torch.device(device)
        self.predictor = predictor.to(self.device).eval()
        for p in self.predictor.parameters():
            p.requires_grad_(False)
        self.space = PerovskiteSpace.from_spec(spec, c.patterns)
        self.scorer = PerovskiteScorer(spec, predictor, self.space, c)
        self.objective = self.scorer.objective
        self.max_offset = min(c.max_offset, spec.constraints.template.coordinate_tolerance)
        self.archive = PerovskiteArchive(self.space)
        self._final: list[Proposal] = []
        self._init_parameters()

    # ------------------------------------------------------------------ state

    def _init_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        b, s, p = self.n_candidates, self.space.n_sites, len(self.space.patterns)
        c, n, dev = self.config, self.space.supercell, self.device
        pattern_logits = torch.randn(b, p, generator=g) * c.init_scale
        site_logits = torch.randn(b, s, N_ELEMENTS, generator=g) * c.init_scale
        for i in range(b) if self.seed_formulas else ():
            columns = [element_index(e) for e in self.seed_formulas[i % len(self.seed_formulas)]]
            for site, role in enumerate(self.space.roles):
                site_logits[i, site, columns[ROLES.index(role)]] += c.seed_strength
            # the oxidation patterns under which the formula is neutral and allowed
            fits = self.space.mask[:, 0, columns[0]] & self.space.mask[:, 1, columns[1]] & self.space.mask[:, 2, columns[2]]
            pattern_logits[i, fits] += c.seed_strength
        self.pattern_logits = pattern_logits.to(dev).requires_grad_()
        self.site_logits = site_logits.to(dev).requires_grad_()
        if c.geometry == "a0":  # strain in tanh space: lengths = a0 (1 + slack tanh(strain))
            self.lattice_param = (0.1 * torch.randn(b, 3, generator=g)).to(dev).requires_grad_()
        else:
            self.lattice_param = (n * (3.6 + 0.8 * torch.rand(b, 3, generator=g))).to(dev).requires_grad_()
        self.offsets = (0.02 * torch.randn(b, s, 3, generator=g)).to(dev).requires_grad_(self.max_offset > 0)
        self.mask = self.space.mask.to(dev)  # (P, 3, E)
        self.radii = self.space.radii.to(dev)
        self.role_index = self.space.role_index.to(dev)  # (S,)
        self.ideal = self.space.ideal_frac.to(dev)  # (S, 3)
        origin = torch.ones(s, 1, device=dev)
        origin[0] = 0.0  # site 0 fixes the origin
        self.origin_mask = origin
        self._generator = torch.Generator().manual_seed(self.seed + 1)

    def mutation_steps(self) -> list[int]:
        """Steps (counted from 1) after which copy-and-mutate happens."""
        return sorted({int(round(f * self.n_steps)) for f in self.config.mutate_at} - {0, self.n_steps})

    def _phase(self, step: int) -> float:
        """Progress in [0, 1] of the annealing schedules at ``step`` (from 0): over the whole run, or
        within the current stretch between mutations when ``restart_schedules`` is on."""
        start, end = 0, self.n_steps
        if self.config.restart_schedules:
            bounds = [0, *self.mutation_steps(), self.n_steps]
            for lo, hi in zip(bounds, bounds[1:], strict=False):
                if lo <= step < hi:
                    start, end = lo, hi
        return (step - start) / max(1, end - start - 1)

    def _temperature(self, step: int) -> float:
        c = self.config
        return c.temperature_start + (c.temperature_end - c.temperature_start) * self._phase(step)

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

    def soft_role_radii(self, weights: Tensor, per_pattern: Tensor) -> Tensor:
        """(B, 3) pattern- and type-weighted mean Shannon radius (Å) of the A, B and X sites."""
        site_radii = torch.einsum("bpse,pse->bps", per_pattern, self.radii[:, self.role_index, :])
        site_radii = torch.einsum("bp,bps->bs", weights, site_radii)
        return torch.stack([site_radii[:, self.role_index == k].mean(dim=1) for k in range(3)], dim=1)

    def geometry(self, role_radii: Tensor) -> tuple[Tensor, Tensor]:
        """Fractional coordinates (B, S, 3) and diagonal lattices (B, 3, 3) in Å for crystals whose
        sites have the given role radii (B, 3)."""
        c, n = self.config, self.space.supercell
        offsets = self.offsets.clamp(-self.max_offset, self.max_offset) * self.origin_mask
        frac = self.ideal[None] + offsets
        if c.geometry == "a0":
            a0 = perovskite_lattice_from_radii(role_radii[:, 0], role_radii[:, 1], role_radii[:, 2], n)
            lengths = a0[:, None] * (1.0 + c.lattice_slack * torch.tanh(self.lattice_param))
        else:
            lengths = self.lattice_param.clamp(c.min_length * n, c.max_length * n)
        return frac, torch.diag_embed(lengths)

    def _predict(self, types: Tensor, frac: Tensor, lattice: Tensor) -> tuple[Tensor, Tensor]:
        b, s = types.shape[:2]
        batch = batch_from_tensors(types.reshape(b * s, -1), frac.reshape(b * s, 3), lattice, [s] * b)
        return self.predictor(batch)

    def loss(self, step: int) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Per-candidate total loss (B,), its terms, and the predicted means (B, T) of the soft crystals."""
        weights, per_pattern, types = self.soft_types(self._temperature(step))
        role_radii = self.soft_role_radii(weights, per_pattern)
        frac, lattice = self.geometry(role_radii)
        mean, std = self._predict(types, frac, lattice)
        terms = self.objective.terms(mean, std)
        if self.scorer.window is not None:
            terms["tolerance_factor"] = self.scorer.tolerance_term(
                tolerance_from_radii(role_radii[:, 0], role_radii[:, 1], role_radii[:, 2]))
        total = torch.stack(list(terms.values())).sum(dim=0)
        return total, terms, mean

    # ------------------------------------------------------------------ argmax crystals

    @torch.no_grad()
    def hard_crystals(self) -> HardCrystals:
        """The argmax crystals, their geometry (from their own radii) and the model's verdict."""
        pattern = self.pattern_logits.argmax(dim=-1)
        allowed = self._site_mask()[pattern]  # (B, S, E)
        elements = torch.where(allowed, self.site_logits, torch.tensor(-1e9, device=self.device)).argmax(dim=-1)
        pattern_np, elements_np = pattern.cpu().numpy(), elements.cpu().numpy()
        role_radii = self.space.role_radii(pattern_np, elements_np)
        frac, lattice = self.geometry(torch.as_tensor(role_radii, dtype=torch.float32, device=self.device))
        one_hot = torch.nn.functional.one_hot(elements, N_ELEMENTS).float()
        mean, std = self._predict(one_hot, frac, lattice)
        return self.scorer.judge(pattern_np, elements_np, torch.diagonal(lattice, dim1=1, dim2=2).cpu().numpy(),
                                 frac.cpu().numpy(), mean, std)

    def _hard_metrics(self, hard: HardCrystals) -> dict[str, float]:
        return {**self.scorer.metrics(hard), "archive/size": float(len(self.archive)),
                "archive/successful": float(self.archive.n_passing())}

    # ------------------------------------------------------------------ loop

    def _optimizers(self) -> list[tuple[torch.optim.Optimizer, float]]:
        """Fresh Adam optimizers with their base learning rates (lattice, atom types, coordinates)."""
        c = self.config
        groups = [((self.lattice_param,), c.lr_lattice), ((self.site_logits, self.pattern_logits), c.lr_atoms)]
        if self.max_offset > 0:
            groups.append(((self.offsets,), c.lr_coords))
        return [(torch.optim.Adam(params, lr=lr), lr) for params, lr in groups]

    def mutate(self, hard: HardCrystals) -> np.ndarray:
        """Copy-and-mutate (see the module docstring); returns the indices that were replaced."""
        b = self.n_candidates
        keep = hard.passes.copy() if self.config.keep_successful else np.zeros_like(hard.passes)
        n_top = max(1, int(round(self.config.keep_fraction * b)))
        for i in np.argsort(hard.loss, kind="stable"):
            if n_top == 0:
                break
            if not keep[i]:
                keep[i] = True
                n_top -= 1
        replaced = np.flatnonzero(~keep)
        if len(replaced) == 0:
            return replaced
        donors = np.flatnonzero(keep)
        donors = donors[np.argsort(hard.loss[donors], kind="stable")]
        source = torch.as_tensor(donors[np.arange(len(replaced)) % len(donors)], device=self.device)
        target = torch.as_tensor(replaced, device=self.device)
        g = self._generator
        with torch.no_grad():
            self.pattern_logits[target] = self.pattern_logits[source]
            self.lattice_param[target] = self.lattice_param[source]
            self.offsets[target] = self.offsets[source]
            fresh = torch.randn((len(replaced), *self.site_logits.shape[1:]), generator=g) * self.config.init_scale
            self.site_logits[target] = fresh.to(self.device)
        return replaced

    def steps(self) -> Iterator[StepReport]:
        c = self.config
        optimizers = self._optimizers()
        mutate_steps = set(self.mutation_steps())
        for step in range(self.n_steps):
            decay = 0.5 * (1.0 + math.cos(math.pi * self._phase(step)))
            total, terms, mean = self.loss(step)
            if not bool(torch.isfinite(total).all()):  # before any update: the parameters are the last good state
                bad = int((~torch.isfinite(total)).sum())
                self.stop_reason = (f"stopped at step {step + 1}: the loss of {bad} of {len(total)} crystals became "
                                    f"non-finite (NaN/inf); kept the candidates archived up to step {step}")
                break
            for opt, base_lr in optimizers:
                opt.zero_grad()
                for group in opt.param_groups:
                    group["lr"] = base_lr * decay
            total.sum().backward()
            for opt, _ in optimizers:
                opt.step()
            total = total.detach()
            metrics = {"loss/best": float(total.min()), "loss/mean": float(total.mean()),
                       "temperature": self._temperature(step)}
            metrics.update({f"loss/{name}": float(v.detach().mean()) for name, v in terms.items()})
            done = step + 1
            if done % c.archive_every == 0 or done in mutate_steps or done == self.n_steps:
                hard = self.hard_crystals()
                self.archive.offer(hard, f"step {done}")
                metrics.update(self._hard_metrics(hard))
                if done in mutate_steps:
                    metrics["mutated"] = float(len(self.mutate(hard)))
                    optimizers = self._optimizers()
            proposals = {t: mean[:, i].detach().cpu().tolist() for i, t in enumerate(self.predictor.targets)}
            yield StepReport(done, self.n_steps, metrics, proposals)
        self._final = self.archive.proposals(self.n_candidates, self.predictor.targets)

    def candidates(self) -> list[Proposal]:
        return self._final

    def parameters(self) -> dict:
        return {**super().parameters(), "config": asdict(self.config), "caution": self.scorer.caution,
                "patterns": self.space.patterns, "seed_formulas": len(self.seed_formulas)}
