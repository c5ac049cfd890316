"""Calibrating the length model on held-out predictions: its median, upper quantile and mean (numpy).

Log answer lengths are not normal around the fit: they are skewed (the mean of the logs is not the median) and
their spread shrinks as answers get longer (short answers are the hardest to predict in relative terms). So the
median, the upper quantile and the mean are each corrected on the log scale, from predictions made on prompts
the fit never saw:

1. per task block and bin of the prompt's own effect (``mu`` minus the task offset: how much longer or shorter
   the prompt makes the answer), pooled over models: the median, the ``quantile`` and the log of summed
   lengths over summed ``exp(mu)`` of the held-out residuals;
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


def _figures(resid: NDArray[Any], weights: NDArray[Any], mean_tokens: NDArray[Any], mu: NDArray[Any]) -> list[float]:
    """[median, quantile, log mean ratio] of residuals (one per sample, weighted so each row counts once), the
    ratio of the rows' mean lengths (+1) to their ``exp(mu)``."""
    return [
        _quantile(resid, weights, 0.5),
        _quantile(resid, weights, QUANTILE),
        math.log(float(np.sum(mean_tokens + 1.0)) / float(np.sum(np.exp(mu)))),
    ]


def calibrate(
    mu: NDArray[Any],
    effect: NDArray[Any],
    samples: Sequence[NDArray[Any]],
    row_model: NDArray[Any],
    row_block: NDArray[Any],
    n_models: int,
    n_blocks: int,
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

    Returns:
        ``edges[block]`` (``BINS - 1`` values, or none), ``by_bin[block][bin]`` = [median, quantile, log mean]
        shifts, and ``(n_models, n_blocks, 3)`` model corrections.
    """
    resid_rows = [np.log1p(s) - m for s, m in zip(samples, mu, strict=True)]
    weight_rows = [np.full(len(s), 1.0 / len(s)) for s in samples]
    mean_tokens = np.array([float(np.mean(s)) for s in samples])
    edges: list[list[float]] = []
    by_bin: list[list[list[float]]] = []
    models = np.zeros((n_models, n_blocks, 3))
    everything = np.arange(len(mu))
    for block in range(n_blocks):
        rows = np.flatnonzero(row_block == block) if (row_block == block).sum() >= MIN_ROWS else everything
        if len(rows) < MIN_ROWS:
            edges.append([])
            by_bin.append([[0.0, 1.2815515655446004 * 0.5, 0.125]])
            continue
        pooled = _group(rows, resid_rows, weight_rows, mean_tokens, mu)
        cuts = (
            np.quantile(effect[rows], np.linspace(0.0, 1.0, BINS + 1)[1:-1]).tolist()
            if len(rows) >= BINS * MIN_ROWS
            else []
        )
        bins = np.searchsorted(cuts, effect[rows], side="right")
        figures = []
        for k in range(len(cuts) + 1):
            mine = rows[bins == k]
            figures.append(_group(mine, resid_rows, weight_rows, mean_tokens, mu) if len(mine) >= MIN_ROWS else pooled)
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
            ratio = math.log(float(np.sum(mean_tokens[idx] + 1.0)) / float(np.sum(np.exp(mu[idx] + shift[:, 2]))))
            weight = n / (n + SHRINK_ROWS)
            models[m, block] = weight * np.array(
                [_quantile(resid, weights, 0.5), _quantile(upper, weights, QUANTILE), ratio]
            )
    return edges, by_bin, models


def _group(
    rows: NDArray[Any],
    resid_rows: Sequence[NDArray[Any]],
    weight_rows: Sequence[NDArray[Any]],
    mean_tokens: NDArray[Any],
    mu: NDArray[Any],
) -> list[float]:
    resid = np.concatenate([resid_rows[i] for i in rows])
    weights = np.concatenate([weight_rows[i] for i in rows])
    return _figures(resid, weights, mean_tokens[rows], mu[rows])
