"""Calibrating the length model on held-out predictions: its median, upper quantile and mean (numpy).

Log answer lengths are not normal around the fit: they are skewed (the mean of the logs is not the median) and
their spread shrinks as answers get longer (short answers are the hardest to predict in relative terms). So the
median, the upper quantile and the mean are each corrected on the log scale, from predictions made on prompts
the fit never saw:

1. per task block and bin of the prompt's own effect (``mu`` minus the task offset: how much longer or shorter
   the prompt makes the answer), pooled over models: the median and the ``quantile`` of the held-out
   residuals, and the log-scale shift that makes the summed expected lengths *under each model's budget*
   equal the summed answers cut at that budget (real lengths are not log-normal: a model that mostly answers
   in two tokens and sometimes runs to its budget has a mean no log-normal through its median and p90 gives);
2. per model and block, what is left of each, shrunk toward 0 by ``SHRINK_ROWS`` pseudo-rows.

A prediction adds both to ``mu`` (:class:`~langchain_energyrouter.prompt.lengths.LengthModel`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["BINS", "QUANTILE", "SHRINK_ROWS", "calibrate"]

BINS = 5
"""Bins of the prompt's effect per task block."""
QUANTILE = 0.9
"""The upper quantile calibrated (what ``constraint_quantile`` uses by default)."""
SHRINK_ROWS = 50.0
"""Pseudo-rows pulling a model's own corrections toward none."""
MIN_ROWS = 5
"""Held-out rows a bin, or a model's block, needs for figures of its own."""


def _quantile(values: NDArray[Any], weights: NDArray[Any], q: float) -> float:
    """The ``q`` quantile of weighted values (each row's samples share one row's weight)."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][min(int(np.searchsorted(cumulative, q * cumulative[-1])), len(values) - 1)])


_Z = 1.2815515655446004  # the standard normal's 0.9 quantile
_SHIFT_RANGE = 12.0


def _capped_mean(loc: NDArray[Any], sigma: NDArray[Any], log_cap: NDArray[Any]) -> NDArray[Any]:
    """``E[min(Y, k)]`` for ``log Y ~ Normal(loc, sigma)``, ``log k = log_cap`` (inf: no cap), elementwise."""
    from math import erf, erfc, sqrt

    out = np.exp(loc + 0.5 * sigma * sigma)
    for i in np.flatnonzero(np.isfinite(log_cap)):
        s, lk = float(sigma[i]), float(log_cap[i])
        below = 0.5 * (1.0 + erf((lk - loc[i] - s * s) / (s * sqrt(2.0))))
        above = 0.5 * erfc((lk - loc[i]) / (s * sqrt(2.0)))
        out[i] = out[i] * below + math.exp(lk) * above
    return out


def _mean_shift(base: NDArray[Any], sigma: NDArray[Any], log_cap: NDArray[Any], target: float) -> float:
    """The shift ``h`` with ``sum(E[min(Y_i, k_i)]) = target`` for ``log Y_i ~ Normal(base_i + h - s_i^2/2, s_i)``
    (bisection: the sum grows with ``h``; clamped to +-``_SHIFT_RANGE``)."""
    lo, hi = -_SHIFT_RANGE, _SHIFT_RANGE
    offset = base - 0.5 * sigma * sigma
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if float(np.sum(_capped_mean(offset + mid, sigma, log_cap))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _cut_mean(samples: NDArray[Any], log_cap: float) -> float:
    """The mean of ``min(sample, budget) + 1`` (what a generation cut at the budget produces, +1)."""
    cut = samples if not math.isfinite(log_cap) else np.minimum(samples, math.expm1(log_cap))
    return float(np.mean(cut)) + 1.0


def _figures(
    resid: NDArray[Any], weights: NDArray[Any], targets: NDArray[Any], mu: NDArray[Any], log_cap: NDArray[Any]
) -> list[float]:
    """[median, quantile, mean shift] of residuals (one per sample, weighted so each row counts once); the shift
    makes the rows' summed expected lengths under their budgets equal their summed ``targets``."""
    median, upper = _quantile(resid, weights, 0.5), _quantile(resid, weights, QUANTILE)
    sigma = np.full(len(mu), max((upper - median) / _Z, 0.05))
    return [median, upper, _mean_shift(mu, sigma, log_cap, float(np.sum(targets)))]


