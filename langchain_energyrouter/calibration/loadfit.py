"""Fit a :class:`~langchain_energyrouter.profile.LoadModel`: how one request's cost changes with load.

Two sources of measurements:

* **A serving curve** (:func:`fit_load_curve`): per-token energy and inter-token
  latency of one model at several batch sizes (the ML.ENERGY figures, or an
  engine's own benchmark). The physical forms are fitted by bounded least squares
  (``scipy.optimize.lsq_linear``)::

      energy per token   e(b) = A + C / b      A, C >= 0  (C: fixed power shared by the batch)
      inter-token latency t(b) = t0 + t1 * b    t0, t1 >= 0 (each extra sequence adds work)

  and mapped *exactly* onto the LoadModel's relative form at a reference load
  ``r`` (see :func:`load_model_from_curves`)::

      runtime_per_request = t1 / (t0 + t1 * r)
      energy_fixed_share  = (C / r) / (A + C / r)

  so ``cost(r) * factors(n)`` reproduces ``e(n)`` and ``t(n)`` for every ``n``.

* **Calibration rows** (:func:`fit_load_model`): the raw CSV of ``calibrate
  --concurrency 1,2,4``, one row per request with its ``in_flight`` count. Each
  row at load ``n`` is divided by the mean cost of the same design cell (input
  and output length) at the reference load, and the ratios are fitted with a
  robust (soft-L1) loss, as timings on a shared machine have a heavy right tail::

      runtime ratio - 1 = runtime_per_request * (n - ref)            (>= 0)
      energy ratio  - 1 = -energy_fixed_share * (1 - ref / n)        (in [0, 1])

  Held-out error comes from folds grouped by design cell (a cell's repetitions
  are never on both sides).

Bounds that bind are reported in ``FitStats.constrained`` (e.g. an energy ratio that
*rises* with load, which the form cannot describe, gives share 0 and says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import FitStats, LoadModel, ModelProfile

if TYPE_CHECKING:
    import pandas as pd

IN_FLIGHT_COLUMN = "in_flight"
"""Raw-CSV column: requests in flight on the model while the row's request ran (this one included)."""

DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class LoadCurves:
    """The absolute forms fitted on one serving curve (units as given, e.g. J/token and ms)."""

    energy_a: float
    """``A`` of ``e(b) = A + C/b``: energy per token that does not shrink with the batch."""
    energy_c: float
    """``C`` of ``e(b) = A + C/b``: fixed power per token step, shared by the batch."""
    latency_t0: float
    """``t0`` of ``t(b) = t0 + t1*b``."""
    latency_t1: float
    """``t1`` of ``t(b) = t0 + t1*b``: latency added per request in the batch."""
    constrained: tuple[str, ...] = ()
    """Names of the coefficients held at a bound."""

    def energy(self, batch: float) -> float:
        """Energy per token at ``batch`` requests in flight."""
        return self.energy_a + self.energy_c / batch

    def latency(self, batch: float) -> float:
        """Inter-token latency at ``batch`` requests in flight."""
        return self.latency_t0 + self.latency_t1 * batch


def _bounded_lstsq(
    design: Sequence[Sequence[float]], target: Sequence[float], lower: Sequence[float], upper: Sequence[float]
) -> tuple[list[float], list[bool]]:
    """Least squares with box bounds; returns (coefficients, which hit a bound)."""
    import numpy as np
    from scipy.optimize import lsq_linear

    a = np.asarray(design, dtype=float)
    y = np.asarray(target, dtype=float)
    result = lsq_linear(a, y, bounds=(np.asarray(lower, float), np.asarray(upper, float)), method="bvls")
    coef = [float(v) for v in result.x]
    # bvls reports active constraints: -1 at the lower bound, +1 at the upper one.
    active = [bool(v != 0) for v in result.active_mask]
    return coef, active


