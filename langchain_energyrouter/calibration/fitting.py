"""Fit the profile's cost models and output-length predictor from raw rows (statsmodels).

Runtime and energy are fitted in the linear form the scheduler evaluates::

    y = b0 + b1 * tin + b2 * tout [+ b3 * tin * tout]

Several estimators of that same form compete, each with and without the
interaction term, and the one with the lowest k-fold cross-validated mean
absolute percentage error (MAPE) is kept (:data:`ESTIMATORS`):

``ols``
    Ordinary least squares: the baseline (what the original did, minus z-scoring).
``wls_rel``
    Weighted least squares with weights ``1 / y**2``: minimises squared *relative*
    error, so a few slow outliers (the traces drift and have heavy tails) do not
    drag the fit the way they drag OLS. Targets MAPE directly in a least-squares way.
``lad_rel``
    Least absolute relative error (median regression of ``1`` on ``x / y``): the exact
    MAPE minimiser, the most robust to outliers.

The choice, every candidate's CV MAPE (plain OLS included, so the profile records
the baseline it beat or matched), n, R^2 (unweighted, on the fitted rows) and the
coefficients' 95% confidence intervals go into :class:`~langchain_energyrouter.profile.FitStats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class CandidateFit:
    """One estimator's fit and its cross-validated error."""

    estimator: str
    interaction: bool
    params: tuple[float, float, float, float]
    """b0, b1, b2, b3 (b3 is 0 without the interaction term)."""
    cv_mape: float
    r_squared: float
    conf_int: dict[str, tuple[float, float]]
    """Empty when the estimator gives none (lad_rel)."""
    n: int

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


def _design(tin: np.ndarray, tout: np.ndarray, interaction: bool) -> np.ndarray:
    import numpy as np

    columns = [np.ones_like(tin), tin, tout]
    if interaction:
        columns.append(tin * tout)
    return np.column_stack(columns)


def _fit_params(estimator: str, x: np.ndarray, y: np.ndarray) -> Any:
    """Fit one estimator; return the statsmodels results object (``params``, ``conf_int()``)."""
    import statsmodels.api as sm

    if estimator == "ols":
        return sm.OLS(y, x).fit()
    if estimator == "wls_rel":
        return sm.WLS(y, x, weights=1.0 / (y * y)).fit()
    if estimator == "lad_rel":
        import numpy as np

        # min sum |y - x b| / y  ==  min sum |1 - (x / y) b|: median regression of 1 on x / y.
        return sm.QuantReg(np.ones_like(y), x / y[:, None]).fit(q=0.5, max_iter=2000)
    raise CalibrationError(f"Unknown estimator {estimator!r}; choose from {list(ESTIMATORS)}.")


def _mape(pred: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(np.abs(np.maximum(pred, 0.0) - y) / y))


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def _full(params: Any, interaction: bool) -> tuple[float, float, float, float]:
    values = [float(p) for p in params]
    return (values[0], values[1], values[2], values[3] if interaction else 0.0)


