"""Fit the profile's runtime and energy cost models from raw rows (statsmodels, scipy).

Cross-validation folds and the held-out bias are in
:mod:`~langchain_energyrouter.calibration.folds`, the output-length fit in
:mod:`~langchain_energyrouter.calibration.lengthfit`, and :func:`fit_model`, which
combines them into a profile entry, in :mod:`~langchain_energyrouter.calibration.profilefit`.

Runtime and energy are fitted in the linear form the scheduler evaluates::

    y = b0 + b1 * tin + b2 * tout [+ b3 * tin * tout]

What a router needs from these fits decides how they are made and chosen:

Unbiased on average.
    The router adds up joules and seconds over many requests, so the sum of its
    predictions must match the sum of what is measured. Every candidate is scored on
    held-out rows by ``bias`` = summed predictions / summed measurements, next to the
    mean absolute percentage error (MAPE). MAPE alone rewards under-prediction of
    right-skewed costs: the MAPE minimiser is a (weighted) *median*, below the mean.
Physically sane.
    One more token never costs less: the per-token slopes ``b1, b2, b3`` are held
    ``>= 0``. For least squares this is exact non-negative least squares on those
    columns (``scipy.optimize.lsq_linear``; the intercept stays free); the solution is
    ordinary least squares on the columns left free, so statsmodels refits those for
    the confidence intervals. A negative free slope on observational data (traces) is a
    confound, e.g. long prompts recorded while the GPU was less loaded, not physics.
    Slopes held at 0 are listed in ``FitStats.constrained`` and the note.

Candidates (:data:`ESTIMATORS`, each with and without the interaction term, all
sign-constrained):

``ols``
    Least squares. With a free intercept its in-sample residuals sum to zero, so it is
    unbiased on the rows it was fitted on by construction.
``wls_rel``
    Weighted least squares with weights ``1 / y**2`` (squared *relative* error).
``lad_rel``
    Least absolute relative error (median regression of ``1`` on ``x / y``): the exact
    MAPE minimiser. The sign constraint drops the most negative slope and refits until
    none is negative.

**Selection rule** (:func:`select_candidate`): among candidates whose held-out bias is
within :data:`BIAS_TOLERANCE` (2%) of 1, the lowest held-out MAPE; when none is, the
least ``|bias - 1|``. Bias comes first because it is what a sum of decisions inherits
(a 10% low energy model makes every energy budget 10% optimistic), and MAPE only
breaks ties between fits that are right on average. Two percent is about the spread of
held-out bias that sampling alone gives least squares on a few hundred rows of costs
with a 20-30% coefficient of variation, so it does not reject a sound fit for noise,
while the relative-error estimators on skewed costs sit well outside it (5-15% low on
the original traces) and can only win where costs are not skewed (e.g. a clean
calibration grid), which is where their lower MAPE is real.

**Cross-validation** (grouped by design cell, or blocked in time order) is described
in :mod:`~langchain_energyrouter.calibration.folds`.

**Conditioning**: the condition number of the design with each column scaled to unit
length (Belsley, Kuh & Welsch's scaling, intercept included) is recorded; above
:data:`CONDITION_WARN` (1e3) a warning says the inputs are nearly collinear. The
relative error of the coefficients can be up to the condition number times the relative
error of the data; with measurement noise of a few tenths of a percent at best, 1e3
means a coefficient (and its sign) can be wholly wrong. Designs of this form with an
intercept and an interaction routinely reach 30-150 with every coefficient well
determined (the recoded traces: 8-113; the default calibration grid: about 40), so
Belsley's "30" would cry wolf on every fit.

"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.calibration.folds import (
    BIAS_TOLERANCE,
    CV_TEXT,
    DEFAULT_FOLDS,
    make_folds,
    resolve_scheme,
    summed_ratio,
)
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import CostModel, FitStats

if TYPE_CHECKING:
    import numpy as np

COEFFICIENTS: tuple[str, ...] = ("intercept", "input_tokens", "output_tokens", "interaction")
ESTIMATORS: tuple[str, ...] = ("ols", "wls_rel", "lad_rel")
"""Estimators tried by default, in order of preference on a tie."""
CONDITION_WARN = 1e3
"""Warn when the column-scaled design's condition number exceeds this."""


