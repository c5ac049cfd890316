"""Cross-validation for the calibration fits: which rows are held out, and the held-out bias.

Every fit (:mod:`~langchain_energyrouter.calibration.fitting` for the cost models,
:mod:`~langchain_energyrouter.calibration.lengthfit` for the output length) is scored on
held-out rows by ``bias`` = summed predictions / summed measurements (:func:`summed_ratio`)
and chosen among candidates whose bias is within :data:`BIAS_TOLERANCE` of 1.

**Cross-validation** never puts near-copies of a held-out row into the training folds:

* calibration grids (a ``design_cell`` column): grouped folds, every repetition of a
  cell (``grid:in=64,out=16,rep=2`` -> ``grid:in=64,out=16``) on one side;
* traces (no design cells; rows in recorded order): blocked folds, ``k`` contiguous
  stretches of time, so a drifting trace is judged on a stretch the fit has not seen
  rather than on neighbours of its training rows. Blocked rather than forward-chaining:
  the profile is a static prior fitted on the whole run, and forward-chaining bias is
  the trace's drift (the same for every estimator, and the online learner's job), not a
  property of the estimator. ``benchmarks/bench_fit_traces.py`` reports forward (time
  split) figures too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from langchain_energyrouter.errors import CalibrationError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_FOLDS = 5
BIAS_TOLERANCE = 0.02
"""A candidate is unbiased enough when its held-out bias is within this of 1."""
CvScheme = Literal["auto", "grouped", "blocked", "forward", "random"]
"""How held-out rows are chosen: by design cell, contiguous time blocks, forward chaining, or shuffled."""
CV_TEXT = {
    "grouped": "grouped by design cell (repetitions of a cell held out together)",
    "blocked": "blocked: contiguous stretches of rows in recorded (time) order",
    "forward": "forward-chaining in recorded (time) order: each block predicted from the rows before it",
    "random": "shuffled k-fold",
}
"""How each scheme is described in a fit's note."""


def cell_groups(design_cells: Sequence[str]) -> list[str]:
    """Group key of each design cell: the cell without its repetition (``,rep=N``)."""
    keys = []
    for cell in design_cells:
        parts = [p for p in str(cell).split(",") if not p.startswith("rep=")]
        keys.append(",".join(parts))
    return keys


def make_folds(
    n: int, k: int, scheme: str, *, groups: Sequence[str] | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index arrays for each fold.

    Args:
        n: rows.
        k: folds (blocks for ``blocked``; ``forward`` cuts ``k + 1`` blocks and tests the last ``k``).
        scheme: ``grouped``, ``blocked``, ``forward`` or ``random`` (see :data:`CvScheme`).
        groups: one key per row, for ``grouped``: rows of one key are never split.
        seed: shuffles groups (``grouped``) or rows (``random``); time order is never shuffled.
    """
    import numpy as np

    index = np.arange(n)
    if scheme == "grouped":
        if groups is None or len(groups) != n:
            raise CalibrationError("Grouped cross-validation needs one design-cell key per row.")
        keys = sorted(set(groups))
        if len(keys) < 2:
            raise CalibrationError(f"Grouped cross-validation needs at least 2 design cells, got {keys}.")
        k = min(k, len(keys))
        rng = np.random.default_rng(seed)
        shuffled = [keys[i] for i in rng.permutation(len(keys))]
        sizes = {key: 0 for key in keys}
        for g in groups:
            sizes[g] += 1
        # Largest groups first, each to the currently smallest fold (balanced sizes, like GroupKFold).
        fold_of: dict[str, int] = {}
        load = [0] * k
        for key in sorted(shuffled, key=lambda key: -sizes[key]):
            target = min(range(k), key=lambda i: load[i])
            fold_of[key] = target
            load[target] += sizes[key]
        labels = np.array([fold_of[g] for g in groups])
        return [(index[labels != i], index[labels == i]) for i in range(k)]
    if scheme == "blocked":
        blocks = np.array_split(index, k)
        return [(np.setdiff1d(index, block, assume_unique=True), block) for block in blocks]
    if scheme == "forward":
        blocks = np.array_split(index, k + 1)
        return [(np.concatenate(blocks[:i]), blocks[i]) for i in range(1, k + 1)]
    if scheme == "random":
        order = np.random.default_rng(seed).permutation(n)
        tests = [np.sort(order[i::k]) for i in range(k)]
        return [(np.setdiff1d(index, test, assume_unique=True), test) for test in tests]
    raise CalibrationError(f"Unknown cross-validation scheme {scheme!r}; choose grouped, blocked, forward or random.")


def resolve_scheme(cv: str, groups: Sequence[str] | None) -> str:
    if cv != "auto":
        return cv
    return "grouped" if groups is not None and any(str(g) for g in groups) else "blocked"


def summed_ratio(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    total = float(np.sum(y))
    return float(np.sum(pred)) / total if total > 0 else math.nan
