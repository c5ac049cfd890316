"""Learning per-prompt quality online: a linear contextual bandit on top of the trained predictor.

Per model (arm) the bandit learns the *residual* of the prior: the score it observes minus
the prior's expected score for that prompt (the trained
:class:`~langchain_energyrouter.prompt.predictor.PromptPredictor`, or the profile's static accuracy without
one), as a ridge regression on a compact context ``z = [1, P @ embedding]`` (``P``: the predictor's principal
directions of the training embeddings, 16 by default; a fixed random projection without a predictor). So with
no feedback it predicts exactly the prior, and each feedback moves only that model's estimate
for prompts like the one it was about.

* **Incremental.** Each arm keeps ``A^-1`` and ``b`` of the ridge problem
  ``A = lambda I + sum z z^T``; one observation is a Sherman-Morrison update of ``A^-1``
  (O(k^2), k = 17), never a matrix inverse.
* **Exploration off by default.** ``exploration=0`` predicts the posterior mean (greedy, as a
  production router should unless told otherwise); ``> 0`` adds ``exploration * sqrt(z^T A^-1 z)``
  (``"ucb"``, LinUCB) or samples the coefficients from ``N(theta, exploration^2 A^-1)``
  (``"thompson"``).
* **Lengths.** Measured output lengths update a second ridge residual model of
  ``log1p(tokens)`` per arm; an answer cut at its cap says only "at least the cap", so it is
  used only when it raises the estimate (as :class:`~langchain_energyrouter.learn.costs.OutputLengthLearner` does).
* **Shared.** Each arm's state is a document of the learned-state store (kind ``"quality"``,
  key = model) written by compare-and-swap (:func:`~langchain_energyrouter.state.base.update`),
  so routers in several processes add to one state; every feedback row is also appended to
  the event log ``"feedback"`` first, so none is lost even when a write fails.

:class:`~langchain_energyrouter.prompt.routing.PromptRouting` is what a router holds; it owns a bandit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from langchain_energyrouter.errors import StateError, UnknownModelError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["QUALITY_KIND", "STATE_VERSION", "BanditOptions", "QualityBandit"]

QUALITY_KIND = "quality"
"""Store kind of the bandit's per-model documents."""
STATE_VERSION = 1


