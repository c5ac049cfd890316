"""The learned answer length of one model (hot path: stdlib only).

:class:`OutputLengthLearner` predicts generated tokens as an exponentially weighted mean;
a generation that hit the request's cap is censored (its true length is at least the
cap), so it can only *raise* the estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_energyrouter.learn.options import STATE_VERSION, OnlineOptions, check_version, finite

__all__ = ["OutputLengthLearner"]


class OutputLengthLearner:
    """Exponentially weighted mean of generated tokens, with censored (capped) observations.

    A generation that stopped at the request's cap only says "at least this long": it
    raises the estimate when above it and is otherwise left out, so a run of capped
    answers never teaches "answers are at most the cap".
    """

    def __init__(self, options: OnlineOptions | None = None) -> None:
        self.options = options or OnlineOptions()
        self._sum = 0.0
        self._weight = 0.0
        self.n_obs = 0
        """Observations learned from (censored ones that could not raise the estimate not counted)."""
        self.n_censored_ignored = 0
        """Capped generations at or below the estimate: no information, left out."""
        self.n_rejected = 0
        """NaN, infinite or negative lengths, ignored."""

    @property
    def estimate(self) -> float | None:
        """Predicted generated tokens, or None before any observation."""
        return self._sum / self._weight if self._weight > 0.0 else None

    def update(self, output_tokens: float, capped: bool = False) -> bool:
        """Learn one generated length; ``capped``: the generation hit the request's cap."""
        if not finite(output_tokens) or output_tokens < 0:
            self.n_rejected += 1
            return False
        current = self.estimate
        if capped and current is not None and output_tokens <= current:
            self.n_censored_ignored += 1
            return False
        lam = self.options.length_forgetting
        self._sum = lam * self._sum + output_tokens
        self._weight = lam * self._weight + 1.0
        self.n_obs += 1
        return True

    def to_state(self) -> dict[str, Any]:
        """A JSON-able dict of everything learned."""
        return {
            "version": STATE_VERSION,
            "sum": self._sum,
            "weight": self._weight,
            "n_obs": self.n_obs,
            "n_censored_ignored": self.n_censored_ignored,
            "n_rejected": self.n_rejected,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], options: OnlineOptions | None = None) -> OutputLengthLearner:
        """Rebuild from :meth:`to_state`'s dict."""
        check_version(state, "OutputLengthLearner")
        learner = cls(options)
        try:
            learner._sum = float(state["sum"])
            learner._weight = float(state["weight"])
            learner.n_obs = int(state["n_obs"])
            learner.n_censored_ignored = int(state.get("n_censored_ignored", 0))
            learner.n_rejected = int(state.get("n_rejected", 0))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Learned length state is malformed ({type(err).__name__}: {err}); reset it.") from err
        if not (finite(learner._sum, learner._weight) and learner._weight >= 0):
            raise ValueError("Learned length state has non-finite or negative values; reset it.")
        return learner
