"""Regression metrics per target, in the targets' physical units."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int | None]:
    """MAE, RMSE (units of the target), R² (None when the true values do not vary) and the count n,
    over the entries where ``y_true`` is finite."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    known = np.isfinite(y_true)
    t, p = y_true[known], y_pred[known]
    if t.size == 0:
        return {"mae": None, "rmse": None, "r2": None, "n": 0}
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else None
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "r2": r2, "n": int(t.size)}


def metrics_per_target(targets: list[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict]:
    """:func:`regression_metrics` for each column of (n, T) arrays, keyed by target name; targets
    without any known value are left out."""
    out = {}
    for k, name in enumerate(targets):
        m = regression_metrics(y_true[:, k], y_pred[:, k])
        if m["n"]:
            out[name] = m
    return out