def fit_load_curve(
    batch_sizes: Sequence[float], energy_per_token: Sequence[float], latency: Sequence[float]
) -> LoadCurves:
    """Fit ``e(b) = A + C/b`` and ``t(b) = t0 + t1*b`` with all coefficients >= 0.

    Each form is fitted in relative error (rows divided by the measurement), so a
    batch of 512 does not outweigh a batch of 8 by the size of its numbers.

    Raises:
        CalibrationError: fewer than two distinct batch sizes, or a non-positive value.
    """
    rows = list(zip(batch_sizes, energy_per_token, latency, strict=True))
    if len({b for b, _e, _t in rows}) < 2:
        raise CalibrationError(
            f"A load curve needs at least two distinct batch sizes, got {sorted({b for b, _e, _t in rows})}; "
            "measure at more concurrency levels."
        )
    bad = [(b, e, t) for b, e, t in rows if not (b > 0 and e > 0 and t > 0)]
    if bad:
        raise CalibrationError(f"Load-curve rows must be positive (batch, energy, latency); got {bad[:3]}.")
    inf = math.inf
    # relative least squares: divide each row (design and target) by its measurement
    energy_coef, energy_active = _bounded_lstsq(
        [[1.0 / e, 1.0 / (b * e)] for b, e, _t in rows], [1.0] * len(rows), [0.0, 0.0], [inf, inf]
    )
    latency_coef, latency_active = _bounded_lstsq(
        [[1.0 / t, b / t] for b, _e, t in rows], [1.0] * len(rows), [0.0, 0.0], [inf, inf]
    )
    names = ("energy_a", "energy_c", "latency_t0", "latency_t1")
    constrained = tuple(n for n, hit in zip(names, energy_active + latency_active, strict=True) if hit)
    return LoadCurves(energy_coef[0], energy_coef[1], latency_coef[0], latency_coef[1], constrained)


def load_model_from_curves(
    curves: LoadCurves, reference_load: float, max_load: float | None = None, fit: FitStats | None = None
) -> LoadModel:
    """The :class:`LoadModel` equivalent to ``curves`` around ``reference_load``.

    The mapping is exact: ``curves.energy(ref) * energy_factor(n) == curves.energy(n)`` and
    likewise for latency, so the choice of reference changes only what the profile's cost
    models mean (the cost of a request at ``ref`` requests in flight), not the predictions.

    Raises:
        CalibrationError: ``reference_load`` is not positive, or the curves predict zero cost there.
    """
    if not reference_load > 0:
        raise CalibrationError(f"reference_load {reference_load} must be > 0 (requests in flight).")
    latency_ref = curves.latency(reference_load)
    energy_ref = curves.energy(reference_load)
    if not (latency_ref > 0 and energy_ref > 0):
        raise CalibrationError(
            f"The fitted curves predict zero cost at load {reference_load} (latency {latency_ref}, "
            f"energy {energy_ref}); the measurements cannot anchor a relative load model."
        )
    return LoadModel(
        runtime_per_request=curves.latency_t1 / latency_ref,
        energy_fixed_share=min(1.0, (curves.energy_c / reference_load) / energy_ref),
        reference_load=reference_load,
        max_load=max_load,
        fit=fit,
    )


# -- calibration rows ---------------------------------------------------------------
@dataclass(frozen=True)
class _Ratios:
    load: list[float]
    runtime: list[float]
    energy: list[float]
    group: list[str]
    runtime_ref: list[float]
    energy_ref: list[float]
    measured_runtime: list[float]
    measured_energy: list[float]


def load_levels(frame: pd.DataFrame) -> list[float]:
    """The distinct ``in_flight`` values of a raw frame (``[1.0]`` when the column is absent)."""
    if IN_FLIGHT_COLUMN not in frame.columns:
        return [1.0]
    return sorted({float(v) for v in frame[IN_FLIGHT_COLUMN].fillna(1)})


