"""Fit the profile's cost models and output-length predictor from raw rows (statsmodels, scipy).

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

**Cross-validation** never puts near-copies of a held-out row into the training folds:

* calibration grids (a ``design_cell`` column): grouped folds, every repetition of a
  cell (``grid:in=64,out=16,rep=2`` -> ``grid:in=64,out=16``) on one side;
* traces (no design cells; rows in recorded order): blocked folds, ``k`` contiguous
  stretches of time, so a drifting trace is judged on a stretch the fit has not seen
  rather than on neighbours of its training rows. Blocked rather than forward-chaining:
  the profile is a static prior fitted on the whole run, and forward-chaining bias is
  the trace's drift (the same for every estimator, and the online learner's job), not a
  property of the estimator. ``benchmarks/bench_fit_traces.py`` reports forward (time
  split) figures too.

**Conditioning**: the condition number of the design with each column scaled to unit
length (Belsley, Kuh & Welsch's scaling, intercept included) is recorded; above
:data:`CONDITION_WARN` (1e3) a warning says the inputs are nearly collinear. The
relative error of the coefficients can be up to the condition number times the relative
error of the data; with measurement noise of a few tenths of a percent at best, 1e3
means a coefficient (and its sign) can be wholly wrong. Designs of this form with an
intercept and an interaction routinely reach 30-150 with every coefficient well
determined (the recoded traces: 8-113; the default calibration grid: about 40), so
Belsley's "30" would cry wolf on every fit.

**Output length** (:func:`fit_output_length`): answers that reach the generation budget
were cut, so their true length is only known to be at least the budget. Lengths are
fitted by a censored-normal (Tobit) regression, ``length ~ N(a + b*tin, sigma)`` with
every row at or above the budget right-censored, by maximum likelihood (scipy); the
profile stores the *uncensored* mean ``a + b*tin``, sets ``censored_at`` to the budget
and never caps predictions at it. Its held-out bias and MAPE compare the model's
expectation of the *observable* length ``min(length, budget)`` with the observed one:
the true length of a cut answer is unknown, so that is the only honest check. A line in
``tin`` is kept over a constant only when its held-out MAPE is lower by more than one
standard error across folds (the one-standard-error rule): on the original traces the
line's slope comes from the 5-10% of answers that were not cut, and extrapolated it
predicts *shorter* uncensored answers for long prompts than the cut ones observed there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import (
    ORIGINAL_OUTPUT_INTERCEPT,
    ORIGINAL_OUTPUT_SLOPE,
    CostModel,
    FitStats,
    ModelProfile,
    OutputLengthModel,
)

if TYPE_CHECKING:
    import numpy as np

    from langchain_energyrouter.calibration.rawdata import RawData

COEFFICIENTS: tuple[str, ...] = ("intercept", "input_tokens", "output_tokens", "interaction")
ESTIMATORS: tuple[str, ...] = ("ols", "wls_rel", "lad_rel")
"""Estimators tried by default, in order of preference on a tie."""
DEFAULT_FOLDS = 5
BIAS_TOLERANCE = 0.02
"""A candidate is unbiased enough when its held-out bias is within this of 1."""
CONDITION_WARN = 1e3
"""Warn when the column-scaled design's condition number exceeds this."""
CvScheme = Literal["auto", "grouped", "blocked", "forward", "random"]
"""How held-out rows are chosen: by design cell, contiguous time blocks, forward chaining, or shuffled."""
_CV_TEXT = {
    "grouped": "grouped by design cell (repetitions of a cell held out together)",
    "blocked": "blocked: contiguous stretches of rows in recorded (time) order",
    "forward": "forward-chaining in recorded (time) order: each block predicted from the rows before it",
    "random": "shuffled k-fold",
}


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


@dataclass
class FitReport:
    """What :func:`fit_model` did, for the summary table and stderr."""

    name: str
    runtime: list[CandidateFit] = field(default_factory=list)
    energy: list[CandidateFit] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