def calibrate(
    mu: NDArray[Any],
    effect: NDArray[Any],
    samples: Sequence[NDArray[Any]],
    row_model: NDArray[Any],
    row_block: NDArray[Any],
    n_models: int,
    n_blocks: int,
    log_caps: NDArray[Any] | None = None,
) -> tuple[list[list[float]], list[list[list[float]]], NDArray[np.float64]]:
    """Bin edges and pooled corrections per block, and each model's own per block.

    Args:
        mu: held-out ``mu`` of each usable row (uncensored, predicted).
        effect: the prompt's part of it (``mu`` minus the row's offset).
        samples: each row's sampled lengths.
        row_model: each row's model index.
        row_block: each row's block (0: no task, then the tasks).
        n_models: models.
        n_blocks: blocks.
        log_caps: each row's ``log1p(budget)`` (its model's generation budget; inf or None: uncapped).

    Returns:
        ``edges[block]`` (``BINS - 1`` values, or none), ``by_bin[block][bin]`` = [median, quantile, log mean]
        shifts, and ``(n_models, n_blocks, 3)`` model corrections.
    """
    resid_rows = [np.log1p(s) - m for s, m in zip(samples, mu, strict=True)]
    weight_rows = [np.full(len(s), 1.0 / len(s)) for s in samples]
    caps = np.full(len(mu), math.inf) if log_caps is None else np.asarray(log_caps, dtype=np.float64)
    targets = np.array([_cut_mean(s, float(c)) for s, c in zip(samples, caps, strict=True)])
    edges: list[list[float]] = []
    by_bin: list[list[list[float]]] = []
    models = np.zeros((n_models, n_blocks, 3))
    everything = np.arange(len(mu))
    for block in range(n_blocks):
        rows = np.flatnonzero(row_block == block) if (row_block == block).sum() >= MIN_ROWS else everything
        if len(rows) < MIN_ROWS:
            edges.append([])
            by_bin.append([[0.0, _Z * 0.5, 0.125]])
            continue
        pooled = _group(rows, resid_rows, weight_rows, targets, mu, caps)
        cuts = (
            np.quantile(effect[rows], np.linspace(0.0, 1.0, BINS + 1)[1:-1]).tolist()
            if len(rows) >= BINS * MIN_ROWS
            else []
        )
        bins = np.searchsorted(cuts, effect[rows], side="right")
        figures = []
        for k in range(len(cuts) + 1):
            mine = rows[bins == k]
            figures.append(
                _group(mine, resid_rows, weight_rows, targets, mu, caps) if len(mine) >= MIN_ROWS else pooled
            )
        edges.append([float(c) for c in cuts])
        by_bin.append(figures)
        row_shift = np.array(figures)[bins]  # (rows, 3)
        for m in range(n_models):
            own = row_model[rows] == m
            n = int(own.sum())
            if n < MIN_ROWS:
                continue
            idx = rows[own]
            shift = row_shift[own]
            weights = np.concatenate([weight_rows[i] for i in idx])
            resid = np.concatenate([resid_rows[i] - shift[j, 0] for j, i in enumerate(idx)])
            upper = np.concatenate([resid_rows[i] - shift[j, 1] for j, i in enumerate(idx)])
            weight = n / (n + SHRINK_ROWS)
            own_median = weight * _quantile(resid, weights, 0.5)
            own_upper = weight * _quantile(upper, weights, QUANTILE)
            sigma = np.maximum((shift[:, 1] + own_upper - shift[:, 0] - own_median) / _Z, 0.05)
            base = mu[idx] + shift[:, 2]
            own_mean = _mean_shift(base, sigma, caps[idx], float(np.sum(targets[idx])))
            models[m, block] = [own_median, own_upper, weight * own_mean]
    return edges, by_bin, models


def _group(
    rows: NDArray[Any],
    resid_rows: Sequence[NDArray[Any]],
    weight_rows: Sequence[NDArray[Any]],
    targets: NDArray[Any],
    mu: NDArray[Any],
    caps: NDArray[Any],
) -> list[float]:
    resid = np.concatenate([resid_rows[i] for i in rows])
    weights = np.concatenate([weight_rows[i] for i in rows])
    return _figures(resid, weights, targets[rows], mu[rows], caps[rows])