@dataclass(frozen=True)
class CandidateFit:
    """One estimator's fit and its held-out error and bias."""

    estimator: str
    interaction: bool
    params: tuple[float, float, float, float]
    """b0, b1, b2, b3 (b3 is 0 without the interaction term; a constrained slope is 0)."""
    cv_mape: float
    r_squared: float
    conf_int: dict[str, tuple[float, float]]
    """Of the coefficients left free; empty when the estimator gives none (lad_rel)."""
    n: int
    cv_bias: float = 1.0
    """Summed held-out predictions / summed held-out measurements."""
    constrained: tuple[str, ...] = ()
    """Slopes held at 0 by the sign constraint (in every fold and in the final fit)."""
    condition_number: float = 1.0
    """Of the column-scaled design (all columns of the form, before any was held at 0)."""

    @property
    def label(self) -> str:
        return f"{self.estimator}{'+interaction' if self.interaction else ''}"


# -- cost models ----------------------------------------------------------------
def _design(tin: np.ndarray, tout: np.ndarray, interaction: bool) -> np.ndarray:
    import numpy as np

    columns = [np.ones_like(tin), tin, tout]
    if interaction:
        columns.append(tin * tout)
    return np.column_stack(columns)


def scaled_condition_number(x: np.ndarray) -> float:
    """Condition number of ``x`` with every column scaled to unit length (inf when a column is all zero)."""
    import numpy as np

    norms = np.linalg.norm(x, axis=0)
    if np.any(norms == 0):
        return math.inf
    return float(np.linalg.cond(x / norms))


def _statsmodels_fit(estimator: str, x: np.ndarray, y: np.ndarray) -> Any:
    """Fit one estimator on the given columns; a statsmodels results object."""
    import numpy as np
    import statsmodels.api as sm

    if estimator == "ols":
        return sm.OLS(y, x).fit()
    if estimator == "wls_rel":
        return sm.WLS(y, x, weights=1.0 / (y * y)).fit()
    if estimator == "lad_rel":
        # min sum |y - x b| / y  ==  min sum |1 - (x / y) b|: median regression of 1 on x / y.
        return sm.QuantReg(np.ones_like(y), x / y[:, None]).fit(q=0.5, max_iter=2000)
    raise CalibrationError(f"Unknown estimator {estimator!r}; choose from {list(ESTIMATORS)}.")


def _active_slopes(estimator: str, x: np.ndarray, y: np.ndarray) -> list[int]:
    """Columns (never 0, the intercept) that non-negative least squares holds at 0."""
    import numpy as np
    from scipy.optimize import lsq_linear

    if estimator == "wls_rel":
        x, y = x / y[:, None], np.ones_like(y)
    norms = np.linalg.norm(x, axis=0)
    norms[norms == 0] = 1.0
    lower = np.full(x.shape[1], 0.0)
    lower[0] = -np.inf
    result = lsq_linear(x / norms, y, bounds=(lower, np.inf), method="bvls")
    return [j for j in range(1, x.shape[1]) if result.active_mask[j] != 0 or result.x[j] <= 0.0]


def fit_constrained(
    estimator: str, x: np.ndarray, y: np.ndarray, *, nonnegative: bool = True
) -> tuple[np.ndarray, Any, list[int]]:
    """Fit with slopes (columns 1..) held ``>= 0``.

    Returns:
        Full coefficient vector (held slopes are 0), the statsmodels result of the fit on the
        free columns, and the held column indices.
    """
    import numpy as np

    free = list(range(x.shape[1]))
    result = _statsmodels_fit(estimator, x, y)
    params = np.asarray(result.params, dtype=float)
    if nonnegative and np.any(params[1:] < 0):
        if estimator in ("ols", "wls_rel"):
            # Exact NNLS on the slopes; its solution is plain least squares on the columns left free.
            held = set(_active_slopes(estimator, x, y))
            free = [j for j in free if j not in held]
            result = _statsmodels_fit(estimator, x[:, free], y)
        else:
            while True:
                values = np.asarray(result.params, dtype=float)
                scale = np.linalg.norm(x[:, free], axis=0)
                # The most negative slope in units of its column's contribution goes first.
                negative = [(values[i] * scale[i], j) for i, j in enumerate(free) if j != 0 and values[i] < 0]
                if not negative:
                    break
                free.remove(min(negative)[1])
                result = _statsmodels_fit(estimator, x[:, free], y)
        params = np.zeros(x.shape[1])
        params[free] = np.asarray(result.params, dtype=float)
    held_columns = [j for j in range(x.shape[1]) if j not in free]
    return params, result, held_columns


