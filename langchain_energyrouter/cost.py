"""Per-model cost prediction: output tokens, runtime_s, energy_j (hot path: stdlib only).

The arithmetic lives here once. :class:`~langchain_energyrouter.profile.ModelProfile`
calls it for one-off predictions; the scheduler compiles each profile entry into a
:class:`CompiledModel` (plain floats and tuples, no pydantic attribute chains) and
calls the same functions per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

Coefficients = tuple[float, float, float, float]
"""``(b0, b1, b2, b3)`` of ``y = b0 + b1*tin + b2*tout + b3*tin*tout``."""

_NO_FLAGS: tuple[str, ...] = ()


def linear_cost(b: Coefficients, input_tokens: float, output_tokens: float) -> float:
    """``b0 + b1*tin + b2*tout + b3*tin*tout``, unclamped (negative when extrapolating badly)."""
    return b[0] + b[1] * input_tokens + b[2] * output_tokens + b[3] * input_tokens * output_tokens


def predict_costs(
    runtime: Coefficients, energy: Coefficients, input_tokens: float, output_tokens: float
) -> tuple[float, float, tuple[str, ...]]:
    """Runtime (s) and energy (J); negative predictions are clamped to 0 and flagged."""
    runtime_s = linear_cost(runtime, input_tokens, output_tokens)
    energy_j = linear_cost(energy, input_tokens, output_tokens)
    if runtime_s >= 0.0 and energy_j >= 0.0:
        return runtime_s, energy_j, _NO_FLAGS
    flags: tuple[str, ...] = ()
    if runtime_s < 0.0:
        runtime_s, flags = 0.0, ("runtime_clamped",)
    if energy_j < 0.0:
        energy_j, flags = 0.0, (*flags, "energy_clamped")
    return runtime_s, energy_j, flags


def predict_output_tokens(
    intercept: float,
    slope: float,
    by_task: Mapping[str, float],
    fit_cap: int | None,
    input_tokens: float,
    max_output_tokens: int | None,
    task_type: str | None,
) -> float:
    """Output tokens: per task type where known, else ``intercept + slope*tin``; capped, at least 1."""
    if task_type is not None and task_type in by_task:
        tout = by_task[task_type]
    else:
        tout = intercept + slope * input_tokens
    if fit_cap is not None and tout > fit_cap:
        tout = fit_cap
    if max_output_tokens is not None and tout > max_output_tokens:
        tout = max_output_tokens
    return tout if tout > 1.0 else 1.0


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