# -- folds ----------------------------------------------------------------------
def cell_groups(design_cells: Sequence[str]) -> list[str]:
    """Group key of each design cell: the cell without its repetition (``,rep=N``)."""
    keys = []
    for cell in design_cells:
        parts = [p for p in str(cell).split(",") if not p.startswith("rep=")]
        keys.append(",".join(parts))
    return keys


def make_folds(
    n: int, k: int, scheme: str, *, groups: Sequence[str] | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index arrays for each fold.

    Args:
        n: rows.
        k: folds (blocks for ``blocked``; ``forward`` cuts ``k + 1`` blocks and tests the last ``k``).
        scheme: ``grouped``, ``blocked``, ``forward`` or ``random`` (see :data:`CvScheme`).
        groups: one key per row, for ``grouped``: rows of one key are never split.
        seed: shuffles groups (``grouped``) or rows (``random``); time order is never shuffled.
    """
    import numpy as np

    index = np.arange(n)
    if scheme == "grouped":
        if groups is None or len(groups) != n:
            raise CalibrationError("Grouped cross-validation needs one design-cell key per row.")
        keys = sorted(set(groups))
        if len(keys) < 2:
            raise CalibrationError(f"Grouped cross-validation needs at least 2 design cells, got {keys}.")
        k = min(k, len(keys))
        rng = np.random.default_rng(seed)
        shuffled = [keys[i] for i in rng.permutation(len(keys))]
        sizes = {key: 0 for key in keys}
        for g in groups:
            sizes[g] += 1
        # Largest groups first, each to the currently smallest fold (balanced sizes, like GroupKFold).
        fold_of: dict[str, int] = {}
        load = [0] * k
        for key in sorted(shuffled, key=lambda key: -sizes[key]):
            target = min(range(k), key=lambda i: load[i])
            fold_of[key] = target
            load[target] += sizes[key]
        labels = np.array([fold_of[g] for g in groups])
        return [(index[labels != i], index[labels == i]) for i in range(k)]
    if scheme == "blocked":
        blocks = np.array_split(index, k)
        return [(np.setdiff1d(index, block, assume_unique=True), block) for block in blocks]
    if scheme == "forward":
        blocks = np.array_split(index, k + 1)
        return [(np.concatenate(blocks[:i]), blocks[i]) for i in range(1, k + 1)]
    if scheme == "random":
        order = np.random.default_rng(seed).permutation(n)
        tests = [np.sort(order[i::k]) for i in range(k)]
        return [(np.setdiff1d(index, test, assume_unique=True), test) for test in tests]
    raise CalibrationError(f"Unknown cross-validation scheme {scheme!r}; choose grouped, blocked, forward or random.")


def _resolve_scheme(cv: str, groups: Sequence[str] | None) -> str:
    if cv != "auto":
        return cv
    return "grouped" if groups is not None and any(str(g) for g in groups) else "blocked"


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


def _summed_ratio(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    total = float(np.sum(y))
    return float(np.sum(pred)) / total if total > 0 else math.nan


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
    """Fit one estimator on all rows; score it by held-out MAPE and bias over ``cv`` folds."""
    import numpy as np

    x = _design(tin, tout, interaction)
    pred = np.full_like(y, np.nan)
    held_anywhere: set[int] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QuantReg's iteration/convergence chatter; CV judges the result
        for train, test in make_folds(len(y), folds, cv, groups=groups, seed=seed):
            params, _result, _held = fit_constrained(estimator, x[train], y[train], nonnegative=nonnegative)
            pred[test] = np.maximum(x[test] @ params, 0.0)  # the scheduler clamps negatives too
        params, result, held = fit_constrained(estimator, x, y, nonnegative=nonnegative)
        ci = np.asarray(result.conf_int(0.05))
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
        cv_bias=_summed_ratio(pred[tested], y[tested]),
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
    scheme = _resolve_scheme(cv, groups)
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
        f"Chose {best.label} by {why}; {folds}-fold CV, {_CV_TEXT[scheme]}. "
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
            cv=_CV_TEXT[scheme],
            rows_dropped=rows_dropped,
            conf_int=best.conf_int or None,
            condition_number=best.condition_number if math.isfinite(best.condition_number) else None,
            constrained=list(best.constrained),
            note=note,
        ),
    )
    return model, candidates


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


# -- output length ----------------------------------------------------------------
def detect_budget(tout: np.ndarray) -> int | None:
    """The generation budget the lengths were cut at, when the rows show one; else None.

    A budget shows as a pile-up at the top: the most frequent length is at least the 90th
    percentile, holds at least 5% of the rows (and at least 2), and is not 0.
    """
    import numpy as np

    if len(tout) < 2:
        return None
    values, counts = np.unique(np.asarray(tout, dtype=float), return_counts=True)
    mode = float(values[np.argmax(counts)])
    at_mode = int(np.max(counts))
    if mode <= 0 or at_mode < max(2, 0.05 * len(tout)) or mode < float(np.quantile(tout, 0.9)):
        return None
    return int(mode)


def _censored_negloglik(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, censored: np.ndarray
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of a right-censored normal regression, and its gradient.

    ``theta`` is ``(beta..., log sigma)``; for a censored row ``y`` is the censoring point.
    """
    import numpy as np
    from scipy.special import log_ndtr

    beta, log_sigma = theta[:-1], theta[-1]
    sigma = math.exp(log_sigma)
    z = (y - x @ beta) / sigma
    obs = ~censored
    ll_obs = -0.5 * z[obs] ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
    log_surv = log_ndtr(-z[censored])
    mills = np.exp(-0.5 * z[censored] ** 2 - 0.5 * math.log(2 * math.pi) - log_surv)  # phi(z) / (1 - Phi(z))
    d_mu = np.zeros_like(y)
    d_mu[obs] = z[obs] / sigma
    d_mu[censored] = mills / sigma
    d_log_sigma = float(np.sum(z[obs] ** 2 - 1.0) + np.sum(mills * z[censored]))
    value = float(np.sum(ll_obs) + np.sum(log_surv))
    grad = np.concatenate([x.T @ d_mu, [d_log_sigma]])
    return -value, -grad


def fit_censored_normal(
    x: np.ndarray, tout: np.ndarray, budget: float | None
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """Maximum-likelihood ``tout ~ N(x @ beta, sigma)`` with rows ``>= budget`` right-censored.

    Returns:
        ``beta``, ``sigma`` and the covariance of ``beta`` (None when it cannot be estimated).
        Without censored rows this is ordinary least squares (statsmodels).
    """
    import numpy as np
    import statsmodels.api as sm
    from scipy.optimize import minimize
    from statsmodels.tools.numdiff import approx_fprime

    y = np.asarray(tout, dtype=float)
    censored = np.zeros(len(y), dtype=bool) if budget is None else y >= budget
    if not censored.any():
        result = sm.OLS(y, x).fit()
        return np.asarray(result.params, dtype=float), float(np.sqrt(max(result.scale, 1e-12))), result.cov_params()
    y = np.where(censored, float(budget), y)  # type: ignore[arg-type]
    start_beta = np.linalg.lstsq(x, y, rcond=None)[0]
    spread = float(np.std(y[~censored])) if (~censored).sum() > 1 else 1.0
    start = np.concatenate([start_beta, [math.log(max(spread, 1.0))]])
    result = minimize(
        _censored_negloglik, start, args=(x, y, censored), jac=True, method="BFGS", options={"gtol": 1e-8}
    )
    theta = np.asarray(result.x, dtype=float)
    cov = None
    try:
        hessian = approx_fprime(theta, lambda t: _censored_negloglik(t, x, y, censored)[1], centered=True)
        cov_full = np.linalg.inv(0.5 * (hessian + hessian.T))
        cov = cov_full[:-1, :-1] if np.all(np.diag(cov_full) > 0) else None
    except np.linalg.LinAlgError:
        cov = None
    return theta[:-1], float(math.exp(theta[-1])), cov


def expected_observed_length(mu: np.ndarray, sigma: float, budget: float | None) -> np.ndarray:
    """``E[min(length, budget)]`` for ``length ~ N(mu, sigma)``: what a budget-capped run would record."""
    from scipy.stats import norm

    if budget is None:
        return mu
    z = (budget - mu) / sigma
    return mu * norm.cdf(z) - sigma * norm.pdf(z) + budget * norm.sf(z)


def fit_output_length(
    tin: np.ndarray,
    tout: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    source_rows: str = "all rows",
    censored_at: int | Literal["auto"] | None = "auto",
    cv: str = "auto",
    groups: Sequence[str] | None = None,
    bias_tolerance: float = BIAS_TOLERANCE,
) -> tuple[OutputLengthModel, str | None]:
    """Censored-normal regression ``tout ~ tin`` (or a constant); the original heuristic when it cannot be fitted.

    Args:
        tin, tout: input and generated tokens per row.
        censored_at: the generation budget of these rows (lengths at or above it were cut);
            ``"auto"`` finds it with :func:`detect_budget`; None = nothing was cut.
        cv, groups, folds, seed: as in :func:`fit_cost_model`.

    Returns:
        The model, and a message when the heuristic was used or every answer was cut (None otherwise).
    """
    import numpy as np

    tin = np.asarray(tin, dtype=float)
    tout = np.asarray(tout, dtype=float)
    n = len(tin)
    budget = detect_budget(tout) if censored_at == "auto" else censored_at
    budget_text = f"the budget {budget} (auto-detected)" if censored_at == "auto" else f"the budget {budget}"
    censored = tout >= budget if budget is not None else np.zeros(n, dtype=bool)
    n_cut = int(censored.sum())
    why = None
    if n < 4:
        why = f"only {n} {source_rows}"
    elif np.ptp(tin) == 0 and n_cut == 0:
        why = f"input length never varies among the {n} {source_rows}"
    if why is not None:
        return (
            OutputLengthModel(
                intercept=ORIGINAL_OUTPUT_INTERCEPT,
                slope=ORIGINAL_OUTPUT_SLOPE,
                source="heuristic",
                censored_at=budget,
                fit=FitStats(n=n, note=f"Not fitted ({why}); the original heuristic tout = 1.028*tin + 44.12."),
            ),
            f"output length not fitted ({why}); using the original heuristic tout = 1.028*tin + 44.12",
        )
    if n - n_cut < 3:
        # Nothing to learn the spread from: the budget is a lower bound on every answer.
        assert budget is not None
        return (
            OutputLengthModel(
                intercept=float(budget),
                slope=0.0,
                source="fitted",
                censored_at=budget,
                fit=FitStats(
                    n=n,
                    note=(
                        f"{n_cut} of {n} {source_rows} reached {budget_text}: their length is unknown, so the "
                        f"prediction is the budget, a lower bound. Calibrate with a larger budget."
                    ),
                ),
            ),
            f"{n_cut} of {n} answers reached the budget {budget}; predicting {budget} tokens (a lower bound): "
            "calibrate with a larger --natural-max-new-tokens",
        )
    scheme = _resolve_scheme(cv, groups)
    k = max(2, min(folds, n))
    if scheme == "grouped" and groups is not None:
        k = min(k, len(set(groups)))
    observed = np.minimum(tout, budget) if budget is not None else tout
    designs = {"line": np.column_stack([np.ones(n), tin]), "constant": np.ones((n, 1))}
    if np.ptp(tin) == 0:
        del designs["line"]
    scores: dict[str, tuple[float, float]] = {}
    fold_se: dict[str, float] = {}
    for label, x in designs.items():
        pred = np.full(n, np.nan)
        fold_mapes = []
        for train, test in make_folds(n, k, scheme, groups=groups, seed=seed):
            if (~censored[train]).sum() < 2 or len(train) <= x.shape[1]:
                continue
            beta, sigma, _cov = fit_censored_normal(x[train], tout[train], budget)
            mu = np.maximum(x[test] @ beta, 1.0)
            pred[test] = expected_observed_length(mu, sigma, budget)
            fold_mapes.append(float(np.mean(np.abs(pred[test] - observed[test]) / np.maximum(observed[test], 1.0))))
        tested = ~np.isnan(pred)
        if not tested.any():
            continue
        mape = float(np.mean(np.abs(pred[tested] - observed[tested]) / np.maximum(observed[tested], 1.0)))
        scores[label] = (mape, _summed_ratio(pred[tested], observed[tested]))
        fold_se[label] = float(np.std(fold_mapes, ddof=1) / math.sqrt(len(fold_mapes))) if len(fold_mapes) > 1 else 0.0
    if not scores:
        scores = {label: (math.nan, math.nan) for label in designs}
    chosen = min(
        scores,
        key=lambda label: (
            0 if abs(scores[label][1] - 1.0) <= bias_tolerance else 1,
            scores[label][0] if abs(scores[label][1] - 1.0) <= bias_tolerance else abs(scores[label][1] - 1.0),
            label != "line",
        ),
    )
    simpler = ""
    if (
        chosen == "line"
        and "constant" in scores
        and abs(scores["constant"][1] - 1.0) <= max(bias_tolerance, abs(scores["line"][1] - 1.0))
    ):
        # One-standard-error rule: a slope that does not predict held-out rows clearly better is
        # not kept, since a line in tin extrapolates outside the prompts it was fitted on.
        if scores["constant"][0] - scores["line"][0] <= fold_se["line"]:
            chosen = "constant"
            simpler = (
                f" The line's held-out MAPE is not lower than the constant's by more than one standard error "
                f"across folds ({fold_se['line']:.3f}), so the constant is kept (one-standard-error rule)."
            )
    x = designs[chosen]
    beta, sigma, cov = fit_censored_normal(x, tout, budget)
    if chosen == "line" and "constant" in designs:
        se_slope = math.sqrt(float(np.asarray(cov)[1, 1])) if cov is not None else math.inf
        if not abs(beta[1]) > 1.96 * se_slope:
            chosen, x = "constant", designs["constant"]
            beta, sigma, cov = fit_censored_normal(x, tout, budget)
            simpler = " The line's slope is not significant (its 95% interval covers 0), so the constant is kept."
    conf_int = None
    if cov is not None:
        se = np.sqrt(np.diag(np.asarray(cov)))
        names = ["intercept", "slope"][: len(beta)]
        conf_int = {
            name: (float(b - 1.96 * s), float(b + 1.96 * s)) for name, b, s in zip(names, beta, se, strict=True)
        }
    r2 = None
    if n_cut == 0:
        ss_tot = float(np.sum((tout - tout.mean()) ** 2))
        r2 = 1.0 - float(np.sum((tout - x @ beta) ** 2)) / ss_tot if ss_tot > 0 else None
    mape, bias = scores.get(chosen, (math.nan, math.nan))
    compared = ", ".join(f"{label} {m:.3f}/{b:.3f}" for label, (m, b) in scores.items())
    form = "tout ~ tin" if chosen == "line" else "constant tout"
    method = (
        f"censored-normal (Tobit) regression {form}, {n_cut} of {n} rows right-censored at {budget_text}; "
        f"predicts the uncensored mean (sigma {sigma:.1f} tokens), never capped at the budget"
        if n_cut
        else f"least squares {form} (no answer reached " + (f"{budget_text})" if budget is not None else "a budget)")
    )
    note = (
        f"{method}, on {source_rows}. Chosen by held-out bias, then MAPE ({k}-fold CV, {_CV_TEXT[scheme]}; "
        f"MAPE/bias of E[min(length, budget)] against the observed length: {compared}).{simpler}"
    )
    finite = math.isfinite(mape) and math.isfinite(bias)
    return (
        OutputLengthModel(
            intercept=float(beta[0]),
            slope=float(beta[1]) if chosen == "line" else 0.0,
            source="fitted",
            max_output_tokens=None,
            censored_at=budget if n_cut else None,
            fit=FitStats(
                n=n,
                r_squared=r2,
                mape_holdout=mape if finite else None,
                bias_holdout=bias if finite else None,
                folds=k,
                cv=_CV_TEXT[scheme],
                conf_int=conf_int,
                note=note,
            ),
        ),
        None,
    )


def fit_model(
    name: str,
    raw: RawData,
    *,
    accuracy: float,
    context_window: int,
    model_id: str | None = None,
    accuracy_by_task: dict[str, float] | None = None,
    estimators: Sequence[str] = ESTIMATORS,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    length_rows: str = "auto",
    censored_at: int | Literal["auto"] | None = "auto",
    cv: str = "auto",
    warn: Callable[[str], None] | None = None,
) -> tuple[ModelProfile, FitReport]:
    """Fit one model's profile entry from its validated raw rows.

    Args:
        length_rows: rows for the output-length fit: ``"natural"`` (unforced generations,
            ``design_cell`` starting with ``natural:``), ``"all"`` (traces), or ``"auto"``
            (natural rows when the file has a design column with any, else all rows).
        censored_at: the generation budget of the length rows (see :func:`fit_output_length`).
        cv: ``auto``: grouped by design cell when the file has design cells, else blocked in row order.
    """
    import numpy as np

    report = FitReport(name=name)
    frame = raw.frame
    if raw.rows_dropped:
        detail = ", ".join(f"{v} {k}" for k, v in raw.drop_reasons.items())
        report.messages.append(f"{name}: dropped {raw.rows_dropped} of {raw.rows_total} rows of {raw.path} ({detail})")
    tin = frame["input_tokens"].to_numpy(dtype=float)
    tout = frame["output_tokens"].to_numpy(dtype=float)
    has_design = bool(frame["design_cell"].str.len().gt(0).any())
    groups = cell_groups(frame["design_cell"].tolist()) if has_design else None
    fitted = {
        target: fit_cost_model(
            tin,
            tout,
            frame[column].to_numpy(dtype=float),
            estimators=estimators,
            folds=folds,
            seed=seed,
            rows_dropped=raw.rows_dropped,
            what=f"{name} {target}",
            cv=cv,
            groups=groups,
            warn=report.messages.append,
        )
        for target, column in (("runtime", "runtime_seconds"), ("energy", "energy_joules"))
    }
    (runtime, report.runtime), (energy, report.energy) = fitted["runtime"], fitted["energy"]
    natural = frame["design_cell"].str.startswith("natural:").to_numpy()
    use_natural = length_rows == "natural" or (length_rows == "auto" and has_design)
    mask = natural if use_natural else np.ones(len(frame), dtype=bool)
    source_rows = "natural (unforced) rows" if use_natural else "all rows"
    length_groups = [g for g, keep in zip(groups, mask, strict=True) if keep] if groups is not None else None
    output_length, message = fit_output_length(
        tin[mask],
        tout[mask],
        folds=folds,
        seed=seed,
        source_rows=source_rows,
        censored_at=censored_at,
        cv=cv,
        groups=length_groups,
    )
    if message:
        report.messages.append(f"{name}: {message}")
    profile = ModelProfile(
        model_id=model_id,
        runtime=runtime,
        energy=energy,
        output_length=output_length,
        accuracy=accuracy,
        accuracy_by_task=dict(accuracy_by_task or {}),
        context_window=context_window,
    )
    if warn is not None:
        for line in report.messages:
            warn(line)
    return profile, report
