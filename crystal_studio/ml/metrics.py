"""Regression metrics per target, in the targets' physical units."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, y_std: np.ndarray | None = None
                       ) -> dict[str, float | int | None]:
    """MAE, RMSE (units of the target), R² (None when the true values do not vary) and the count n,
    over the entries where ``y_true`` is finite.

    With an ensemble spread ``y_std`` (same units) that is not all zero, the calibration of the
    spread too: ``mean_std`` and ``within_1sigma`` / ``within_2sigma``, the fractions of errors no
    larger than 1σ / 2σ (0.683 / 0.954 for well-calibrated Gaussian errors; lower means the spread
    is overconfident).
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    known = np.isfinite(y_true)
    t, p = y_true[known], y_pred[known]
    if t.size == 0:
        return {"mae": None, "rmse": None, "r2": None, "n": 0}
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else None
    out = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "r2": r2, "n": int(t.size)}
    if y_std is not None:
        s = np.asarray(y_std, dtype=np.float64)[known]
        if np.any(s > 0):
            out.update(mean_std=float(np.mean(s)), within_1sigma=float(np.mean(np.abs(err) <= s)),
                       within_2sigma=float(np.mean(np.abs(err) <= 2 * s)))
    return out


def metrics_per_target(targets: list[str], y_true: np.ndarray, y_pred: np.ndarray,
                       y_std: np.ndarray | None = None) -> dict[str, dict]:
    """:func:`regression_metrics` for each column of (n, T) arrays, keyed by target name; targets
    without any known value are left out."""
    out = {}
    for k, name in enumerate(targets):
        m = regression_metrics(y_true[:, k], y_pred[:, k], None if y_std is None else y_std[:, k])
        if m["n"]:
            out[name] = m
    return out


ONE_SIGMA = 0.6827  # share of a Gaussian within one standard deviation of its mean


def spread_scale(y_true: np.ndarray, y_pred: np.ndarray, y_std: np.ndarray) -> np.ndarray:
    """(T,) factor per target that makes an ensemble's spread calibrated at 1σ on held-out data: the
    68.27th percentile of |error| / spread, so that after scaling 68.27 % of the errors lie within one
    (scaled) spread. 1 where a target has no known value or no spread (a single member)."""
    out = np.ones(y_true.shape[1])
    for k in range(y_true.shape[1]):
        ok = np.isfinite(y_true[:, k]) & (y_std[:, k] > 0)
        if ok.any():
            ratio = np.abs(y_pred[ok, k] - y_true[ok, k]) / y_std[ok, k]
            out[k] = max(float(np.quantile(ratio, ONE_SIGMA)), 1e-6)
    return out
