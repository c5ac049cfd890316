"""Exploring where a prediction is uncertain: now and then try a candidate that could win (hot path: stdlib only).

A router learns the costs and lengths of the models it picks, so a prior that is wrong against one model (a
profile measured on another machine, a length predicted at the cap) could rule it out for good. With an
:class:`Explorer`, each routed decision also draws a plausible version of every eligible candidate's
predictions (Thompson sampling): its mean answer length and its cost coefficients are perturbed on a log
scale by their uncertainty, ``prior_log_sd / sqrt(1 + n)`` with ``n`` the observations behind them (0 for a
prior), and the draws are scored like the predictions. When the draw's winner is not the greedy choice, it
is tried instead, within two bounds:

* **share**: at most ``share`` of the routed decisions explore;
* **energy**: the explored calls' expected extra joules (the explored candidate's predicted energy minus the
  greedy choice's) stay within ``max_extra_energy_share`` of all routed calls' predicted joules.

Forced routes never explore. Each explored decision records where it came from
(:attr:`~langchain_energyrouter.decide.scheduler.Decision.explored`) and :meth:`Explorer.stats` totals the
calls, the explored calls and their expected extra joules. As a model's costs and lengths are measured its
uncertainty shrinks, and so does the chance that a draw picks it against better evidence. A model explored
while its predictions are the prior's is tried again ahead of a fresh draw until the learners can use its
readings (``follow_through``), so exploring it is not spent for nothing.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ExplorationOptions", "ExplorationStats", "Explorer"]


@dataclass(frozen=True)
class ExplorationOptions:
    """How much a router explores (see the module doc)."""

    share: float = 0.1
    """At most this share of routed decisions explores, in [0, 1]."""
    max_extra_energy_share: float = 0.05
    """The explored calls' expected extra joules stay within this share of all routed calls' predicted joules."""
    prior_log_sd: float = 0.5
    """Uncertainty (log-scale standard deviation) of a prediction no observation backs: about a factor 1.65
    either way at one standard deviation, what a profile from another machine or a length predicted without
    this deployment's answers can be off by. Halved by 3 observations, a tenth after 99."""
    follow_through: int = 3
    """An explored model whose predictions are still the prior's is explored again (within both bounds, ahead
    of a fresh draw) until it has been explored this many times: the online learners use their own figures
    only after ``OnlineOptions.min_obs`` (3) readings, so one or two explored calls alone teach nothing.
    0 turns it off."""
    seed: int | None = None
    """Seed of the draws (None: a fresh one)."""

    def __post_init__(self) -> None:
        checks = (
            ("share", 0.0 <= self.share <= 1.0, "a share in [0, 1], e.g. 0.1"),
            ("max_extra_energy_share", 0.0 <= self.max_extra_energy_share < math.inf, "a share >= 0, e.g. 0.05"),
            ("prior_log_sd", 0.0 < self.prior_log_sd < 10.0, "a log-scale standard deviation, e.g. 0.5"),
            ("follow_through", 0 <= self.follow_through <= 100, "a number of explored calls in [0, 100], e.g. 3"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"ExplorationOptions.{name} is {getattr(self, name)!r}; expected {expected}.")

    @classmethod
    def coerce(cls, value: ExplorationOptions | Mapping[str, Any] | bool | None) -> ExplorationOptions | None:
        """Options from a router setting: True = the defaults, False/None = no exploration, a dict of fields.

        Raises:
            ValueError: an unknown field or a value out of range.
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(f"Unknown exploration option(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}.")
            return cls(**value)
        raise TypeError(
            f"exploration={value!r}; give True (the defaults), False, an ExplorationOptions or a dict of its fields."
        )


@dataclass(frozen=True)
class ExplorationStats:
    """What an explorer has done so far."""

    calls: int
    """Routed decisions it saw."""
    explored: int
    """Decisions it changed."""
    expected_extra_energy_j: float
    """Sum over explored calls of the explored candidate's predicted joules minus the greedy choice's."""
    predicted_energy_j: float
    """Sum over all calls of the greedy choice's predicted joules (the budget's base)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Explorer:
    """Draws and bounds for exploring decisions (thread-safe; one per router)."""

    def __init__(self, options: ExplorationOptions | None = None) -> None:
        self.options = options or ExplorationOptions()
        self._rng = random.Random(self.options.seed)
        self._lock = threading.Lock()
        self._calls = 0
        self._explored = 0
        self._extra_j = 0.0
        self._predicted_j = 0.0
        self._explored_by_model: dict[str, int] = {}

    def unfinished(self, model: str) -> bool:
        """``model`` was explored, fewer than ``follow_through`` times."""
        with self._lock:
            return 0 < self._explored_by_model.get(model, 0) < self.options.follow_through

    def log_noise(self, observations: int) -> float:
        """One draw of a log-scale error for a prediction backed by ``observations`` observations."""
        sd = self.options.prior_log_sd / math.sqrt(1.0 + max(observations, 0))
        with self._lock:
            return self._rng.gauss(0.0, sd)

    def admit(self, greedy_energy_j: float, explored_energy_j: float | None, model: str | None = None) -> bool:
        """Count one routed decision (``explored_energy_j`` None: the draw agreed with the greedy choice) and
        say whether exploring it (``model``, counted when admitted) stays within the bounds."""
        with self._lock:
            self._calls += 1
            if greedy_energy_j > 0.0 and math.isfinite(greedy_energy_j):
                self._predicted_j += greedy_energy_j
            if explored_energy_j is None:
                return False
            extra = max(explored_energy_j - greedy_energy_j, 0.0)
            options = self.options
            if self._explored + 1 > options.share * self._calls:
                return False
            if self._extra_j + extra > options.max_extra_energy_share * self._predicted_j:
                return False
            self._explored += 1
            self._extra_j += extra
            if model is not None:
                self._explored_by_model[model] = self._explored_by_model.get(model, 0) + 1
            return True

    def stats(self) -> ExplorationStats:
        """The totals so far."""
        with self._lock:
            return ExplorationStats(self._calls, self._explored, self._extra_j, self._predicted_j)
