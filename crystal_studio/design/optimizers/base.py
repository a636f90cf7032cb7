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


def apply_settings(config, settings: dict[str, object] | None, method: str):
    """A copy of the dataclass ``config`` with ``settings`` (name → value, values may be strings as typed
    on a command line: '0.5', 'true', 'paper', '0.25,0.5', 'none') applied and type-checked.

    Raises SpecError naming the method, the setting and the reason, listing the valid names for an
    unknown one.
    """
    from dataclasses import fields, replace

    from crystal_studio.design.spec import SpecError

    if not settings:
        return config
    known = {f.name: f for f in fields(config)}
    changes, problems = {}, []
    for name, raw in settings.items():
        if name not in known:
            problems.append(f"{method} has no setting '{name}' (settings: {', '.join(known)})")
            continue
        try:
            changes[name] = _coerce(raw, str(known[name].type))
        except ValueError as exc:
            problems.append(f"{method} setting '{name}': {exc}")
    if problems:
        raise SpecError(problems, "settings")
    result = replace(config, **changes)
    check = getattr(result, "validate", None)
    if check is not None:
        check()
    return result


def _coerce(raw, annotation: str):
    """``raw`` converted to the type a config field is annotated with (str annotations, PEP 563)."""
    optional = "None" in annotation
    if isinstance(raw, str):
        text = raw.strip()
        if optional and text.lower() in ("none", "null", "auto", ""):
            return None
        if annotation.startswith("tuple"):
            return tuple(float(v) for v in text.split(",") if v.strip())
        if annotation.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got '{raw}'")
        if annotation.startswith("int"):
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"expected an integer, got '{raw}'") from None
        if annotation.startswith("float"):
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"expected a number, got '{raw}'") from None
        return text
    if raw is None:
        if optional:
            return None
        raise ValueError("may not be empty")
    if annotation.startswith("tuple"):
        return tuple(float(v) for v in raw)
    if annotation.startswith("bool") and not isinstance(raw, bool):
        raise ValueError(f"expected true or false, got {raw!r}")
    if annotation.startswith(("int", "float")) and (isinstance(raw, bool) or not isinstance(raw, int | float)):
        raise ValueError(f"expected a number, got {raw!r}")
    if annotation.startswith("int"):
        if float(raw) != int(raw):
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(raw)
    if annotation.startswith("float"):
        return float(raw)
    return raw
