"""The optimizer interface every design method implements.

An optimizer is configured from a :class:`~crystal_studio.design.spec.DesignSpec` and its own
options, then driven step by step by the optimization job: each step it proposes a batch of crystals
(however it represents them internally: soft crystals, latent vectors, samples) and reports its own
metrics; at the end it returns its final candidates as pymatgen structures with the properties it
believes they have. Evaluation, storage and plotting are the job's business, so gradient methods,
latent-space methods and samplers all plug into the same job and panels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from pymatgen.core import Structure

from crystal_studio.design.spec import DesignSpec


@dataclass
class StepReport:
    """What one optimizer step did: ``metrics`` are plotted and stored per step (e.g. loss/best,
    loss/mean, loss/<term>, rate/<criterion>)."""

    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)
    # (property name -> values) of the current proposals, for the live scatter; optional.
    proposals: dict[str, list[float]] = field(default_factory=dict)
    # Latent codes of this step's queries (latent-space methods), for the live latent map; optional.
    latents: list[list[float]] = field(default_factory=list)


@dataclass
class Proposal:
    """A final candidate as the optimizer sees it."""

    structure: Structure
    properties: dict[str, float]  # the optimizer's own predictions, physical units
    property_std: dict[str, float] = field(default_factory=dict)
    origin: str = ""  # e.g. "random init 17", "dataset structure 42"
    site_charges: list[int] | None = None  # designed oxidation state of every site, when the method knows it


class Optimizer(ABC):
    """Base class of design methods; see the module docstring."""

    name: str = "optimizer"
    stop_reason: str | None = None
    """Set when the optimizer ended early on its own (e.g. the model's predictions became NaN/inf): what
    happened and what it kept; the job puts it in the run's message and summary."""

    def __init__(self, spec: DesignSpec, n_candidates: int, n_steps: int, seed: int = 0):
        self.spec = spec
        self.n_candidates = n_candidates
        self.n_steps = n_steps
        self.seed = seed

    @abstractmethod
    def steps(self) -> Iterator[StepReport]:
        """Run the optimization, yielding after every step (the job checks cancellation there)."""

    @abstractmethod
    def candidates(self) -> list[Proposal]:
        """The final candidates, best first (call after :meth:`steps` is exhausted)."""

    def parameters(self) -> dict:
        """Everything needed to repeat the run (stored with it)."""
        return {"method": self.name, "n_candidates": self.n_candidates, "n_steps": self.n_steps, "seed": self.seed}
