"""Weights, normalisers, constraints and the Pareto filter (hot path: stdlib only).

A candidate's score is
``w_acc * a(accuracy) + w_energy * n(energy_j) + w_time * n(runtime_s)``,
where ``n`` is a normaliser applied across the feasible candidates and ``a`` its
accuracy form (:data:`ACCURACY_NORMALIZERS`, :func:`get_accuracy_normalizer`);
the lowest score wins.

Normalisers (the registry :data:`NORMALIZERS`) map a list of costs (>= 0) to
comparable terms, lower is better, and never reverse order (if ``a <= b`` then
``n(a) <= n(b)``):

``minmax`` (the original's): ``(x - min) / (max - min + eps)``. Every axis spans
    [0, 1] whatever its spread, so between two candidates a 1% runtime difference
    weighs as much as a 50% one. Fits when the candidates really differ on every axis.
``relative``: ``(x - min) / min``, the fraction by which a candidate is worse than the
    best on that axis (``(x - min) / max`` when the best is 0). A 1% difference
    stays 0.01; weights then trade percentages.
    Fits when candidates are close on some axis, and for two candidates.
``hybrid``: the original variant's five stages (z-score, log, min-max, softmax
    amplification, variance rebasing), with the objective the right way up (the
    original ranked by a softmax of *negated* costs and then took the lowest score,
    which preferred the slowest, least accurate model) and anchored at the ideal
    cost 0: the stages see the values together with a virtual candidate that costs
    nothing, which is then dropped. Without the anchor the stages keep only the
    *shape* of the values: any two candidates got ``[0, 2]`` (two z-scores are
    always -1 and +1) and ``[100, 101, 102]`` got the same terms as ``[1, 2, 3]``.
    With it, ``[100, 101]`` gives ``[0, 0.04]`` and ``[1, 100]`` about ``[0, 2.1]``.

Accuracy is a benefit in [0, 1], not a cost; each normaliser has an accuracy form
(:data:`ACCURACY_NORMALIZERS`) that keeps how much better one candidate is expected
to be, not only which is better:

``minmax``: ``minmax(1 - accuracy)``, i.e. ``(best - acc) / (best - worst)``.
``relative``: ``(best - acc) / best``, the share of the best candidate's correct
    answers a candidate is expected to lose: bounded in [0, 1] and continuous
    (0.90 against 0.99 gives 0.091, against 0.999 0.099, against 1.0 0.1). The plain
    ``relative`` of the error rate ``1 - accuracy`` was unbounded and jumped
    (9, 99, then 1 for the same three pairs), outweighing any energy weight.
``hybrid``: ``hybrid(1 - accuracy)``: the error rates, anchored at a perfect model.

A custom normaliser is any callable ``(Sequence[float]) -> list[float]`` that keeps order;
its accuracy form applies it to ``1 - accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from langchain_energyrouter.errors import WeightsError

Normalizer = Callable[[Sequence[float]], list[float]]
"""Costs (>= 0, lower is better) -> terms (lower is better), order kept."""
AccuracyNormalizer = Callable[[Sequence[float]], list[float]]
"""Accuracies in [0, 1] (higher is better) -> terms (lower is better), order reversed."""
_EPS = 1e-12


# -- weights ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Weights:
    """How much accuracy, energy and time matter; normalised to sum to 1 on construction.

    Example:
        >>> Weights(accuracy=0.7, energy=0.2, time=0.1)
        >>> Weights(energy=1)            # energy only; unspecified weights are 0
    """

    accuracy: float = 0.0
    energy: float = 0.0
    time: float = 0.0

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise WeightsError(f"Weight {name}={value!r} is not a number; give a finite number >= 0.")
            if not math.isfinite(value) or value < 0:
                raise WeightsError(f"Weight {name}={value!r} is invalid; weights must be finite and >= 0.")
        largest = max(values.values())
        if largest <= 0:
            raise WeightsError(
                f"All weights are zero ({values}); give at least one of accuracy, energy, time a positive weight."
            )
        # Rescale by the largest weight first: summing three weights near the float maximum overflows to inf.
        scaled = {name: float(value) / largest for name, value in values.items()}
        total = sum(scaled.values())
        for name, value in scaled.items():
            object.__setattr__(self, name, value / total)

    @classmethod
    def coerce(cls, value: WeightsLike | None, default: Weights | None = None) -> Weights:
        """Accept Weights, a mapping (missing keys are 0), a 3-sequence (accuracy, energy, time), or None."""
        if value is None:
            return default if default is not None else cls.balanced()
        if isinstance(value, Weights):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"accuracy", "energy", "time"}
            if unknown:
                raise WeightsError(f"Unknown weight name(s) {sorted(unknown)}; use 'accuracy', 'energy' and 'time'.")
            return cls(**{str(k): v for k, v in value.items()})
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            if len(value) != 3:
                raise WeightsError(f"Weights {list(value)!r} must have 3 values: accuracy, energy, time.")
            return cls(*value)
        raise WeightsError(
            f"Cannot read weights from {value!r}; pass Weights(...), a dict like "
            "{'accuracy': 0.6, 'energy': 0.3, 'time': 0.1} or a 3-tuple."
        )

    @classmethod
    def balanced(cls) -> Weights:
        """Equal weights (1/3 each)."""
        return cls(1.0, 1.0, 1.0)

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "energy": self.energy, "time": self.time}


WeightsLike = Weights | Mapping[str, float] | Sequence[float]

PRESETS: dict[str, Weights] = {
    "accuracy-first": Weights(accuracy=0.8, energy=0.1, time=0.1),
    "balanced": Weights(accuracy=0.4, energy=0.4, time=0.2),
    "energy-first": Weights(accuracy=0.1, energy=0.8, time=0.1),
}
"""Named weight presets used by the demo and the CLI (``--weights energy-first``)."""


# -- normalisers --------------------------------------------------------------
def minmax(values: Sequence[float]) -> list[float]:
    """``(x - min) / (max - min + eps)``: each axis spans [0, 1]."""
    low, high = min(values), max(values)
    span = high - low + _EPS
    return [(v - low) / span for v in values]


def relative(values: Sequence[float]) -> list[float]:
    """``(x - min) / min``: how much worse than the best, as a fraction.

    When the best is 0 (a clamped prediction, or accuracy 1.0) the ratio is undefined;
    the worst value is the base then, so terms stay in [0, 1].
    """
    low = min(values)
    base = low if low > _EPS else max(max(values), _EPS)
    return [(v - low) / base for v in values]


def hybrid(values: Sequence[float], temperature: float = 3.0) -> list[float]:
    """The original variant's five stages, order-preserving, the right way up, anchored at 0.

    0. add the ideal cost ``min(0, *values)`` as a virtual candidate (dropped at the end), so
       the result keeps how far apart the values are relative to the ideal, not only their shape;
    1. z-score; 2. log (shifted to be defined and monotone); 3. min-max;
    4. softmax amplification (a larger temperature stretches the gap to the leader);
    5. variance rebasing: scale to unit spread and shift the best real value to 0.
    """
    if not values:
        return []
    anchored = [min(0.0, *values), *values]
    n = len(anchored)
    mean = sum(anchored) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in anchored) / n)
    if std <= _EPS * max(1.0, abs(mean)):
        return [0.0] * len(values)
    z = [(v - mean) / std for v in anchored]
    z_min = min(z)
    logged = [math.log1p(v - z_min) for v in z]
    scaled = minmax(logged)
    exps = [math.exp(temperature * v) for v in scaled]
    total = sum(exps)
    soft = [e / total for e in exps]
    s_mean = sum(soft) / n
    s_std = math.sqrt(sum((s - s_mean) ** 2 for s in soft) / n)
    real = soft[1:]
    s_min = min(real)
    if s_std <= 0.0:
        return [0.0] * len(values)
    return [(s - s_min) / s_std for s in real]


NORMALIZERS: dict[str, Normalizer] = {"minmax": minmax, "relative": relative, "hybrid": hybrid}
"""Registry of named normalisers; pass a name or your own callable to the Scheduler."""


def get_normalizer(normalization: str | Normalizer) -> tuple[str, Normalizer]:
    """Resolve a normaliser name or callable to ``(name, function)``."""
    if callable(normalization):
        return getattr(normalization, "__name__", "custom"), normalization
    try:
        return normalization, NORMALIZERS[normalization]
    except KeyError:
        raise ValueError(
            f"Unknown normalization {normalization!r}; choose one of {sorted(NORMALIZERS)} or pass a callable."
        ) from None


def minmax_accuracy(accuracies: Sequence[float]) -> list[float]:
    """``(best - acc) / (best - worst + eps)``: :func:`minmax` of the error rate."""
    return minmax([1.0 - a for a in accuracies])


def relative_accuracy(accuracies: Sequence[float]) -> list[float]:
    """``(best - acc) / best``: the share of the best candidate's correct answers a candidate loses.

    Bounded in [0, 1] and continuous in every accuracy; all zeros when the best accuracy is 0.
    """
    best = max(accuracies)
    if best <= _EPS:
        return [0.0] * len(accuracies)
    return [(best - a) / best for a in accuracies]


def hybrid_accuracy(accuracies: Sequence[float]) -> list[float]:
    """:func:`hybrid` of the error rate ``1 - accuracy``, anchored at a perfect model."""
    return hybrid([1.0 - a for a in accuracies])


ACCURACY_NORMALIZERS: dict[str, AccuracyNormalizer] = {
    "minmax": minmax_accuracy,
    "relative": relative_accuracy,
    "hybrid": hybrid_accuracy,
}
"""The accuracy form of each named normaliser (accuracies in, cost terms out)."""


def get_accuracy_normalizer(normalization: str | Normalizer) -> AccuracyNormalizer:
    """The accuracy form of a normaliser name or callable.

    A name gets its entry of :data:`ACCURACY_NORMALIZERS`; a custom callable is applied
    to the error rates ``1 - accuracy``.

    Raises:
        ValueError: an unknown name.
    """
    if callable(normalization):
        custom = normalization

        def accuracy_form(accuracies: Sequence[float]) -> list[float]:
            return custom([1.0 - a for a in accuracies])

        return accuracy_form
    try:
        return ACCURACY_NORMALIZERS[normalization]
    except KeyError:
        raise ValueError(
            f"Unknown normalization {normalization!r}; choose one of {sorted(NORMALIZERS)} or pass a callable."
        ) from None


# -- constraints --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Constraints:
    """Hard limits on predicted cost; a candidate that breaks one is excluded with the reason."""

    max_runtime_s: float | None = None
    max_energy_j: float | None = None
    min_accuracy: float | None = None
    fit_context_window: bool = True
    """Require prompt tokens plus the output cap (or predicted output) to fit the context window."""

    def __post_init__(self) -> None:
        for name in ("max_runtime_s", "max_energy_j", "min_accuracy"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
                raise ValueError(f"Constraint {name}={value!r} is invalid; give a finite number >= 0 or None.")

    @classmethod
    def coerce(cls, value: Constraints | Mapping[str, Any] | None, default: Constraints) -> Constraints:
        if value is None:
            return default
        if isinstance(value, Constraints):
            return value
        if isinstance(value, Mapping):
            allowed = {f.name for f in fields(cls)}
            unknown = set(value) - allowed
            if unknown:
                raise ValueError(f"Unknown constraint(s) {sorted(unknown)}; known: {sorted(allowed)}.")
            return cls(**value)
        raise ValueError(f"Cannot read constraints from {value!r}; pass Constraints(...) or a dict.")

    def tightened(self, other: Constraints | Mapping[str, Any]) -> Constraints:
        """These limits tightened by ``other``'s: the lower maximum, the higher minimum, and the context-window
        check kept on when either has it on. A mapping counts only the keys it gives (``{}`` changes nothing).

        What a server applies to a client's constraints: a client may tighten the operator's limits, never
        loosen them.

        Raises:
            ValueError: ``other`` has an unknown key or an invalid value.
        """
        given = Constraints.coerce(other, Constraints())
        asks_fit = given.fit_context_window if isinstance(other, Constraints) else other.get("fit_context_window")
        return Constraints(
            max_runtime_s=_stricter(self.max_runtime_s, given.max_runtime_s, min),
            max_energy_j=_stricter(self.max_energy_j, given.max_energy_j, min),
            min_accuracy=_stricter(self.min_accuracy, given.min_accuracy, max),
            fit_context_window=self.fit_context_window or bool(asks_fit),
        )

    def violations(
        self, *, runtime_s: float, energy_j: float, accuracy: float, tokens_needed: float, context_window: int
    ) -> tuple[list[str], float]:
        """Reasons this candidate is excluded, and the summed relative size of the violations."""
        reasons: list[str] = []
        excess = 0.0
        if self.max_runtime_s is not None and runtime_s > self.max_runtime_s:
            reasons.append(f"predicted runtime {runtime_s:.3g} s > max_runtime_s {self.max_runtime_s:g}")
            excess += (runtime_s - self.max_runtime_s) / max(self.max_runtime_s, _EPS)
        if self.max_energy_j is not None and energy_j > self.max_energy_j:
            reasons.append(f"predicted energy {energy_j:.3g} J > max_energy_j {self.max_energy_j:g}")
            excess += (energy_j - self.max_energy_j) / max(self.max_energy_j, _EPS)
        if self.min_accuracy is not None and accuracy < self.min_accuracy:
            reasons.append(f"accuracy {accuracy:.3g} < min_accuracy {self.min_accuracy:g}")
            excess += (self.min_accuracy - accuracy) / max(self.min_accuracy, _EPS)
        if self.fit_context_window and tokens_needed > context_window:
            reasons.append(f"{tokens_needed:.0f} tokens needed > context window {context_window}")
            excess += (tokens_needed - context_window) / context_window
        return reasons, excess


def _stricter(a: float | None, b: float | None, pick: Callable[[float, float], float]) -> float | None:
    """``pick(a, b)`` of the limits that are set (None: no limit)."""
    if a is None or b is None:
        return b if a is None else a
    return pick(a, b)


# -- Pareto filter ------------------------------------------------------------
def dominated_by(costs: Mapping[str, tuple[float, float, float]]) -> dict[str, str]:
    """For each candidate strictly dominated on (accuracy cost, energy, runtime), one dominator.

    A dominates B when A is no worse on all three axes and better on at least one.
    """
    out: dict[str, str] = {}
    items = list(costs.items())
    for name_b, b in items:
        for name_a, a in items:
            if (
                name_a != name_b
                and all(x <= y for x, y in zip(a, b, strict=True))
                and any(x < y for x, y in zip(a, b, strict=True))
            ):
                out[name_b] = name_a
                break
    return out
