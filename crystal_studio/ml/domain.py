"""Is a crystal inside a predictor's training domain? Flags from the ensemble spread, the elements and
the cell.

An ensemble's members agree on crystals like those they were trained on and disagree away from them.
At the end of training (ml/training.py) the spread of every held-out crystal (validation and test
splits) is measured as a **spread score**: the calibrated ensemble spread of each target divided by
that target's standard deviation over the training split, the largest over the targets
(dimensionless; 0.1 means the members disagree by a tenth of the property's natural range). The
distribution of these scores (quantiles, the 99th percentile as the threshold, the number of
crystals), the elements of the training crystals and their range of volume per atom are stored with
the model as ``hyperparameters["training"]["domain"]``.

A prediction is flagged **out of domain** when its spread score exceeds that threshold (the ratio
score / threshold is reported: above 1 is flagged), when the crystal has an element no training
crystal had, or when its volume per atom lies more than :data:`VOLUME_MARGIN` times outside the
training range (a cell unlike any trained on, which the spread alone does not always reveal: members
can agree on a wrong answer far away). About 1 % of crystals like the held-out ones are flagged by the
spread by construction; a flag says "the model is guessing here: check it by other means
(relaxation, a judge, DFT)".

Models without the record (trained before it existed, single-model "ensembles" whose spread is 0,
kinds that do not record it) give no flag (``None``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DOMAIN_QUANTILE = 0.99
"""Quantile of the validation spread scores above which a prediction is flagged."""
QUANTILES = (0.5, 0.9, 0.95, 0.99)
VOLUME_MARGIN = 1.25
"""A crystal whose volume per atom is more than this factor outside the training range is flagged."""


def spread_scores(std: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """(n,) spread score of (n, T) spreads ``std`` in physical units over the per-target training
    standard deviations ``scale``: the largest std / scale over the targets with a finite spread;
    NaN where no target has one (and +inf where a spread itself is not finite)."""
    std = np.asarray(std, dtype=np.float64).reshape(len(std), -1)
    if std.shape[0] == 0:
        return np.zeros(0)
    ratio = std / np.maximum(np.asarray(scale, dtype=np.float64), 1e-12)
    ratio = np.where(np.isnan(ratio), -np.inf, ratio)
    out = ratio.max(axis=1)
    return np.where(out == -np.inf, np.nan, out)


def domain_reference(std: np.ndarray, scale: Sequence[float], elements: Iterable[str],
                     volumes_per_atom: Sequence[float] = (), quantile: float = DOMAIN_QUANTILE) -> dict | None:
    """The record stored with a model (see the module docstring) from the calibrated spreads ``std``
    (n, T) of the held-out (validation and test) crystals, the targets' training standard deviations
    ``scale``, the training elements and the training crystals' volumes per atom (Å³); None when there
    is no spread to learn from (a single member, no held-out crystal)."""
    scores = spread_scores(std, scale)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0 or float(scores.max()) <= 0:
        return None
    reference = {"score": "largest over the targets of the ensemble spread / the target's training std",
                 "quantile": quantile, "threshold": float(np.quantile(scores, quantile)),
                 "quantiles": {f"{q:g}": float(np.quantile(scores, q)) for q in QUANTILES},
                 "max": float(scores.max()), "n": int(scores.size), "scale": [float(s) for s in scale],
                 "elements": sorted(set(elements))}
    volumes = [v for v in volumes_per_atom if np.isfinite(v) and v > 0]
    if volumes:
        reference["volume_per_atom"] = [float(min(volumes)), float(max(volumes))]
    return reference


def reference_of(hyperparameters: dict | None) -> dict | None:
    """The domain record stored in a model's hyperparameters (None when it has none)."""
    training = (hyperparameters or {}).get("training") or {}
    domain = training.get("domain") if isinstance(training, dict) else None
    return domain if isinstance(domain, dict) and domain.get("threshold", 0) > 0 else None


def domain_flags(reference: dict | None, std: np.ndarray, elements: Sequence[Iterable[str]],
                 volumes_per_atom: Sequence[float | None] | None = None) -> list[dict | None]:
    """Per crystal: ``{"out_of_domain": bool, "spread_ratio": score / threshold, "reason": str}`` (reason
    empty when in domain), from its (n, T) spreads ``std``, its elements and (optional) its volume per
    atom (Å³); ``None`` each without a reference."""
    if reference is None:
        return [None] * len(elements)
    scores = spread_scores(std, reference["scale"])
    threshold = float(reference["threshold"])
    seen = set(reference.get("elements") or [])
    span = reference.get("volume_per_atom")
    volumes = list(volumes_per_atom) if volumes_per_atom is not None else [None] * len(elements)
    out = []
    for score, els, volume in zip(scores, elements, volumes, strict=True):
        ratio = float(score / threshold) if np.isfinite(score) else (float("inf") if score == np.inf else None)
        reasons = []
        unseen = sorted(set(els) - seen) if seen else []
        if unseen:
            reasons.append(f"element(s) {', '.join(unseen)} not in the training data")
        if span and volume is not None and not span[0] / VOLUME_MARGIN <= volume <= span[1] * VOLUME_MARGIN:
            reasons.append(f"volume {volume:.3g} Å³/atom outside the training range {span[0]:.3g}–{span[1]:.3g}")
        if ratio is not None and ratio > 1:
            reasons.append(f"ensemble spread {ratio:.3g}× the {reference['quantile']:.0%} quantile of validation")
        out.append({"out_of_domain": bool(reasons), "spread_ratio": ratio, "reason": "; ".join(reasons)})
    return out


def structure_elements(structures: Sequence) -> list[list[str]]:
    """The element symbols of each (ordered) pymatgen structure."""
    return [sorted({site.specie.symbol for site in s}) for s in structures]


def volumes_per_atom(structures: Sequence) -> list[float]:
    """The volume per atom (Å³) of each pymatgen structure."""
    return [float(s.volume) / max(len(s), 1) for s in structures]


def candidate_flags(models: Sequence[tuple[dict | None, Sequence[str]]], property_std: Sequence[dict],
                    elements: Sequence[Iterable[str]], volumes_per_atom: Sequence[float] | None = None
                    ) -> list[dict | None]:
    """Out-of-domain flags of candidates predicted by several models at once: ``models`` holds each
    model's (hyperparameters, targets), ``property_std`` each candidate's spreads by property name. A
    candidate is out of domain when it is for any model (ratio: the largest; reasons joined); None
    each when no model recorded a domain."""
    per_model = []
    for hyperparameters, targets in models:
        reference = reference_of(hyperparameters)
        if reference is None:
            continue
        std = np.array([[float(doc.get(t, np.nan)) for t in targets] for doc in property_std]).reshape(
            len(property_std), len(targets))
        per_model.append(domain_flags(reference, std, elements, volumes_per_atom))
    if not per_model:
        return [None] * len(property_std)
    out = []
    for flags in zip(*per_model, strict=True):
        ratios = [f["spread_ratio"] for f in flags if f["spread_ratio"] is not None]
        out.append({"out_of_domain": any(f["out_of_domain"] for f in flags),
                    "spread_ratio": max(ratios) if ratios else None,
                    "reason": "; ".join(dict.fromkeys(f["reason"] for f in flags if f["reason"]))})
    return out