@dataclass(frozen=True)
class BanditOptions:
    """Tuning of :class:`QualityBandit`."""

    exploration: float = 0.0
    """0: greedy (the default); > 0: the UCB width multiplier or the Thompson sampling scale."""
    algorithm: Literal["ucb", "thompson"] = "ucb"
    prior_weight: float = 4.0
    """Ridge ``lambda`` of the score arms: how many observations' worth of trust the prior gets."""
    length_prior_weight: float = 128.0
    """Ridge ``lambda`` of the length arms: how many answers' worth of trust the trained predictor gets. A
    deployment's exact repeats are remembered apart (the repeat memory), so the arms only correct a lasting
    shift. Chosen on held-out prompts, each model's answers learned in a random order
    (``benchmarks/bench_online_lengths.py``), medAPE over 150 prompts per model at 0.5 (the old default) /
    8 / 32 / 128 / 512 / no learning: CASTILLO 0.360 / 0.306 / 0.298 / 0.295 / 0.296 / 0.297; the packaged
    models' matrix 0.590 / 0.558 / 0.506 / 0.460 / 0.446 / 0.432. At 0.5, three answers to other prompts sent
    every SmolLM2 prediction of ``make demo`` to the cap."""
    projection_dims: int = 16
    """Size of the random projection when there is no trained predictor."""
    seed: int = 0
    """Seed of the random projection (and of Thompson sampling)."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.exploration) or self.exploration < 0:
            raise ValueError(f"exploration={self.exploration!r}; use 0 (off) or a positive number such as 0.5.")
        if self.algorithm not in ("ucb", "thompson"):
            raise ValueError(f"algorithm={self.algorithm!r}; use 'ucb' or 'thompson'.")
        if not self.prior_weight > 0:
            raise ValueError(f"prior_weight={self.prior_weight!r}; use a positive number (4 is the default).")
        if not self.length_prior_weight > 0:
            raise ValueError(
                f"length_prior_weight={self.length_prior_weight!r}; use a positive number (0.5 is the default)."
            )


class _Ridge:
    """``A^-1`` and ``b`` of a ridge regression with Sherman-Morrison updates."""

    __slots__ = ("a_inv", "b", "n")

    def __init__(self, k: int, lam: float) -> None:
        self.a_inv = np.eye(k) / lam
        self.b = np.zeros(k)
        self.n = 0

    def add(self, z: NDArray[Any], y: float) -> None:
        az = self.a_inv @ z
        self.a_inv -= np.outer(az, az) / (1.0 + float(z @ az))
        self.b += y * z
        self.n += 1

    @property
    def theta(self) -> NDArray[Any]:
        return self.a_inv @ self.b

    def to_state(self) -> dict[str, Any]:
        return {"a_inv": self.a_inv.ravel().tolist(), "b": self.b.tolist(), "n": self.n}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], k: int) -> _Ridge:
        r = cls.__new__(cls)
        r.a_inv = np.array(state["a_inv"], dtype=np.float64).reshape(k, k)
        r.b = np.array(state["b"], dtype=np.float64).reshape(k)
        r.n = int(state["n"])
        return r


class QualityBandit:
    """Per-arm ridge residual models of score and log length over a compact context (see the module docstring).

    Args:
        models: the arms.
        k: context size (``1 + projection rows``).
        options: tuning.
    """

    def __init__(self, models: Sequence[str], k: int, options: BanditOptions | None = None) -> None:
        self.options = options or BanditOptions()
        self.k = k
        self.models = tuple(models)
        self._score = {m: _Ridge(k, self.options.prior_weight) for m in self.models}
        self._length = {m: _Ridge(k, self.options.length_prior_weight) for m in self.models}
        self._rng = np.random.default_rng(self.options.seed)
        self._compile()

    def _compile(self) -> None:
        """Stack every arm's coefficients so a prediction is one matrix product; swapped in as one immutable tuple,
        so a prediction in another thread sees every arm before an update or every arm after it."""
        n = len(self.models)
        theta = np.array([self._score[m].theta for m in self.models]).reshape(n, self.k)
        theta_len = np.array([self._length[m].theta for m in self.models]).reshape(n, self.k)
        a_inv = np.array([self._score[m].a_inv for m in self.models]).reshape(n, self.k, self.k)
        for array in (theta, theta_len, a_inv):
            array.flags.writeable = False
        self._compiled = (theta, theta_len, a_inv)

    def adjust(
        self, z: NDArray[Any], prior_score: NDArray[Any], prior_log_len: NDArray[Any]
    ) -> tuple[NDArray[Any], NDArray[Any]]:
        """Scores (clipped to [0, 1]) and log1p lengths: the prior plus the learned residual (+ exploration)."""
        theta, theta_len, a_inv = self._compiled
        opts = self.options
        if opts.exploration > 0 and opts.algorithm == "thompson":
            noise = self._rng.standard_normal((len(self.models), self.k))
            chol = np.linalg.cholesky(a_inv + 1e-12 * np.eye(self.k))
            theta = theta + opts.exploration * np.einsum("mij,mj->mi", chol, noise)
        score = prior_score + theta @ z
        if opts.exploration > 0 and opts.algorithm == "ucb":
            score = score + opts.exploration * np.sqrt(np.maximum(np.einsum("i,mij,j->m", z, a_inv, z), 0.0))
        return np.clip(score, 0.0, 1.0), prior_log_len + theta_len @ z

    def update(self, model: str, z: NDArray[Any], residual: float) -> None:
        """Learn one score residual (observed score - prior's expectation) of ``model``."""
        self._arm(model, self._score).add(z, residual)
        self._compile()

    def update_length(self, model: str, z: NDArray[Any], residual: float) -> None:
        """Learn one ``log1p(tokens)`` residual of ``model``."""
        self._arm(model, self._length).add(z, residual)
        self._compile()

    def observations(self, model: str) -> tuple[int, int]:
        """Score and length observations learned for ``model``."""
        return self._score[model].n, self._length[model].n

    def _arm(self, model: str, arms: dict[str, _Ridge]) -> _Ridge:
        try:
            return arms[model]
        except KeyError:
            raise UnknownModelError(f"The bandit has no arm {model!r}; arms are {list(self.models)}.") from None

    def arm_state(self, model: str) -> dict[str, Any]:
        return {"version": STATE_VERSION, "k": self.k, "score": self._score[model].to_state(),
                "length": self._length[model].to_state()}  # fmt: skip

    def load_arm_state(self, model: str, state: Mapping[str, Any] | None) -> None:
        """Install a stored arm (None: back to the prior)."""
        if state is None:
            self._score[model] = _Ridge(self.k, self.options.prior_weight)
            self._length[model] = _Ridge(self.k, self.options.length_prior_weight)
        else:
            if int(state.get("version", 0)) != STATE_VERSION or int(state.get("k", -1)) != self.k:
                raise StateError(f"Stored bandit state of {model!r} has another version or size; it is reset.")
            self._score[model] = _Ridge.from_state(state["score"], self.k)
            self._length[model] = _Ridge.from_state(state["length"], self.k)
        self._compile()