def fit_candidate(
    estimator: str,
    interaction: bool,
    tin: np.ndarray,
    tout: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> CandidateFit:
    """Fit one estimator on all rows, and score it by k-fold cross-validated MAPE."""
    import warnings

    import numpy as np

    x = _design(tin, tout, interaction)
    errors = np.empty_like(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QuantReg's iteration/convergence chatter; CV judges the result
        for test in _folds(len(y), folds, seed):
            train = np.ones(len(y), dtype=bool)
            train[test] = False
            result = _fit_params(estimator, x[train], y[train])
            pred = x[test] @ np.asarray(result.params)
            errors[test] = np.abs(np.maximum(pred, 0.0) - y[test]) / y[test]
        result = _fit_params(estimator, x, y)
        ci = np.asarray(result.conf_int(0.05))
    params = np.asarray(result.params)
    resid = y - x @ params
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 0.0
    names = COEFFICIENTS if interaction else COEFFICIENTS[:3]
    # QuantReg's kernel bandwidth comes from the spread of its (constant) endog: no CI for lad_rel.
    conf = {
        name: (float(lo), float(hi)) for name, (lo, hi) in zip(names, ci, strict=True) if np.isfinite([lo, hi]).all()
    }
    return CandidateFit(
        estimator=estimator,
        interaction=interaction,
        params=_full(params, interaction),
        cv_mape=float(np.mean(errors)),
        r_squared=r2,
        conf_int=conf,
        n=len(y),
    )


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
) -> tuple[CostModel, list[CandidateFit]]:
    """Fit every (estimator, interaction) candidate and keep the lowest CV MAPE.

    Args:
        tin, tout, y: input tokens, output tokens and the target (seconds or joules), all y > 0.
        estimators: names from :data:`ESTIMATORS`; ``("ols",)`` for plain OLS.
        interaction: which forms to try (with and/or without ``tin * tout``).
        folds: k of k-fold cross-validation.
        seed: shuffles the folds.
        rows_dropped: unusable rows, recorded in ``FitStats.rows_dropped``.
        what: ``"runtime"`` or ``"energy"``, for messages.

    Returns:
        The chosen :class:`CostModel` (with :class:`FitStats`) and every candidate, best first.

    Raises:
        CalibrationError: too few rows, or every candidate failed.
    """
    import numpy as np

    n = len(y)
    if n < 3:
        raise CalibrationError(f"Only {n} usable rows for the {what} fit; at least 3 are needed. Measure more.")
    folds = max(2, min(folds, n))
    candidates: list[CandidateFit] = []
    failures: list[str] = []
    for est in estimators:
        for ix in interaction:
            p = 4 if ix else 3
            if n - n // folds <= p:
                failures.append(f"{est}{'+interaction' if ix else ''}: too few rows ({n}) for {folds}-fold CV")
                continue
            if ix and np.ptp(tin) == 0:
                failures.append(f"{est}+interaction: input length never varies, interaction not identifiable")
                continue
            try:
                candidate = fit_candidate(est, ix, tin, tout, y, folds=folds, seed=seed)
            except (np.linalg.LinAlgError, ValueError) as err:
                failures.append(f"{est}{'+interaction' if ix else ''}: {err}")
                continue
            if np.isfinite(candidate.cv_mape) and all(np.isfinite(candidate.params)):
                candidates.append(candidate)
    if not candidates:
        raise CalibrationError(f"No {what} fit succeeded: {'; '.join(failures)}.")
    order = {(e, ix): i for i, (e, ix) in enumerate((e, ix) for e in estimators for ix in interaction)}
    candidates.sort(key=lambda c: (round(c.cv_mape, 12), order[(c.estimator, c.interaction)]))
    best = candidates[0]
    listing = ", ".join(f"{c.label} {c.cv_mape:.4f}" for c in candidates)
    plain = [c for c in candidates if c.estimator == "ols"]
    baseline = (
        f" Plain OLS best CV MAPE {min(c.cv_mape for c in plain):.4f}; chosen {best.cv_mape:.4f}." if plain else ""
    )
    note = (
        f"Chose {best.label} by lowest {folds}-fold CV MAPE. Candidates (CV MAPE): {listing}.{baseline}"
        + (f" Skipped: {'; '.join(failures)}." if failures else "")
        + (" r_squared is unweighted, on the fitted rows." if best.estimator != "ols" else "")
    )
    b0, b1, b2, b3 = best.params
    model = CostModel(
        intercept=b0,
        input_tokens=b1,
        output_tokens=b2,
        interaction=b3,
        uses_interaction=best.interaction,
        fit=FitStats(
            n=best.n,
            r_squared=best.r_squared,
            mape_holdout=best.cv_mape,
            folds=folds,
            rows_dropped=rows_dropped,
            conf_int=best.conf_int or None,
            note=note + ("" if best.conf_int else " No confidence intervals for this estimator."),
        ),
    )
    return model, candidates


def fit_output_length(
    tin: np.ndarray, tout: np.ndarray, *, folds: int = DEFAULT_FOLDS, seed: int = 0, source_rows: str = "all rows"
) -> tuple[OutputLengthModel, str | None]:
    """OLS ``tout ~ tin``; the original heuristic when it cannot be fitted.

    Returns:
        The model, and a message when the heuristic was used (None when fitted).
    """
    import numpy as np
    import statsmodels.api as sm

    n = len(tin)
    why = None
    if n < 4:
        why = f"only {n} {source_rows}"
    elif np.ptp(tin) == 0:
        why = f"input length never varies among the {n} {source_rows}"
    if why is not None:
        return (
            OutputLengthModel(
                intercept=ORIGINAL_OUTPUT_INTERCEPT,
                slope=ORIGINAL_OUTPUT_SLOPE,
                source="heuristic",
                fit=FitStats(n=n, note=f"Not fitted ({why}); the original heuristic tout = 1.028*tin + 44.12."),
            ),
            f"output length not fitted ({why}); using the original heuristic tout = 1.028*tin + 44.12",
        )
    # Two candidates, kept by k-fold CV MAPE: the line tout ~ tin, and a constant (the mean).
    # For chat prompts the line is often no better than the mean: answer length barely
    # depends on question length.
    x_line = sm.add_constant(np.asarray(tin, dtype=float), has_constant="add")
    x_const = np.ones((n, 1))
    k = max(2, min(folds, n))
    cv_mape = {}
    for label, x in (("line", x_line), ("constant", x_const)):
        errors = np.empty(n)
        for test in _folds(n, k, seed):
            train = np.ones(n, dtype=bool)
            train[test] = False
            params = np.asarray(sm.OLS(tout[train], x[train]).fit().params)
            pred = np.maximum(x[test] @ params, 1.0)
            errors[test] = np.abs(pred - tout[test]) / np.maximum(tout[test], 1.0)
        cv_mape[label] = float(np.mean(errors))
    chosen = min(cv_mape, key=lambda label: (cv_mape[label], label != "line"))
    result = sm.OLS(tout, x_line if chosen == "line" else x_const).fit()
    ci = np.asarray(result.conf_int(0.05))
    ss_tot = float(np.sum((tout - tout.mean()) ** 2))
    r2 = 1.0 - float(result.ssr) / ss_tot if ss_tot > 0 else None  # constant outputs: R^2 undefined
    conf_int = {"intercept": (float(ci[0][0]), float(ci[0][1]))}
    if chosen == "line":
        conf_int["slope"] = (float(ci[1][0]), float(ci[1][1]))
    compared = ", ".join(f"{label} {value:.3f}" for label, value in cv_mape.items())
    return (
        OutputLengthModel(
            intercept=float(result.params[0]),
            slope=float(result.params[1]) if chosen == "line" else 0.0,
            source="fitted",
            max_output_tokens=max(1, int(np.max(tout))),
            fit=FitStats(
                n=n,
                r_squared=r2,
                mape_holdout=cv_mape[chosen],
                folds=k,
                conf_int=conf_int,
                note=(
                    f"{'OLS tout ~ tin' if chosen == 'line' else 'mean tout'} on {source_rows}, chosen by "
                    f"{k}-fold CV MAPE ({compared}); capped at the observed maximum {int(np.max(tout))}."
                ),
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
    warn: Callable[[str], None] | None = None,
) -> tuple[ModelProfile, FitReport]:
    """Fit one model's profile entry from its validated raw rows.

    Args:
        length_rows: rows for the output-length fit: ``"natural"`` (unforced generations,
            ``design_cell`` starting with ``natural:``), ``"all"`` (traces), or ``"auto"``
            (natural rows when the file has a design column with any, else all rows).
    """
    import numpy as np

    report = FitReport(name=name)
    frame = raw.frame
    if raw.rows_dropped:
        detail = ", ".join(f"{v} {k}" for k, v in raw.drop_reasons.items())
        report.messages.append(f"{name}: dropped {raw.rows_dropped} of {raw.rows_total} rows of {raw.path} ({detail})")
    tin = frame["input_tokens"].to_numpy(dtype=float)
    tout = frame["output_tokens"].to_numpy(dtype=float)
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
        )
        for target, column in (("runtime", "runtime_seconds"), ("energy", "energy_joules"))
    }
    (runtime, report.runtime), (energy, report.energy) = fitted["runtime"], fitted["energy"]
    natural = frame["design_cell"].str.startswith("natural:").to_numpy()
    has_design = bool(frame["design_cell"].str.len().gt(0).any())
    use_natural = length_rows == "natural" or (length_rows == "auto" and has_design)
    mask = natural if use_natural else np.ones(len(frame), dtype=bool)
    source_rows = "natural (unforced) rows" if use_natural else "all rows"
    output_length, message = fit_output_length(tin[mask], tout[mask], folds=folds, seed=seed, source_rows=source_rows)
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
