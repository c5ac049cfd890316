"""The learned answer length of one model: a residual over the prior's length (hot path: stdlib only).

:class:`OutputLengthLearner` keeps an exponentially weighted mean and spread of ``log1p(tokens)`` minus the
prior's ``mu`` for that call's input (:func:`~langchain_energyrouter.cost.prior_length`). The prediction is the
prior shifted by that mean, so the dependence on the input stays: a short chat never makes a long prompt's
answer short. A generation that hit the request's cap is censored (its true length is at least the cap), so
it can only *raise* the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from langchain_energyrouter.learn.options import STATE_VERSION, OnlineOptions, check_version, finite

__all__ = ["MIN_LOG_SIGMA", "MIN_OBS_FOR_SIGMA", "OutputLengthLearner"]

MIN_OBS_FOR_SIGMA = 5
"""Observations before the learned spread replaces the prior's."""

MIN_LOG_SIGMA = 0.1
"""Floor of the learned spread (of ``log1p(tokens)``, about 10%): identical answers to repeated prompts said
nothing of the next prompt's, yet collapsed the spread to 0, so constraint quantiles equalled the mean."""

_FORM = "log_residual"
"""The state's form; a state without it (raw token means, before residuals) is dropped and relearned."""


class OutputLengthLearner:
    """Exponentially weighted mean and spread of the log-length residual over the prior, censoring-aware.

    A generation that stopped at the request's cap only says "at least this long": it raises the estimate
    when above it and is otherwise left out, so a run of capped answers never teaches "answers are at most
    the cap".
    """

    def __init__(self, options: OnlineOptions | None = None) -> None:
        self.options = options or OnlineOptions()
        self._sum = 0.0
        self._sum_sq = 0.0
        self._weight = 0.0
        self.n_obs = 0
        """Observations learned from (censored ones that could not raise the estimate not counted)."""
        self.n_censored_ignored = 0
        """Capped generations at or below the estimate: no information, left out."""
        self.n_rejected = 0
        """NaN, infinite or negative lengths, ignored."""

    @property
    def shift(self) -> float | None:
        """The learned mean of ``log1p(tokens) - prior mu``, or None before any observation."""
        return self._sum / self._weight if self._weight > 0.0 else None

    @property
    def sigma(self) -> float | None:
        """The learned spread of that residual, once :data:`MIN_OBS_FOR_SIGMA` observations are in."""
        if self.n_obs < MIN_OBS_FOR_SIGMA or self._weight <= 0.0:
            return None
        mean = self._sum / self._weight
        variance = self._sum_sq / self._weight - mean * mean
        return max(math.sqrt(max(variance, 0.0)), MIN_LOG_SIGMA)

    def update(self, output_tokens: float, prior_mu: float, capped: bool = False) -> bool:
        """Learn one generated length against the prior's ``mu`` (of ``log1p(tokens)``) for that call's input;
        ``capped``: the generation hit the request's cap."""
        if not finite(output_tokens, prior_mu) or output_tokens < 0:
            self.n_rejected += 1
            return False
        residual = math.log1p(output_tokens) - prior_mu
        current = self.shift
        if capped and residual <= (current if current is not None else 0.0):
            self.n_censored_ignored += 1
            return False
        lam = self.options.length_forgetting
        self._sum = lam * self._sum + residual
        self._sum_sq = lam * self._sum_sq + residual * residual
        self._weight = lam * self._weight + 1.0
        self.n_obs += 1
        return True

    def to_state(self) -> dict[str, Any]:
        """A JSON-able dict of everything learned."""
        return {
            "version": STATE_VERSION,
            "form": _FORM,
            "sum": self._sum,
            "sum_sq": self._sum_sq,
            "weight": self._weight,
            "n_obs": self.n_obs,
            "n_censored_ignored": self.n_censored_ignored,
            "n_rejected": self.n_rejected,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], options: OnlineOptions | None = None) -> OutputLengthLearner:
        """Rebuild from :meth:`to_state`'s dict; a state of the earlier form (token means) starts afresh."""
        check_version(state, "OutputLengthLearner")
        learner = cls(options)
        if state.get("form") != _FORM:
            return learner  # means of raw tokens, not residuals: relearned within a few calls
        try:
            learner._sum = float(state["sum"])
            learner._sum_sq = float(state["sum_sq"])
            learner._weight = float(state["weight"])
            learner.n_obs = int(state["n_obs"])
            learner.n_censored_ignored = int(state.get("n_censored_ignored", 0))
            learner.n_rejected = int(state.get("n_rejected", 0))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Learned length state is malformed ({type(err).__name__}: {err}); reset it.") from err
        if not (finite(learner._sum, learner._sum_sq, learner._weight) and learner._weight >= 0):
            raise ValueError("Learned length state has non-finite or negative values; reset it.")
        return learner
