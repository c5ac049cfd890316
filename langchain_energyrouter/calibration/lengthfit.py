"""Fit the profile's output-length predictor from raw rows: a censored-normal (Tobit) regression (scipy).

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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from langchain_energyrouter.calibration.folds import (
    BIAS_TOLERANCE,
    CV_TEXT,
    DEFAULT_FOLDS,
    make_folds,
    resolve_scheme,
    summed_ratio,
)
from langchain_energyrouter.profile import (
    ORIGINAL_OUTPUT_INTERCEPT,
    ORIGINAL_OUTPUT_SLOPE,
    FitStats,
    OutputLengthModel,
)

if TYPE_CHECKING:
    import numpy as np


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a singular design (one input length): no covariance, said below
            result = sm.OLS(y, x).fit()
            cov = result.cov_params() if np.linalg.matrix_rank(x) == x.shape[1] else None
        return np.asarray(result.params, dtype=float), float(np.sqrt(max(result.scale, 1e-12))), cov
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
    scheme = resolve_scheme(cv, groups)
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
        scores[label] = (mape, summed_ratio(pred[tested], observed[tested]))
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
        f"{method}, on {source_rows}. Chosen by held-out bias, then MAPE ({k}-fold CV, {CV_TEXT[scheme]}; "
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
                cv=CV_TEXT[scheme],
                conf_int=conf_int,
                note=note,
            ),
        ),
        None,
    )
