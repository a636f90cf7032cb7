"""Baselines every design run is compared with.

- :class:`RandomSearch`: the same template and constraints, random charge-neutral crystals (elements
  uniform within each site's allowed set, lattice from Shannon radii), the same prediction budget as
  the optimizer (candidates × steps), scored with the same loss; keeps the best unique
  ``n_candidates`` seen.
- :class:`DatasetScreening`: the best existing structures of a dataset under the same predictors,
  predicted chunk by chunk as tasks of an executor (:mod:`crystal_studio.core.tasks`: here, or on
  a Ray cluster), the driver alone reading the store.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import numpy as np
import torch
from pymatgen.core import Structure

from crystal_studio.core.tasks import (
    Executor,
    LocalExecutor,
    Shared,
    TaskContext,
    TaskReport,
    TasksLost,
    task_resources,
)
from crystal_studio.design.optimizers.base import Optimizer, Proposal, StepReport
from crystal_studio.design.optimizers.objectives import ObjectiveLoss
from crystal_studio.design.optimizers.perovskite import (
    PerovskiteArchive,
    PerovskiteScorer,
    PerovskiteSpace,
)
from crystal_studio.design.optimizers.settings import PerovskiteSearchConfig
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


class _StoredChunks(Sequence):
    """The structures of ``ids`` in chunks of ``size``, read from the store when a task is submitted:
    item k is chunk k's structures (as dicts for remote tasks). :meth:`take` hands the driver the rows
    and structures of a submitted chunk once, so at most the chunks in flight are held in memory."""

    def __init__(self, project: Project, ids: list[int], size: int, as_dicts: bool):
        self.project, self.ids, self.size, self.as_dicts = project, ids, size, as_dicts
        self._loaded: dict[int, tuple[list[dict], list[Structure]]] = {}

    def __len__(self) -> int:
        return -(-len(self.ids) // self.size)

    def __getitem__(self, k: int):
        if not 0 <= k < len(self):
            raise IndexError(k)
        rows = list(self.project.iter_structures(StructureQuery(ids=self.ids[k * self.size:(k + 1) * self.size])))
        structures = [s for _, s in rows]
        self._loaded[k] = ([r for r, _ in rows], structures)
        return [s.as_dict() for s in structures] if self.as_dicts else structures

    def take(self, k: int) -> tuple[list[dict], list[Structure]]:
        return self._loaded.pop(k)


def screen_task(shared: Shared, item: list, context: TaskContext) -> tuple[np.ndarray, np.ndarray]:
    """Predict one chunk of structures (Structures, or dicts on a remote worker) with the shared
    predictor: (mean, spread), one row per structure."""
    payload = shared.get()
    predictor = shared.derived("screen-predictor", lambda: payload["predictor"].to(payload["device"]).eval())
    structures = [Structure.from_dict(s) if isinstance(s, dict) else s for s in item]
    return predict_structures(predictor, structures)


class DatasetScreening(Optimizer):
    """Rank a dataset's structures by the spec's objective loss under the predictors. Each chunk of
    :attr:`chunk` structures is one task of ``executor`` (default: here); chunks are ranked in dataset
    order whatever order they finish in, so every executor gives the same steps and candidates."""

    name = "screen"
    chunk = 256

    def __init__(self, spec: DesignSpec, predictor, project: Project, dataset: str, n_candidates: int = 256,
                 seed: int = 0, device: str | torch.device = "cpu", executor: Executor | None = None):
        self.ids = project.ids(StructureQuery(dataset=dataset, valid_only=True))
        if not self.ids:
            raise SpecError([f"dataset '{dataset}' has no valid structures to screen"])
        super().__init__(spec, n_candidates, -(-len(self.ids) // self.chunk), seed)
        self.project, self.dataset = project, dataset
        self.predictor = predictor.to(device).eval()
        self.device = device
        self.executor = executor or LocalExecutor()
        self.report = TaskReport(self.n_steps, executor=self.executor.name)
        self.objective = ObjectiveLoss(spec, predictor)
        self.pool = _BestPool(n_candidates)

    def steps(self) -> Iterator[StepReport]:
        remote = self.executor.remote
        chunks = _StoredChunks(self.project, self.ids, self.chunk, as_dicts=remote)
        predictor = copy.deepcopy(self.predictor).cpu() if remote else self.predictor
        shared = self.executor.share({"predictor": predictor, "device": str(self.device)})
        results = self.executor.iterate(screen_task, chunks, shared, task_resources(self.executor, str(self.device)),
                                        report=self.report)
        finished: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        step = 0
        try:
            for index, prediction in results:
                finished[index] = prediction
                while step in finished:
                    yield self._rank(step, chunks.take(step), *finished.pop(step))
                    step += 1
        finally:
            results.close()
            shared.release()
        if self.report.failed:  # a ranking without some chunks would silently miss their structures
            lost = ", ".join(f"{k * self.chunk + 1}–{min((k + 1) * self.chunk, len(self.ids))}"
                             for k in sorted(self.report.failed))
            raise TasksLost(f"screening lost the predictions of structures {lost} of dataset '{self.dataset}' "
                            f"with their workers ({len(self.report.failed)} of {self.n_steps} chunks); the run "
                            "is not ranked on a part of the dataset: run it again", self.report)

    def _rank(self, step: int, chunk: tuple[list[dict], list[Structure]], mean: np.ndarray,
              std: np.ndarray) -> StepReport:
        """Offer chunk ``step`` (rows, structures) with its predictions to the pool; the step's report."""
        rows, structures = chunk
        loss = self.objective.total(torch.tensor(mean), torch.tensor(std))  # copies: a Ray result is read-only
        self.pool.offer(loss.tolist(), structures, mean, std, [f"{self.dataset} structure {r['id']}" for r in rows])
        metrics = self.pool.metrics()
        metrics.update(self.objective.criterion_rates(torch.as_tensor(np.array([m for _, _, m, _, _ in self.pool.items]))))
        return StepReport(step + 1, self.n_steps, metrics, self.pool.values(self.predictor.targets))

    def candidates(self) -> list[Proposal]:
        return self.pool.proposals(self.predictor.targets)

    def parameters(self) -> dict:
        return {**super().parameters(), "dataset": self.dataset}
