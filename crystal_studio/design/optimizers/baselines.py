"""Baselines every design run is compared with.

- :class:`RandomSearch`: the same template and constraints, random charge-neutral crystals (elements
  uniform within each site's allowed set, lattice from Shannon radii), the same prediction budget as
  the optimizer (candidates × steps), scored with the same loss; keeps the best unique
  ``n_candidates`` seen.
- :class:`DatasetScreening`: the best existing structures of a dataset under the same predictors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import torch
from pymatgen.core import Structure

from crystal_studio.design.optimizers.base import Optimizer, Proposal, StepReport
from crystal_studio.design.optimizers.objectives import ObjectiveLoss
from crystal_studio.design.optimizers.perovskite import (
    PerovskiteArchive,
    PerovskiteScorer,
    PerovskiteSearchConfig,
    PerovskiteSpace,
)
from crystal_studio.design.spec import DesignSpec, SpecError
from crystal_studio.ml.predictor import predict_structures
from crystal_studio.store.project import Project, StructureQuery


class _BestPool:
    """The best ``size`` (loss, structure, mean, std) seen so far."""

    def __init__(self, size: int):
        self.size = size
        self.items: list[tuple[float, Structure, np.ndarray, np.ndarray, str]] = []

    def offer(self, losses, structures, means, stds, origins) -> None:
        self.items += list(zip(losses, structures, means, stds, origins, strict=True))
        self.items.sort(key=lambda item: item[0])
        del self.items[self.size:]

    def values(self, targets: list[str]) -> dict[str, list[float]]:
        """Predicted values of the pool's structures per target (for live scatter plots)."""
        return {t: [float(item[2][i]) for item in self.items] for i, t in enumerate(targets)}

    def metrics(self) -> dict[str, float]:
        losses = [item[0] for item in self.items]
        return {"loss/best": float(np.min(losses)), "loss/mean": float(np.mean(losses))}

    def proposals(self, targets: list[str]) -> list[Proposal]:
        return [Proposal(s, dict(zip(targets, m.tolist(), strict=True)), dict(zip(targets, d.tolist(), strict=True)),
                         origin) for _, s, m, d, origin in self.items]


class RandomSearch(Optimizer):
    """Random neutral perovskites scored like SMOACS's argmax crystals; the best unique ``n_candidates``
    of the whole budget (one entry per site assignment, as SMOACS's archive) are the result."""

    name = "random"
    config_class = PerovskiteSearchConfig

    def __init__(self, spec: DesignSpec, predictor, n_candidates: int = 256, n_steps: int = 200, seed: int = 0,
                 device: str | torch.device = "cpu", config: PerovskiteSearchConfig | None = None):
        super().__init__(spec, n_candidates, n_steps, seed)
        if spec.constraints.template.kind != "perovskite":
            raise SpecError(["constraints.template.kind: random search samples perovskite templates; use 'screen' "
                             "for free templates"])
        self.config = config or PerovskiteSearchConfig()
        self.config.validate()
        self.predictor = predictor.to(device).eval()
        self.device = device
        self.space = PerovskiteSpace.from_spec(spec, self.config.patterns)
        self.scorer = PerovskiteScorer(spec, predictor, self.space, self.config)
        self.archive = PerovskiteArchive(self.space)

    def steps(self) -> Iterator[StepReport]:
        rng = np.random.default_rng(self.seed)
        frac = self.space.ideal_frac.numpy()
        for step in range(self.n_steps):
            pattern, elements, lengths = self.space.random_crystals(self.n_candidates, rng)
            structures = [self.space.structure(e, length, frac) for e, length in zip(elements, lengths, strict=True)]
            mean, std = predict_structures(self.predictor, structures)
            hard = self.scorer.judge(pattern, elements, lengths, np.repeat(frac[None], len(pattern), axis=0),
                                     torch.as_tensor(mean), torch.as_tensor(std))
            self.archive.offer(hard, f"random sample {step + 1}")
            best = self.archive.best(self.n_candidates)
            metrics = {"loss/best": self.archive.best_loss(), "loss/mean": float(np.mean([e.loss for e in best])),
                       **self.scorer.metrics(hard), "archive/size": float(len(self.archive)),
                       "archive/successful": float(self.archive.n_passing())}
            values = {t: [float(entry.mean[i]) for entry in best] for i, t in enumerate(self.predictor.targets)}
            yield StepReport(step + 1, self.n_steps, metrics, values)

    def candidates(self) -> list[Proposal]:
        return self.archive.proposals(self.n_candidates, self.predictor.targets)

    def parameters(self) -> dict:
        return {**super().parameters(), "config": asdict(self.config), "caution": self.scorer.caution,
                "patterns": self.space.patterns}


class DatasetScreening(Optimizer):
    """Rank a dataset's structures by the spec's objective loss under the predictors."""

    name = "screen"
    chunk = 256

    def __init__(self, spec: DesignSpec, predictor, project: Project, dataset: str, n_candidates: int = 256,
                 seed: int = 0, device: str | torch.device = "cpu"):
        self.ids = project.ids(StructureQuery(dataset=dataset, valid_only=True))
        if not self.ids:
            raise SpecError([f"dataset '{dataset}' has no valid structures to screen"])
        super().__init__(spec, n_candidates, -(-len(self.ids) // self.chunk), seed)
        self.project, self.dataset = project, dataset
        self.predictor = predictor.to(device).eval()
        self.device = device
        self.objective = ObjectiveLoss(spec, predictor)
        self.pool = _BestPool(n_candidates)

    def steps(self) -> Iterator[StepReport]:
        for step in range(self.n_steps):
            chunk = self.ids[step * self.chunk:(step + 1) * self.chunk]
            rows = list(self.project.iter_structures(StructureQuery(ids=chunk)))
            structures = [s for _, s in rows]
            mean, std = predict_structures(self.predictor, structures)
            loss = self.objective.total(torch.as_tensor(mean), torch.as_tensor(std))
            self.pool.offer(loss.tolist(), structures, mean, std, [f"{self.dataset} structure {r['id']}" for r, _ in rows])
            metrics = self.pool.metrics()
            metrics.update(self.objective.criterion_rates(torch.as_tensor(np.array([m for _, _, m, _, _ in self.pool.items]))))
            yield StepReport(step + 1, self.n_steps, metrics, self.pool.values(self.predictor.targets))

    def candidates(self) -> list[Proposal]:
        return self.pool.proposals(self.predictor.targets)

    def parameters(self) -> dict:
        return {**super().parameters(), "dataset": self.dataset}
