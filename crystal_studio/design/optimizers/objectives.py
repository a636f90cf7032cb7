"""Differentiable losses for a spec's objectives, and the predictor set that feeds them.

Each objective becomes a per-candidate hinge in units of the predictor's target standard deviation
σ (so eV and GPa terms are comparable): ``target`` max(0, |p − v| − m_t·tol), ``below``
max(0, p − v + m_b·σ), ``above`` max(0, v − p + m_b·σ), ``minimize`` p/σ, ``maximize`` −p/σ, with
the margins m_t (default 0.2: aim at the inner fifth of the window) and m_b (default 0.05σ past a
bound, a guard against model error). With ``linear_bounds`` a below/above objective is instead the
linear term ±p/σ (the SMOACS paper's "coefficient × formation energy"). With caution k the
predictions are pessimistic: mean + k·std for below/minimize, mean − k·std for above/maximize, and
|mean − v| + k·std for targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn

from crystal_studio.design.optimizers.settings import BOUND_MARGIN, TARGET_MARGIN, TOLERANCE_BAND
from crystal_studio.design.spec import DesignSpec, SpecError
from crystal_studio.ml.predictor import CrystalPredictor


class PredictorSet(nn.Module):
    """Several predictors used as one: their targets concatenated (the first model providing a target
    wins)."""

    def __init__(self, predictors: Sequence[CrystalPredictor]):
        super().__init__()
        self.models = nn.ModuleList(predictors)
        self.targets: list[str] = []
        self._columns: list[tuple[int, int]] = []  # (model, column) of each target
        for m, predictor in enumerate(predictors):
            for col, target in enumerate(predictor.targets):
                if target not in self.targets:
                    self.targets.append(target)
                    self._columns.append((m, col))

    @property
    def target_std(self) -> Tensor:
        return torch.stack([self.models[m].target_std[c] for m, c in self._columns])

    @property
    def target_mean(self) -> Tensor:
        return torch.stack([self.models[m].target_mean[c] for m, c in self._columns])

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff (Å) of the first model; others rebuild edges when theirs differs."""
        return self.models[0].cutoff

    def forward(self, batch) -> tuple[Tensor, Tensor]:
        outputs = []
        for model in self.models:
            same_graph = model.cutoff == self.cutoff
            outputs.append(model(batch if same_graph else replace(batch, center=None, neighbor=None, shift=None)))
        mean = torch.stack([outputs[m][0][:, c] for m, c in self._columns], dim=1)
        std = torch.stack([outputs[m][1][:, c] for m, c in self._columns], dim=1)
        return mean, std


def ensemble_size(predictor) -> int:
    """Members of the largest ensemble in a predictor or predictor set (1 for a single model)."""
    models = getattr(predictor, "models", None)
    if models is not None:
        return max(ensemble_size(m) for m in models)
    return len(getattr(predictor, "members", [None]))


def tolerance_factor_penalty(t, window: tuple[float, float], band: float = TOLERANCE_BAND):
    """max(0, |t − c| − band) with c the centre of ``window`` (dimensionless, per candidate): aims t at
    the window's centre (0.9 for [0.8, 1.0]) rather than its edges. Works on tensors and arrays."""
    centre = 0.5 * (window[0] + window[1])
    deviation = abs(t - centre) - band
    return deviation.clamp_min(0.0) if isinstance(deviation, Tensor) else np.maximum(deviation, 0.0)


class ObjectiveLoss:
    """Turns predictions (B, T) into per-objective loss terms (B,) and criterion rates."""

    def __init__(self, spec: DesignSpec, predictor, caution: float = 0.0, target_margin: float = TARGET_MARGIN,
                 bound_margin: float = BOUND_MARGIN, linear_bounds: bool = False):
        self.spec = spec
        self.caution = caution
        self.target_margin, self.bound_margin, self.linear_bounds = target_margin, bound_margin, linear_bounds
        missing = [o.property for o in spec.objectives if o.property not in predictor.targets]
        if missing:
            raise SpecError([f"the selected model(s) predict {', '.join(predictor.targets)}, but the spec needs "
                             f"{', '.join(sorted(set(missing)))}"])
        self.columns = [predictor.targets.index(o.property) for o in spec.objectives]
        self.scales = predictor.target_std.detach().clone()

    def terms(self, mean: Tensor, std: Tensor) -> dict[str, Tensor]:
        k = self.caution
        out: dict[str, Tensor] = {}
        for objective, col in zip(self.spec.objectives, self.columns, strict=True):
            p, s = mean[:, col], std[:, col]
            scale = self.scales[col].to(mean.device).clamp_min(1e-6)
            if objective.kind == "target":
                dev = (p - objective.value).abs() + k * s
                term = torch.relu(dev - self.target_margin * objective.tolerance) / scale
            elif objective.kind == "below" and self.linear_bounds:
                term = (p + k * s - objective.value) / scale
            elif objective.kind == "below":
                term = torch.relu(p + k * s - objective.value + self.bound_margin * scale) / scale
            elif objective.kind == "above" and self.linear_bounds:
                term = (objective.value - (p - k * s)) / scale
            elif objective.kind == "above":
                term = torch.relu(objective.value - (p - k * s) + self.bound_margin * scale) / scale
            elif objective.kind == "minimize":
                term = (p + k * s) / scale
            else:
                term = -(p - k * s) / scale
            out[objective.criterion_name] = objective.weight * term
        return out

    def total(self, mean: Tensor, std: Tensor) -> Tensor:
        return torch.stack(list(self.terms(mean, std).values())).sum(dim=0)

    def criterion_masks(self, mean: Tensor) -> dict[str, Tensor]:
        """(B,) bool per objective criterion: whether the predicted means meet it."""
        return {objective.criterion_name: torch.tensor([objective.passes(v) for v in mean[:, col].tolist()],
                                                       dtype=torch.bool, device=mean.device)
                for objective, col in zip(self.spec.objectives, self.columns, strict=True) if objective.has_criterion}

    def passes(self, mean: Tensor) -> Tensor:
        """(B,) bool: every objective's criterion holds for the predicted means."""
        ok = torch.ones(mean.shape[0], dtype=torch.bool, device=mean.device)
        for mask in self.criterion_masks(mean).values():
            ok &= mask
        return ok

    def criterion_rates(self, mean: Tensor) -> dict[str, float]:
        """Fraction of candidates meeting each objective's criterion, keyed 'rate/<criterion>'."""
        return {f"rate/{name}": float(mask.float().mean()) for name, mask in self.criterion_masks(mean.detach()).items()}
