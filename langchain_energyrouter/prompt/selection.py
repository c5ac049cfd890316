"""Choosing between a prompt-reading form and its per-task baseline on held-out errors (numpy).

A form that reads the prompt is kept only when it is *clearly* better than per-task means on rows it never saw:
the paired per-row differences of their held-out losses must average below zero by more than ``MARGIN_SE``
standard errors. On features that carry nothing, a plain "lower held-out error" picks the prompt form about
half the time by chance; this rule keeps the baseline there, and the prompt form wherever it helps (on CASTILLO
and the packaged models its lead is tens of standard errors).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["MARGIN_SE", "MIN_ROWS", "clearly_better"]

MARGIN_SE = 2.0
"""How many standard errors below zero the mean paired difference must be."""
MIN_ROWS = 10
"""Fewer paired rows than this: never clearly better."""


def clearly_better(differences: NDArray[Any]) -> bool:
    """Whether per-row ``loss(prompt form) - loss(baseline)`` says the prompt form is clearly better."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) < MIN_ROWS:
        return False
    se = float(np.std(d, ddof=1)) / math.sqrt(len(d))
    return float(np.mean(d)) + MARGIN_SE * se < 0.0
