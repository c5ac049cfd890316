"""Per-model cost prediction: output tokens, runtime_s, energy_j (hot path: stdlib only).

An answer's length is predicted as a distribution (:class:`LengthDistribution`: ``log1p(tokens)`` normal), so a
decision can use its mean under the request's cap (what joules add up to), its median and an upper quantile
(what a constraint must hold for). Runtime and energy are linear in the generated tokens, so the expected cost
is the cost of the expected (capped) length.

The arithmetic lives here once. :class:`~langchain_energyrouter.profile.ModelProfile`
calls it for one-off predictions; the scheduler compiles each profile entry into a
:class:`CompiledModel` (plain floats and tuples, no pydantic attribute chains) and
calls the same functions per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

Coefficients = tuple[float, float, float, float]
"""``(b0, b1, b2, b3)`` of ``y = b0 + b1*tin + b2*tout + b3*tin*tout``."""

_NO_FLAGS: tuple[str, ...] = ()


def linear_cost(b: Coefficients, input_tokens: float, output_tokens: float) -> float:
    """``b0 + b1*tin + b2*tout + b3*tin*tout``, unclamped (negative when extrapolating badly)."""
    return b[0] + b[1] * input_tokens + b[2] * output_tokens + b[3] * input_tokens * output_tokens


LoadTuple = tuple[float, float, float, float | None]
"""``(runtime_per_request, energy_fixed_share, reference_load, max_load)`` of a
:class:`~langchain_energyrouter.profile.LoadModel`."""

FLAG_EXTRAPOLATED = "extrapolated"
"""Input or output tokens outside the range the cost models were fitted on."""
FLAG_LOAD_EXTRAPOLATED = "load_extrapolated"
"""More requests in flight than the load model was measured at."""


def load_factors(load: LoadTuple | None, in_flight: float | None) -> tuple[float, float]:
    """``(runtime factor, energy factor)`` for one request with ``in_flight`` requests on its model.

    ``in_flight`` counts this request too; ``None`` or no load model gives ``(1, 1)``.
    Loads below 1 are read as 1 (a request is always in flight with itself).
    """
    if load is None or in_flight is None:
        return 1.0, 1.0
    per_request, fixed_share, reference, _max_load = load
    n = in_flight if in_flight > 1.0 else 1.0
    return 1.0 + per_request * (n - reference), (1.0 - fixed_share) + fixed_share * reference / n


def predict_costs(
    model: CompiledModel,
    input_tokens: float,
    output_tokens: float,
    in_flight: float | None = None,
    runtime: Coefficients | None = None,
    energy: Coefficients | None = None,
) -> tuple[float, float, tuple[str, ...]]:
    """Runtime (s) and energy (J) of one request, and flags.

    Args:
        model: the compiled profile entry (prior coefficients, load model, training ranges).
        input_tokens: prompt tokens.
        output_tokens: generated tokens.
        in_flight: requests in flight on the model, this one included (None: no load adjustment).
        runtime: coefficients to use instead of the prior's (an adapted, learned model).
        energy: likewise for energy.

    Negative predictions are clamped to 0 and flagged ``runtime_clamped`` / ``energy_clamped``;
    tokens outside the training ranges are flagged ``extrapolated``, a load beyond the measured
    one ``load_extrapolated``.
    """
    runtime_s = linear_cost(model.runtime if runtime is None else runtime, input_tokens, output_tokens)
    energy_j = linear_cost(model.energy if energy is None else energy, input_tokens, output_tokens)
    flags = _NO_FLAGS
    if model.load is not None and in_flight is not None:
        runtime_factor, energy_factor = load_factors(model.load, in_flight)
        runtime_s *= runtime_factor
        energy_j *= energy_factor
        max_load = model.load[3]
        if max_load is not None and in_flight > max_load:
            flags = (FLAG_LOAD_EXTRAPOLATED,)
    if runtime_s < 0.0:
        runtime_s, flags = 0.0, (*flags, "runtime_clamped")
    if energy_j < 0.0:
        energy_j, flags = 0.0, (*flags, "energy_clamped")
    tin_range, tout_range = model.input_range, model.output_range
    if (tin_range is not None and not tin_range[0] <= input_tokens <= tin_range[1]) or (
        tout_range is not None and not tout_range[0] <= output_tokens <= tout_range[1]
    ):
        flags = (*flags, FLAG_EXTRAPOLATED)
    return runtime_s, energy_j, flags


DEFAULT_LENGTH_LOG_SIGMA = 0.5
"""Spread of ``log1p(tokens)`` assumed around a profile's length line when nothing better is known: the
per-model standard deviation of log answer lengths of 13 open chat models over seven instruction, chat and
code datasets was 0.44 (median over models; CASTILLO), rounded up because a line is cruder than a mean."""

_SQRT2 = math.sqrt(2.0)


class LengthDistribution(NamedTuple):
    """The generated tokens of one answer, as ``log1p(tokens) ~ Normal(mu, sigma^2)``.

    Real answer lengths are not quite log-normal: their mean is not the log-normal's. ``mean_shift`` moves the
    distribution on the log scale for means only (:meth:`mean_tokens`), so a predictor can keep its median and
    quantiles where they were measured and still sum to the measured total (what joules add up to).
    """

    mu: float
    """Mean (and median) of ``log1p(tokens)``."""
    sigma: float
    """Its standard deviation (0: a point prediction)."""
    mean_shift: float = 0.0
    """Log-scale shift for :meth:`mean_tokens` (0: the log-normal's own mean)."""

    @classmethod
    def from_mean(cls, mean_tokens: float, sigma: float) -> LengthDistribution:
        """The distribution with this mean (in tokens) and spread."""
        return cls(math.log1p(max(mean_tokens, 0.0)) - 0.5 * sigma * sigma, sigma)

    def shifted(self, shift: float, sigma: float | None = None) -> LengthDistribution:
        """``mu + shift``, with another spread if given (a learned residual over this prior)."""
        return LengthDistribution(self.mu + shift, self.sigma if sigma is None else sigma, self.mean_shift)

    def quantile_tokens(self, z: float, cap: float | None = None) -> float:
        """Tokens at the standard-normal quantile ``z`` (0: the median), at most ``cap``."""
        tokens = max(math.expm1(self.mu + z * self.sigma), 0.0)  # mu below 0 (an empty prompt) is not below 0 tokens
        return cap if cap is not None and tokens > cap else tokens

    def mean_tokens(self, cap: float | None = None) -> float:
        """The mean of ``min(tokens, cap)``: what a generation cut at ``cap`` produces on average."""
        mu, sigma = self.mu + self.mean_shift, self.sigma
        if cap is None:
            return max(math.expm1(mu + 0.5 * sigma * sigma), 0.0)
        if sigma <= 0.0:
            return min(max(math.expm1(mu), 0.0), cap)
        # E[min(Y, k)] for Y = tokens + 1 ~ LogNormal(mu, sigma), k = cap + 1.
        log_k = math.log1p(cap)
        below = 0.5 * (1.0 + math.erf((log_k - mu - sigma * sigma) / (sigma * _SQRT2)))
        above = 0.5 * math.erfc((log_k - mu) / (sigma * _SQRT2))
        return max(math.exp(mu + 0.5 * sigma * sigma) * below + (cap + 1.0) * above - 1.0, 0.0)


class CompiledModel(NamedTuple):
    """One profile entry reduced to what a decision reads."""

    name: str
    runtime: Coefficients
    energy: Coefficients
    output_intercept: float
    output_slope: float
    output_by_task: Mapping[str, float]
    output_cap: int | None
    accuracy: float
    accuracy_by_task: Mapping[str, float]
    context_window: int
    load: LoadTuple | None = None
    input_range: tuple[float, float] | None = None
    output_range: tuple[float, float] | None = None
    output_log_sigma: float = DEFAULT_LENGTH_LOG_SIGMA
    """Spread of ``log1p(tokens)`` around the length line (the profile's, else the default)."""


def prior_length(model: CompiledModel, input_tokens: float, task_type: str | None = None) -> LengthDistribution:
    """The profile's answer length: per task type where the profile knows the task, else its line in the
    input tokens; at least 1 token on average, spread ``output_log_sigma``."""
    if task_type is not None and task_type in model.output_by_task:
        mean = model.output_by_task[task_type]
    else:
        mean = model.output_intercept + model.output_slope * input_tokens
    return LengthDistribution.from_mean(mean if mean > 1.0 else 1.0, model.output_log_sigma)
