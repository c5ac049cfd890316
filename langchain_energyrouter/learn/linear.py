"""One learned linear cost model per model and target (runtime or energy) (hot path: stdlib only).

The profile stays the *prior*. Per model and target (``runtime_s``, ``energy_j``) a
:class:`LinearCostLearner` keeps exponentially weighted sufficient statistics of the
same linear form the scheduler evaluates::

    y = b0 + b1 * tin + b2 * tout + b3 * tin * tout

and solves, after each observation, a ridge-regularised least-squares problem by a
4x4 Cholesky factorisation:

* **Forgetting.** Old observations decay by ``forgetting`` per observation (0.96: an
  effective memory of about 25 calls), so the learner follows drift (on the original
  traces seconds per token triple over one run).
* **Stable.** Features are scaled to order 1, and the ridge term never decays, so the
  normal matrix is always positive definite and its inverse (the covariance) is
  bounded by ``1 / prior_weight``: no covariance windup when the inputs stop varying
  (most calls of a deployment have similar lengths), unlike naive forgetting RLS.
* **Two timescales: shape slow, level fast.** A second, slow set of statistics
  (``shape_forgetting``, ~500 calls) learns the shape (how cost grows with tokens),
  pulled toward the prior's. The fast solve is pulled toward that shape *rescaled to the
  current level* (weighted mean measurement over weighted mean shape prediction). In
  directions the recent data cannot identify (``tout`` always at the budget leaves
  intercept and per-token cost collinear) the shape's split is kept while the level
  follows the data; a pull toward the unscaled prior would bias every prediction toward
  it once costs drift.
* **Physical.** Per-token slopes ``b1, b2, b3`` are never negative (one more token never
  costs less): a slope the free solution makes negative is held at 0 and the rest re-solved.
* **Robust.** A residual beyond ``huber_k`` robust scales (exponentially weighted mean
  absolute relative residual) is down-weighted (Huber), so one slow outlier does not
  move the level; moderate right tails are kept, so the level stays the mean, not the
  median (a router adds joules up: predictions must be right on average).
* **Drift detection.** A two-sided CUSUM on standardised relative residuals detects a
  sustained shift; the learner then keeps only ``reset_keep`` of its statistics'
  weight, falling back toward the prior's shape at the recent level, and counts the reset.
* **Survival.** A NaN, infinite or negative measurement is ignored and counted
  (:attr:`LinearCostLearner.n_rejected`); it never reaches the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from langchain_energyrouter.cost import Coefficients
from langchain_energyrouter.learn.options import STATE_VERSION, OnlineOptions, check_version, finite

__all__ = ["DEFAULT_INPUT_SCALE", "DEFAULT_OUTPUT_SCALE", "LinearCostLearner"]

DEFAULT_INPUT_SCALE = 32.0
"""Input tokens that scale the features to order 1 when the prior has no training range."""
DEFAULT_OUTPUT_SCALE = 64.0
"""Output tokens likewise."""

_SHAPE_EVERY = 8
"""The slow (shape) statistics are re-solved every this many observations."""
_NOISE_DECAY = 0.98
"""Per-observation decay of the robust residual scale (a memory of about 50 observations)."""


def _solve4(m: list[float], rhs: list[float]) -> list[float] | None:
    """Solve ``M x = rhs`` for a symmetric 4x4 ``M`` given by its lower triangle
    ``[m00, m10, m11, m20, m21, m22, m30, m31, m32, m33]`` (unrolled Cholesky); None if not positive definite."""
    m00, m10, m11, m20, m21, m22, m30, m31, m32, m33 = m
    if not m00 > 0.0:
        return None
    l00 = math.sqrt(m00)
    l10, l20, l30 = m10 / l00, m20 / l00, m30 / l00
    d = m11 - l10 * l10
    if not d > 0.0:
        return None
    l11 = math.sqrt(d)
    l21, l31 = (m21 - l20 * l10) / l11, (m31 - l30 * l10) / l11
    d = m22 - l20 * l20 - l21 * l21
    if not d > 0.0:
        return None
    l22 = math.sqrt(d)
    l32 = (m32 - l30 * l20 - l31 * l21) / l22
    d = m33 - l30 * l30 - l31 * l31 - l32 * l32
    if not d > 0.0:
        return None
    l33 = math.sqrt(d)
    y0 = rhs[0] / l00
    y1 = (rhs[1] - l10 * y0) / l11
    y2 = (rhs[2] - l20 * y0 - l21 * y1) / l22
    y3 = (rhs[3] - l30 * y0 - l31 * y1 - l32 * y2) / l33
    x3 = y3 / l33
    x2 = (y2 - l32 * x3) / l22
    x1 = (y1 - l21 * x2 - l31 * x3) / l11
    x0 = (y0 - l10 * x1 - l20 * x2 - l30 * x3) / l00
    return [x0, x1, x2, x3]


_ROW_START = (0, 1, 3, 6)
"""Index of ``M[i][0]`` in the packed lower triangle."""


def _pin(m: list[float], rhs: list[float], k: int) -> None:
    """Hold unknown ``k`` at 0: its row and column become those of the identity."""
    for j in range(4):
        if j != k:
            m[_ROW_START[max(j, k)] + min(j, k)] = 0.0
    m[_ROW_START[k] + k] = 1.0
    rhs[k] = 0.0


_INF = math.inf


class _Stats:
    """Exponentially weighted sufficient statistics of the scaled features, and their ridge solve."""

    __slots__ = ("a", "g")

    def __init__(self) -> None:
        self.a = [[0.0] * (i + 1) for i in range(4)]
        """Lower triangle of the decayed sum of ``w * z z^T``."""
        self.g = [0.0] * 4
        """Decayed sum of ``w * y * z``."""

    def add(self, lam: float, weight: float, zi: float, zo: float, y: float) -> None:
        zio = zi * zo
        w1, w2, w3 = weight * zi, weight * zo, weight * zio
        r0, r1, r2, r3 = self.a
        g = self.g
        r0[0] = lam * r0[0] + weight
        r1[0] = lam * r1[0] + w1
        r1[1] = lam * r1[1] + w1 * zi
        r2[0] = lam * r2[0] + w2
        r2[1] = lam * r2[1] + w2 * zi
        r2[2] = lam * r2[2] + w2 * zo
        r3[0] = lam * r3[0] + w3
        r3[1] = lam * r3[1] + w3 * zi
        r3[2] = lam * r3[2] + w3 * zo
        r3[3] = lam * r3[3] + w3 * zio
        g[0] = lam * g[0] + weight * y
        g[1] = lam * g[1] + w1 * y
        g[2] = lam * g[2] + w2 * y
        g[3] = lam * g[3] + w3 * y

    def shrink(self, keep: float) -> None:
        self.a = [[v * keep for v in row] for row in self.a]
        self.g = [v * keep for v in self.g]

    def solve(self, ridge: float, anchor: list[float]) -> list[float] | None:
        """Ridge solution pulled toward ``anchor`` rescaled to the data's level, slopes held >= 0."""
        g = self.g
        r0, r1, r2, r3 = self.a
        # The anchor's shape at the current level: weighted mean y over weighted mean anchor prediction
        # (a[k][0] is the weighted sum of z_k, so this is the weighted sum of the anchor's predictions).
        anchor_sum = anchor[0] * r0[0] + anchor[1] * r1[0] + anchor[2] * r2[0] + anchor[3] * r3[0]
        level = g[0] / anchor_sum if anchor_sum > 1e-12 and g[0] > 0.0 and r0[0] > 1e-9 else 1.0
        pull = ridge * level
        rhs = [g[0] + pull * anchor[0], g[1] + pull * anchor[1], g[2] + pull * anchor[2], g[3] + pull * anchor[3]]
        # fmt: off
        m = [
            r0[0] + ridge,
            r1[0], r1[1] + ridge,
            r2[0], r2[1], r2[2] + ridge,
            r3[0], r3[1], r3[2], r3[3] + ridge,
        ]
        # fmt: on
        # Active set: a slope the solution makes negative is held at 0 and the rest re-solved
        # (one more token never costs less); at most three rounds, one per slope.
        for _ in range(4):
            solution = _solve4(m, rhs)
            if solution is None:  # cannot happen with ridge > 0
                return None
            negative = [k for k in (1, 2, 3) if solution[k] < 0.0]
            if not negative:
                return solution
            for k in negative:
                _pin(m, rhs, k)
        return None  # unreachable: after three pins every slope is 0

    def to_state(self) -> dict[str, Any]:
        return {"a": [list(row) for row in self.a], "g": list(self.g)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _Stats:
        stats = cls()
        a = [[float(v) for v in row] for row in state["a"]]
        g = [float(v) for v in state["g"]]
        if [len(row) for row in a] != [1, 2, 3, 4] or len(g) != 4 or not finite(*g, *(v for row in a for v in row)):
            raise ValueError("statistics have the wrong shape or non-finite values")
        stats.a, stats.g = a, g
        return stats


class LinearCostLearner:
    """Online estimate of ``y = b0 + b1*tin + b2*tout + b3*tin*tout`` for one model and target.

    Two sets of statistics: a fast one (``forgetting``) that makes the predictions and follows
    drift, and a slow one (``shape_forgetting``) that learns the *shape* (how cost grows with
    tokens) from many more calls; the fast solve is pulled toward the slow shape at the fast
    level, the slow one toward the prior's shape.

    Args:
        prior: the profile's ``(b0, b1, b2, b3)``; negative slopes are read as 0.
        input_scale, output_scale: typical input and output tokens (e.g. the training
            ranges' upper ends), used to scale the features to order 1.
        options: tuning; see :class:`OnlineOptions`.
        noise: the prior's typical relative error (e.g. its held-out MAPE), the robust
            scale before any residual has been seen.
    """

    def __init__(
        self,
        prior: Coefficients,
        *,
        input_scale: float = DEFAULT_INPUT_SCALE,
        output_scale: float = DEFAULT_OUTPUT_SCALE,
        options: OnlineOptions | None = None,
        noise: float = 0.2,
    ) -> None:
        if not finite(*prior):
            raise ValueError(f"prior coefficients {prior} must be finite numbers.")
        if not (finite(input_scale, output_scale) and input_scale > 0 and output_scale > 0):
            raise ValueError(f"input_scale {input_scale} and output_scale {output_scale} must be positive tokens.")
        self.options = options or OnlineOptions()
        self.prior: Coefficients = (float(prior[0]), float(prior[1]), float(prior[2]), float(prior[3]))
        self.input_scale = float(input_scale)
        self.output_scale = float(output_scale)
        s = (1.0, self.input_scale, self.output_scale, self.input_scale * self.output_scale)
        self._scale = s
        # The prior in scaled units (its value at the scale point of each feature), negative slopes at 0.
        self._anchor = [self.prior[0], *(max(self.prior[k], 0.0) * s[k] for k in (1, 2, 3))]
        self._fast = _Stats()
        self._slow = _Stats()
        self._noise = float(noise) if finite(noise) and noise > 0 else 0.2
        self._cusum_hi = 0.0
        self._cusum_lo = 0.0
        self.n_obs = 0
        """Observations learned from (rejected ones not counted)."""
        self.n_rejected = 0
        """Measurements ignored: NaN, infinite or negative values."""
        self.resets = 0
        """Drift resets so far."""
        self._shape: list[float] = list(self._anchor)
        self._coef_scaled: list[float] = list(self._anchor)

    # -- prediction ---------------------------------------------------------
    @property
    def coefficients(self) -> Coefficients:
        """The current ``(b0, b1, b2, b3)`` in token units (the prior's before any data)."""
        c, s = self._coef_scaled, self._scale
        return (c[0], c[1] / s[1], c[2] / s[2], c[3] / s[3])

    def predict(self, input_tokens: float, output_tokens: float) -> float:
        """The current prediction, unclamped."""
        c = self._coef_scaled
        zi = input_tokens / self.input_scale
        zo = output_tokens / self.output_scale
        return c[0] + c[1] * zi + c[2] * zo + c[3] * zi * zo

    # -- learning -----------------------------------------------------------
    def update(self, input_tokens: float, output_tokens: float, y: float) -> bool:
        """Learn from one measurement; return False (and count it) when it is not usable.

        Args:
            input_tokens, output_tokens: the request's prompt and generated tokens.
            y: the measured cost (seconds or joules), already divided by any load factor.
        """
        try:  # chained comparisons are False for NaN, so this also rejects NaN, inf and negatives
            usable = 0.0 <= input_tokens < _INF and 0.0 <= output_tokens < _INF and 0.0 <= y < _INF
        except TypeError:  # None or a string where a number belongs
            usable = False
        if not usable:
            self.n_rejected += 1
            return False
        opts = self.options
        zi = input_tokens / self.input_scale
        zo = output_tokens / self.output_scale
        c = self._coef_scaled
        predicted = c[0] + c[1] * zi + c[2] * zo + c[3] * zi * zo
        floor = 1e-9 + 1e-3 * abs(self._anchor[0])
        rel = (y - predicted) / (predicted if predicted > floor else floor)
        scale = self._noise
        size = abs(rel)
        weight = 1.0 if size <= opts.huber_k * scale else opts.huber_k * scale / size
        # Robust scale: mean absolute relative residual, each residual capped so one outlier cannot inflate it.
        capped = size if size <= 2.0 * opts.huber_k * scale else 2.0 * opts.huber_k * scale
        self._noise = _NOISE_DECAY * scale + (1.0 - _NOISE_DECAY) * capped
        if self._noise < 1e-6:
            self._noise = 1e-6
        self._fast.add(opts.forgetting, weight, zi, zo, y)
        self._slow.add(opts.shape_forgetting, weight, zi, zo, y)
        self.n_obs += 1
        # Two-sided CUSUM on standardised (and clipped) relative residuals: a sustained shift alarms.
        t = rel / scale
        t = t if t < opts.huber_k else opts.huber_k
        t = t if t > -opts.huber_k else -opts.huber_k
        hi = self._cusum_hi + t - opts.drift_slack
        lo = self._cusum_lo - t - opts.drift_slack
        self._cusum_hi = hi if hi > 0.0 else 0.0
        self._cusum_lo = lo if lo > 0.0 else 0.0
        if self._cusum_hi > opts.drift_threshold or self._cusum_lo > opts.drift_threshold:
            self.reset(opts.reset_keep)
        else:
            # The shape moves slowly (hundreds of calls): re-solving it every few calls halves the cost.
            self._solve(shape=self.n_obs % _SHAPE_EVERY == 0 or self.n_obs < _SHAPE_EVERY)
        return True

    def reset(self, keep: float = 0.0) -> None:
        """Forget all but ``keep`` of the fast statistics' weight and count a reset.

        With ``keep=0`` predictions fall back to the slow statistics (the long-run shape,
        itself pulled toward the prior's); to forget everything, build a new learner.
        """
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep is {keep}; expected a share in [0, 1].")
        self._fast.shrink(keep)
        self._cusum_hi = self._cusum_lo = 0.0
        self.resets += 1
        self._solve(shape=False)

    def _solve(self, shape: bool = True) -> None:
        if shape:
            solved = self._slow.solve(self.options.shape_prior_weight, self._anchor)
            if solved is not None:
                self._shape = solved
        coef = self._fast.solve(self.options.prior_weight, self._shape)
        if coef is not None:
            self._coef_scaled = coef

    # -- persistence --------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A JSON-able dict of everything learned (the options are the caller's)."""
        return {
            "version": STATE_VERSION,
            "prior": list(self.prior),
            "input_scale": self.input_scale,
            "output_scale": self.output_scale,
            "fast": self._fast.to_state(),
            "slow": self._slow.to_state(),
            "shape": list(self._shape),
            "noise": self._noise,
            "cusum": [self._cusum_hi, self._cusum_lo],
            "n_obs": self.n_obs,
            "n_rejected": self.n_rejected,
            "resets": self.resets,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], options: OnlineOptions | None = None) -> LinearCostLearner:
        """Rebuild a learner from :meth:`to_state`'s dict; ValueError names what is wrong."""
        check_version(state, "LinearCostLearner")
        try:
            prior = tuple(float(v) for v in state["prior"])
            if len(prior) != 4:
                raise ValueError(f"prior has {len(prior)} coefficients, expected 4")
            learner = cls(
                (prior[0], prior[1], prior[2], prior[3]),
                input_scale=float(state["input_scale"]),
                output_scale=float(state["output_scale"]),
                options=options,
                noise=float(state["noise"]),
            )
            learner._fast = _Stats.from_state(state["fast"])
            learner._slow = _Stats.from_state(state["slow"])
            learner._cusum_hi, learner._cusum_lo = (float(v) for v in state["cusum"])
            learner.n_obs = int(state["n_obs"])
            learner.n_rejected = int(state.get("n_rejected", 0))
            learner.resets = int(state.get("resets", 0))
            shape = [float(v) for v in state["shape"]]
            if len(shape) != 4 or not finite(*shape):
                raise ValueError(f"shape {shape} is not 4 finite numbers")
            learner._shape = shape
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Learned state is malformed ({type(err).__name__}: {err}); reset it.") from err
        learner._solve(shape=False)
        return learner