def fit_candidate(
    estimator: str,
    interaction: bool,
    tin: np.ndarray,
    tout: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    cv: str = "blocked",
    groups: Sequence[str] | None = None,
    nonnegative: bool = True,
) -> CandidateFit:
    """Fit one estimator on all rows; score it by held-out MAPE and bias over ``cv`` folds.

    ``folds=0`` scores it on the rows it was fitted on (the fallback when there are too few rows to hold
    any out): its ``cv_mape`` and ``cv_bias`` are in-sample then.
    """
    import numpy as np

    # Imported before the filter below: on import statsmodels puts an "always" filter for its own warnings in
    # front of the list, which would otherwise beat the "ignore" and leak SingularMatrixWarning to the user.
    import statsmodels.api  # noqa: F401

    x = _design(tin, tout, interaction)
    pred = np.full_like(y, np.nan)
    held_anywhere: set[int] = set()
    with warnings.catch_warnings():
        # QuantReg's iteration/convergence chatter and statsmodels' singular-matrix warnings of tiny designs:
        # CV judges the result, and an ill-conditioned design is reported (condition number) by the caller.
        warnings.simplefilter("ignore")
        for train, test in make_folds(len(y), folds, cv, groups=groups, seed=seed) if folds else ():
            params, _result, _held = fit_constrained(estimator, x[train], y[train], nonnegative=nonnegative)
            pred[test] = np.maximum(x[test] @ params, 0.0)  # the scheduler clamps negatives too
        params, result, held = fit_constrained(estimator, x, y, nonnegative=nonnegative)
        ci = np.asarray(result.conf_int(0.05))
        if not folds:
            pred = np.maximum(x @ params, 0.0)
    held_anywhere.update(held)
    tested = ~np.isnan(pred)
    resid = y - x @ params
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 0.0
    names = COEFFICIENTS if interaction else COEFFICIENTS[:3]
    free_names = [name for j, name in enumerate(names) if j not in held]
    # QuantReg's kernel bandwidth comes from the spread of its (constant) endog: no CI for lad_rel.
    conf = {
        name: (float(lo), float(hi))
        for name, (lo, hi) in zip(free_names, ci, strict=True)
        if np.isfinite([lo, hi]).all()
    }
    full = [float(p) for p in params]
    return CandidateFit(
        estimator=estimator,
        interaction=interaction,
        params=(full[0], full[1], full[2], full[3] if interaction else 0.0),
        cv_mape=float(np.mean(np.abs(pred[tested] - y[tested]) / y[tested])),
        r_squared=r2,
        conf_int=conf,
        n=len(y),
        cv_bias=summed_ratio(pred[tested], y[tested]),
        constrained=tuple(names[j] for j in sorted(held_anywhere)),
        condition_number=scaled_condition_number(x),
    )


def select_candidate(
    candidates: Sequence[CandidateFit], tolerance: float = BIAS_TOLERANCE, order: Sequence[str] = ()
) -> tuple[list[CandidateFit], str]:
    """Order candidates by the selection rule (module docstring); best first, and why it won.

    Args:
        candidates: scored fits.
        tolerance: largest ``|bias - 1|`` counted as unbiased.
        order: labels in order of preference on exact ties.
    """
    rank = {label: i for i, label in enumerate(order)}

    def key(c: CandidateFit) -> tuple[int, float, float, int]:
        off = abs(c.cv_bias - 1.0)
        unbiased = off <= tolerance
        return (
            0 if unbiased else 1,
            round(c.cv_mape, 12) if unbiased else round(off, 12),
            round(off, 12),
            rank.get(c.label, len(rank)),
        )

    ranked = sorted(candidates, key=key)
    best = ranked[0]
    if abs(best.cv_bias - 1.0) <= tolerance:
        why = f"lowest held-out MAPE among candidates with held-out bias within {tolerance:.0%} of 1"
    else:
        why = f"least held-out |bias - 1| (no candidate within {tolerance:.0%} of 1)"
    return ranked, why


