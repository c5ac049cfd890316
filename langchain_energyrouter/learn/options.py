"""Tuning of the online learners, and the state format they share (versioned JSON-able dicts)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["STATE_VERSION", "OnlineOptions", "check_version", "finite"]

STATE_VERSION = 1
"""Version of the dicts written by ``to_state()``; ``from_state()`` refuses newer ones."""


@dataclass(frozen=True)
class OnlineOptions:
    """Tuning of the online learners (the defaults were chosen on the original traces' replay).

    Attributes:
        forgetting: per-observation decay of old observations' weight, in (0, 1]; the
            effective memory is about ``1 / (1 - forgetting)`` observations.
        shape_forgetting: decay of the slow statistics that learn the cost's shape (how it grows
            with tokens), in (0, 1]; about ``1 / (1 - shape_forgetting)`` observations.
        prior_weight: strength of the fast statistics' ridge pull toward the learned shape, in
            pseudo-observations.
        shape_prior_weight: strength of the slow statistics' pull toward the prior's shape.
        huber_k: residuals beyond this many robust scales are down-weighted.
        min_obs: observations before a snapshot reports learned coefficients (prior before).
        drift_threshold: CUSUM alarm level (in robust scales); ``math.inf`` disables resets.
        drift_slack: CUSUM allowance per observation (in robust scales).
        reset_keep: share of the statistics' weight kept after a drift reset, in [0, 1).
        length_forgetting: per-observation decay of the output-length mean.
    """

    forgetting: float = 0.96
    shape_forgetting: float = 0.998
    prior_weight: float = 3.0
    shape_prior_weight: float = 0.3
    huber_k: float = 4.0
    min_obs: int = 3
    drift_threshold: float = 12.0
    drift_slack: float = 1.0
    reset_keep: float = 0.2
    length_forgetting: float = 0.98

    def __post_init__(self) -> None:
        checks = (
            ("forgetting", 0.0 < self.forgetting <= 1.0, "a number in (0, 1], e.g. 0.96"),
            ("shape_forgetting", 0.0 < self.shape_forgetting <= 1.0, "a number in (0, 1], e.g. 0.998"),
            ("prior_weight", 0.0 < self.prior_weight < math.inf, "a positive number, e.g. 3.0"),
            ("shape_prior_weight", 0.0 < self.shape_prior_weight < math.inf, "a positive number, e.g. 0.3"),
            ("huber_k", 0.0 < self.huber_k, "a positive number (math.inf disables Huber weighting)"),
            ("min_obs", self.min_obs >= 0, "a count >= 0"),
            ("drift_threshold", 0.0 < self.drift_threshold, "a positive number (math.inf disables resets)"),
            ("drift_slack", 0.0 <= self.drift_slack < math.inf, "a number >= 0"),
            ("reset_keep", 0.0 <= self.reset_keep < 1.0, "a number in [0, 1)"),
            ("length_forgetting", 0.0 < self.length_forgetting <= 1.0, "a number in (0, 1]"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"OnlineOptions.{name} is {getattr(self, name)!r}; expected {expected}.")


def finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def check_version(state: Mapping[str, Any], what: str) -> None:
    if not isinstance(state, Mapping):
        raise ValueError(f"{what} state must be a dict, got {type(state).__name__}; reset it.")
    version = state.get("version")
    if not isinstance(version, int) or not 1 <= version <= STATE_VERSION:
        raise ValueError(
            f"{what} state has version {version!r}; this package reads 1 to {STATE_VERSION}. "
            "Upgrade langchain-energyrouter or reset the learned state."
        )