def at_reference_load(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows measured at the smallest load: what the runtime/energy cost models are fitted on."""
    if IN_FLIGHT_COLUMN not in frame.columns:
        return frame
    loads = frame[IN_FLIGHT_COLUMN].fillna(1).astype(float)
    return frame.loc[loads == loads.min()].reset_index(drop=True)


def _ratios(frame: pd.DataFrame, reference: float) -> _Ratios:
    loads = frame[IN_FLIGHT_COLUMN].fillna(1).astype(float)
    key = frame["input_tokens"].astype(float).astype(str) + "/" + frame["output_tokens"].astype(float).astype(str)
    at_ref = loads == reference
    ref_runtime = frame.loc[at_ref].groupby(key[at_ref])["runtime_seconds"].mean()
    ref_energy = frame.loc[at_ref].groupby(key[at_ref])["energy_joules"].mean()
    out = _Ratios([], [], [], [], [], [], [], [])
    for i in range(len(frame)):
        cell = key.iloc[i]
        if loads.iloc[i] == reference or cell not in ref_runtime.index:
            continue
        runtime, energy = float(frame["runtime_seconds"].iloc[i]), float(frame["energy_joules"].iloc[i])
        out.load.append(float(loads.iloc[i]))
        out.runtime.append(runtime / float(ref_runtime[cell]))
        out.energy.append(energy / float(ref_energy[cell]))
        out.group.append(cell)
        out.runtime_ref.append(float(ref_runtime[cell]))
        out.energy_ref.append(float(ref_energy[cell]))
        out.measured_runtime.append(runtime)
        out.measured_energy.append(energy)
    return out


ROBUST_SCALE = 0.1
"""Residual (in ratio units) beyond which the robust loss grows linearly, not quadratically."""


def _fit_ratios(
    load: Sequence[float], runtime: Sequence[float], energy: Sequence[float], ref: float
) -> tuple[float, float, list[str]]:
    """Robust (soft-L1) bounded fit of both ratios; returns (per_request, share, coefficients at a bound).

    Timings on a shared machine have a heavy right tail (another process takes the cores for
    a moment), so a squared loss lets one slow batch set the slope; soft-L1 with scale
    :data:`ROBUST_SCALE` treats residuals beyond 10% almost like absolute errors.
    """
    import numpy as np
    from scipy.optimize import least_squares

    n = np.asarray(load, dtype=float)
    runtime_ratio = np.asarray(runtime, dtype=float)
    energy_ratio = np.asarray(energy, dtype=float)

    def runtime_residual(x: Any) -> Any:
        return 1.0 + x[0] * (n - ref) - runtime_ratio

    def energy_residual(x: Any) -> Any:
        return (1.0 - x[0]) + x[0] * ref / n - energy_ratio

    options: dict[str, Any] = {"loss": "soft_l1", "f_scale": ROBUST_SCALE, "method": "trf"}
    r_fit = least_squares(runtime_residual, [0.1], bounds=([0.0], [np.inf]), **options)
    s_fit = least_squares(energy_residual, [0.5], bounds=([0.0], [1.0]), **options)
    # trf stops a hair inside a binding bound: put it on the bound
    per_request = 0.0 if r_fit.active_mask[0] != 0 else float(r_fit.x[0])
    share = float(s_fit.x[0]) if s_fit.active_mask[0] == 0 else (0.0 if s_fit.active_mask[0] < 0 else 1.0)
    constrained = [
        name
        for name, active in (
            ("runtime_per_request", r_fit.active_mask[0]),
            ("energy_fixed_share", s_fit.active_mask[0]),
        )
        if active != 0
    ]
    return per_request, share, constrained


def fit_load_model(frame: pd.DataFrame, *, folds: int = DEFAULT_FOLDS, seed: int = 0) -> LoadModel | None:
    """Fit the load model from raw rows measured at several ``in_flight`` levels.

    Args:
        frame: validated raw rows (``read_raw(...).frame``) with an ``in_flight`` column.
        folds: folds for the held-out error, grouped by design cell (fewer when there are fewer cells).
        seed: how cells are dealt to folds.

    Returns:
        The load model (reference load = the smallest level, max load = the largest), or
        ``None`` when the rows hold a single level (nothing to fit: the cost does not vary).

    Raises:
        CalibrationError: several levels but no design cell measured at both the reference
            load and another one.
    """
    import random

    levels = load_levels(frame)
    if len(levels) < 2:
        return None
    reference = levels[0]
    data = _ratios(frame, reference)
    if not data.load:
        raise CalibrationError(
            f"Rows at loads {levels} share no (input, output) length with the reference load {reference}; "
            "measure the same grid cells at every --concurrency level."
        )
    per_request, share, constrained = _fit_ratios(data.load, data.runtime, data.energy, reference)

    # held-out: deal cells (not rows) to folds
    cells = sorted(set(data.group))
    random.Random(seed).shuffle(cells)
    k = max(2, min(folds, len(cells)))
    fold_of = {cell: i % k for i, cell in enumerate(cells)}
    pred_runtime = [math.nan] * len(data.load)
    pred_energy = [math.nan] * len(data.load)
    if len(cells) >= 2:
        for fold in range(k):
            train = [i for i, g in enumerate(data.group) if fold_of[g] != fold]
            test = [i for i, g in enumerate(data.group) if fold_of[g] == fold]
            if not train or not test:
                continue
            r, s, _c = _fit_ratios(
                [data.load[i] for i in train],
                [data.runtime[i] for i in train],
                [data.energy[i] for i in train],
                reference,
            )
            for i in test:
                n = data.load[i]
                pred_runtime[i] = data.runtime_ref[i] * (1.0 + r * (n - reference))
                pred_energy[i] = data.energy_ref[i] * ((1.0 - s) + s * reference / n)
    held = [i for i in range(len(data.load)) if not math.isnan(pred_runtime[i])]
    mape = bias = None
    cv = None
    if held:
        errors = [abs(pred_runtime[i] / data.measured_runtime[i] - 1.0) for i in held]
        errors += [abs(pred_energy[i] / data.measured_energy[i] - 1.0) for i in held]
        mape = sum(errors) / len(errors)
        bias = (sum(pred_runtime[i] for i in held) + 0.0) / sum(data.measured_runtime[i] for i in held)
        cv = f"{k} folds grouped by (input, output) length cell"
    r2 = _r_squared(
        [*data.runtime, *data.energy],
        [1.0 + per_request * (n - reference) for n in data.load]
        + [(1.0 - share) + share * reference / n for n in data.load],
    )
    energy_bias = sum(pred_energy[i] for i in held) / sum(data.measured_energy[i] for i in held) if held else math.nan
    note = (
        f"Ratios to the same cell at load {reference:g}, {len(data.load)} rows at loads {levels[1:]}; "
        f"mape_holdout averages runtime and energy, bias_holdout is runtime's "
        f"(energy's: {energy_bias:.3f})."
        if held
        else f"Ratios to the same cell at load {reference:g}, {len(data.load)} rows; one cell, no held-out error."
    )
    stats = FitStats(
        n=len(data.load),
        r_squared=r2,
        mape_holdout=mape,
        folds=k if held else None,
        bias_holdout=bias,
        cv=cv,
        constrained=constrained,
        note=note,
    )
    return LoadModel(
        runtime_per_request=per_request,
        energy_fixed_share=min(max(share, 0.0), 1.0),
        reference_load=reference,
        max_load=levels[-1],
        fit=stats,
    )


def _r_squared(measured: Sequence[float], predicted: Sequence[float]) -> float | None:
    if len(measured) < 2:
        return None
    mean = sum(measured) / len(measured)
    total = sum((m - mean) ** 2 for m in measured)
    if total == 0:
        return None
    residual = sum((m - p) ** 2 for m, p in zip(measured, predicted, strict=True))
    return 1.0 - residual / total


def with_load_model(
    entry: ModelProfile, frame: pd.DataFrame, *, seed: int = 0, warn: Callable[[str], None] | None = None
) -> ModelProfile:
    """``entry`` (a :class:`~langchain_energyrouter.profile.ModelProfile`) with its load model fitted
    from ``frame`` when the rows hold more than one load level; else ``entry`` unchanged.

    Use it after fitting the cost models on :func:`at_reference_load` rows::

        mp, _ = fit_model(name, RawData(at_reference_load(raw.frame), ...), ...)
        mp = with_load_model(mp, raw.frame)
    """
    load = fit_load_model(frame, seed=seed)
    if load is None:
        return entry
    if warn is not None and load.fit is not None and load.fit.constrained:
        warn(
            f"load model: {', '.join(load.fit.constrained)} held at a bound (the measurements do not follow "
            "the form there; e.g. energy per request rising with load gives a fixed share of 0)"
        )
    return entry.model_copy(update={"load": load})