def fit_cost_model(
    tin: np.ndarray,
    tout: np.ndarray,
    y: np.ndarray,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    interaction: Sequence[bool] = (True, False),
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    rows_dropped: int = 0,
    what: str = "runtime",
    cv: str = "auto",
    groups: Sequence[str] | None = None,
    nonnegative: bool = True,
    bias_tolerance: float = BIAS_TOLERANCE,
    warn: Callable[[str], None] | None = None,
) -> tuple[CostModel, list[CandidateFit]]:
    """Fit every (estimator, interaction) candidate and keep one by the selection rule.

    Args:
        tin, tout, y: input tokens, output tokens and the target (seconds or joules), all y > 0.
            Rows in recorded (time) order unless ``groups`` is given.
        estimators: names from :data:`ESTIMATORS`; ``("ols",)`` for least squares only.
        interaction: which forms to try (with and/or without ``tin * tout``).
        folds: k of k-fold cross-validation.
        seed: shuffles the groups of grouped folds (time order is never shuffled).
        rows_dropped: unusable rows, recorded in ``FitStats.rows_dropped``.
        what: e.g. ``"phi-3 runtime"``, for messages.
        cv: ``auto`` (grouped when ``groups`` has keys, else blocked), or a :data:`CvScheme`.
        groups: a group key per row (e.g. :func:`cell_groups` of the design cells).
        nonnegative: hold ``b1, b2, b3 >= 0`` (the default; False only for comparisons).
        bias_tolerance: see :func:`select_candidate`.
        warn: called with a message when the design is ill-conditioned.

    Returns:
        The chosen :class:`CostModel` (with :class:`FitStats`) and every candidate, best first.

    Raises:
        CalibrationError: too few rows, or every candidate failed.
    """
    import numpy as np

    n = len(y)
    if n < 3:
        raise CalibrationError(f"Only {n} usable rows for the {what} fit; at least 3 are needed. Measure more.")
    scheme = resolve_scheme(cv, groups)
    folds = max(2, min(folds, n))
    if scheme == "grouped" and groups is not None:
        folds = min(folds, len(set(groups)))
    candidates: list[CandidateFit] = []
    failures: list[str] = []
    for est in estimators:
        for ix in interaction:
            label = f"{est}{'+interaction' if ix else ''}"
            p = 4 if ix else 3
            smallest_train = n - -(-n // folds) if scheme != "forward" else n // (folds + 1)
            if smallest_train <= p:
                failures.append(f"{label}: too few rows ({n}) for {folds}-fold CV")
                continue
            if ix and np.ptp(tin) == 0:
                failures.append(f"{label}: input length never varies, interaction not identifiable")
                continue
            try:
                candidate = fit_candidate(
                    est, ix, tin, tout, y, folds=folds, seed=seed, cv=scheme, groups=groups, nonnegative=nonnegative
                )
            except (np.linalg.LinAlgError, ValueError) as err:
                failures.append(f"{label}: {err}")
                continue
            if np.isfinite([candidate.cv_mape, candidate.cv_bias]).all() and all(np.isfinite(candidate.params)):
                candidates.append(candidate)
    if not candidates and all("for " in f and "-fold CV" in f for f in failures) and n >= 3:
        return _fit_without_cv(tin, tout, y, what=what, rows_dropped=rows_dropped, nonnegative=nonnegative, warn=warn)
    if not candidates:
        raise CalibrationError(f"No {what} fit succeeded: {'; '.join(failures)}.")
    preference = [f"{e}{'+interaction' if ix else ''}" for e in estimators for ix in interaction]
    candidates, why = select_candidate(candidates, bias_tolerance, preference)
    best = candidates[0]
    listing = ", ".join(f"{c.label} {c.cv_mape:.4f}/{c.cv_bias:.3f}" for c in candidates)
    baseline = _plain_ols_baseline(tin, tout, y, best.interaction, folds, seed, scheme, groups)
    held = (
        f" Sign constraint: {', '.join(best.constrained)} held at 0 (the free fit made them negative:"
        " one more token never costs less)."
        if best.constrained
        else " No slope needed the sign constraint."
    )
    note = (
        f"Chose {best.label} by {why}; {folds}-fold CV, {CV_TEXT[scheme]}. "
        f"Candidates (held-out MAPE/bias): {listing}.{held}{baseline}"
        + (f" Skipped: {'; '.join(failures)}." if failures else "")
        + (" r_squared is unweighted, on the fitted rows." if best.estimator != "ols" else "")
        + ("" if best.conf_int else " No confidence intervals for this estimator.")
    )
    if best.condition_number > CONDITION_WARN and warn is not None:
        warn(
            f"{what}: the design is ill-conditioned (condition number {best.condition_number:.3g} with columns "
            f"scaled to unit length, above {CONDITION_WARN:.0e}): input and output lengths (or their product) are "
            "nearly collinear, so the coefficients are unreliable. Measure with input and output lengths varied "
            "independently (`energyrouter calibrate` does)."
        )
    b0, b1, b2, b3 = best.params
    model = CostModel(
        intercept=b0,
        input_tokens=b1,
        output_tokens=b2,
        interaction=b3,
        uses_interaction=best.interaction,
        input_range=(float(np.min(tin)), float(np.max(tin))),
        output_range=(float(np.min(tout)), float(np.max(tout))),
        fit=FitStats(
            n=best.n,
            r_squared=best.r_squared,
            mape_holdout=best.cv_mape,
            bias_holdout=best.cv_bias,
            folds=folds,
            cv=CV_TEXT[scheme],
            rows_dropped=rows_dropped,
            conf_int=best.conf_int or None,
            condition_number=best.condition_number if math.isfinite(best.condition_number) else None,
            constrained=list(best.constrained),
            note=note,
        ),
    )
    return model, candidates


def _fit_without_cv(
    tin: np.ndarray,
    tout: np.ndarray,
    y: np.ndarray,
    *,
    what: str,
    rows_dropped: int,
    nonnegative: bool,
    warn: Callable[[str], None] | None,
) -> tuple[CostModel, list[CandidateFit]]:
    """Too few rows to hold any out: least squares without the interaction term on all rows, said so."""
    import numpy as np

    fit = fit_candidate("ols", False, tin, tout, y, folds=0, nonnegative=nonnegative)
    note = (
        f"Too few rows ({len(y)}) to cross-validate any candidate; fell back to least squares without the "
        "interaction term on all rows. Its error and bias are in-sample (no held-out rows): measure more rows "
        "for a chosen, cross-validated fit."
    )
    if warn is not None:
        warn(f"{what}: {note}")
    b0, b1, b2, _ = fit.params
    model = CostModel(
        intercept=b0,
        input_tokens=b1,
        output_tokens=b2,
        interaction=0.0,
        uses_interaction=False,
        input_range=(float(np.min(tin)), float(np.max(tin))),
        output_range=(float(np.min(tout)), float(np.max(tout))),
        fit=FitStats(
            n=fit.n,
            r_squared=fit.r_squared,
            rows_dropped=rows_dropped,
            conf_int=fit.conf_int or None,
            constrained=list(fit.constrained),
            note=note,
        ),
    )
    return model, [fit]


def _plain_ols_baseline(
    tin: np.ndarray,
    tout: np.ndarray,
    y: np.ndarray,
    interaction: bool,
    folds: int,
    seed: int,
    scheme: str,
    groups: Sequence[str] | None,
) -> str:
    """One sentence on unconstrained OLS of the chosen form: its slopes and held-out MAPE/bias."""
    import numpy as np

    try:
        free = fit_candidate(
            "ols", interaction, tin, tout, y, folds=folds, seed=seed, cv=scheme, groups=groups, nonnegative=False
        )
    except (np.linalg.LinAlgError, ValueError) as err:
        return f" Plain OLS (no sign constraint) failed: {err}."
    names = COEFFICIENTS if interaction else COEFFICIENTS[:3]
    slopes = ", ".join(f"{name} {value:.4g}" for name, value in zip(names, free.params, strict=False))
    return (
        f" Plain OLS (no sign constraint): {slopes}; held-out MAPE {free.cv_mape:.4f}, bias {free.cv_bias:.3f}, "
        f"R^2 {free.r_squared:.3f}."
    )
