"""The fitter: known coefficients, held-out bias, sign constraints, censored lengths, folds, conditioning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from langchain_energyrouter.calibration.fitting import (
    CONDITION_WARN,
    CandidateFit,
    fit_cost_model,
    select_candidate,
)
from langchain_energyrouter.calibration.folds import BIAS_TOLERANCE, cell_groups, make_folds
from langchain_energyrouter.calibration.lengthfit import detect_budget, fit_output_length
from langchain_energyrouter.calibration.profilefit import fit_model
from langchain_energyrouter.calibration.rawdata import RawData
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import ORIGINAL_OUTPUT_SLOPE


def _grid(seed: int = 0, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tin = np.repeat([16.0, 64.0, 256.0, 512.0], 30)
    tout = np.tile(np.repeat([4.0, 16.0, 48.0], 10), 4)
    y = 0.05 + 0.0004 * tin + 0.03 * tout + 0.00002 * tin * tout
    return tin, tout, y * (1 + noise * rng.standard_normal(len(y)))


@pytest.mark.parametrize("estimator", ["ols", "wls_rel", "lad_rel"])
def test_recovers_known_coefficients(estimator: str) -> None:
    tin, tout, y = _grid()
    model, _ = fit_cost_model(tin, tout, y, estimators=(estimator,), interaction=(True,), cv="random")
    assert model.uses_interaction
    assert model.intercept == pytest.approx(0.05, rel=1e-4, abs=1e-6)
    assert model.input_tokens == pytest.approx(0.0004, rel=1e-4)
    assert model.output_tokens == pytest.approx(0.03, rel=1e-4)
    assert model.interaction == pytest.approx(0.00002, rel=1e-4)
    assert model.fit is not None and model.fit.mape_holdout == pytest.approx(0.0, abs=1e-6)
    assert model.fit.bias_holdout == pytest.approx(1.0, abs=1e-6)
    assert model.input_range == (16.0, 512.0) and model.output_range == (4.0, 48.0)


def test_noisy_fit_is_close_and_keeps_interaction() -> None:
    tin, tout, y = _grid(noise=0.02)
    model, candidates = fit_cost_model(tin, tout, y, cv="random")
    assert model.interaction == pytest.approx(0.00002, rel=0.2)
    assert model.fit is not None and model.fit.mape_holdout < 0.03
    assert abs(model.fit.bias_holdout - 1) <= BIAS_TOLERANCE  # type: ignore[operator]
    assert len(candidates) == 6
    assert "Plain OLS" in model.fit.note and "Chose" in model.fit.note


def test_plain_ols_matches_statsmodels_directly() -> None:
    tin, tout, y = _grid(noise=0.05, seed=3)
    model, _ = fit_cost_model(tin, tout, y, estimators=("ols",), interaction=(True,))
    direct = sm.OLS(y, sm.add_constant(np.column_stack([tin, tout, tin * tout]))).fit()
    assert (direct.params[1:] > 0).all()  # nothing for the sign constraint to do
    assert [model.intercept, model.input_tokens, model.output_tokens, model.interaction] == pytest.approx(
        list(direct.params), rel=1e-9
    )
    assert model.fit is not None
    assert model.fit.r_squared == pytest.approx(direct.rsquared, rel=1e-9)
    ci = direct.conf_int(0.05)
    assert model.fit.conf_int is not None
    assert model.fit.conf_int["interaction"] == pytest.approx(tuple(ci[3]), rel=1e-9)
    assert model.fit.n == len(y) and model.fit.folds == 5 and model.fit.constrained == []


def _skewed_costs(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Costs with right-skewed (lognormal) noise, as measured runtimes and joules are."""
    rng = np.random.default_rng(seed)
    tin = rng.integers(5, 60, n).astype(float)
    tout = rng.integers(10, 100, n).astype(float)
    y = (2.0 + 0.05 * tin + 0.5 * tout) * rng.lognormal(-0.5 * 0.6**2, 0.6, n)  # mean factor 1
    return tin, tout, y


def test_relative_error_estimators_are_biased_low_and_the_rule_prefers_the_unbiased_fit() -> None:
    tin, tout, y = _skewed_costs()
    model, candidates = fit_cost_model(tin, tout, y, interaction=(False,))
    by_label = {c.label: c for c in candidates}
    # MAPE favours the median (below the mean of a right-skewed cost) ...
    assert by_label["lad_rel"].cv_mape < by_label["ols"].cv_mape
    assert by_label["lad_rel"].cv_bias < 1 - BIAS_TOLERANCE and by_label["wls_rel"].cv_bias < 1 - BIAS_TOLERANCE
    # ... so the rule keeps least squares, which is right on average.
    assert abs(by_label["ols"].cv_bias - 1) <= BIAS_TOLERANCE
    assert candidates[0].label == "ols" and "within 2% of 1" in model.fit.note  # type: ignore[union-attr]
    assert model.fit is not None and model.fit.bias_holdout == pytest.approx(by_label["ols"].cv_bias)
    in_sample = np.sum([model.raw(i, o) for i, o in zip(tin, tout, strict=True)]) / np.sum(y)
    assert in_sample == pytest.approx(1.0, abs=1e-9)


def test_selection_rule_bias_first_then_mape() -> None:
    def cand(label: str, mape: float, bias: float) -> CandidateFit:
        return CandidateFit(label, False, (0.0, 0.0, 0.0, 0.0), mape, 0.5, {}, 10, cv_bias=bias)

    ranked, why = select_candidate([cand("a", 0.10, 0.90), cand("b", 0.30, 1.01), cand("c", 0.20, 0.99)])
    assert [c.estimator for c in ranked[:2]] == ["c", "b"] and "lowest held-out MAPE" in why
    ranked, why = select_candidate([cand("a", 0.10, 0.80), cand("b", 0.30, 1.10)])
    assert ranked[0].estimator == "b" and "least held-out |bias - 1|" in why


def _confounded(n: int = 800, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A trace whose later rows have longer prompts *and* a faster machine: free OLS gives b1 < 0."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, n)  # time through the trace
    tin = np.round(5 + 50 * t + rng.integers(0, 6, n)).astype(float)
    tout = rng.integers(10, 60, n).astype(float)
    speed = 2.0 - 1.5 * t  # seconds per token falls over the run (the confound)
    y = (0.3 + 0.002 * tin + 0.05 * tout) * speed * (1 + 0.03 * rng.standard_normal(n))
    return tin, tout, y


def test_sign_constraint_holds_a_confounded_slope_at_zero() -> None:
    tin, tout, y = _confounded()
    free, _ = fit_cost_model(tin, tout, y, estimators=("ols",), interaction=(True,), nonnegative=False)
    assert free.input_tokens < 0  # the confound, not physics
    model, _ = fit_cost_model(tin, tout, y, estimators=("ols",), interaction=(True,))
    assert model.fit is not None and "input_tokens" in model.fit.constrained
    assert model.input_tokens == 0.0 and model.output_tokens >= 0 and model.interaction >= 0
    assert "input_tokens" in model.fit.note and "held at 0" in model.fit.note
    assert "Plain OLS (no sign constraint)" in model.fit.note
    # The constrained optimum is least squares on the columns left free (KKT), with their CIs ...
    columns = {"intercept": np.ones_like(tin), "input_tokens": tin, "output_tokens": tout, "interaction": tin * tout}
    free_names = [name for name in columns if name not in model.fit.constrained]
    rest = sm.OLS(y, np.column_stack([columns[name] for name in free_names])).fit()
    fitted = dict(zip(("intercept", "input_tokens", "output_tokens", "interaction"), model.coefficients, strict=True))
    assert [fitted[name] for name in free_names] == pytest.approx(list(rest.params), rel=1e-7)
    assert set(model.fit.conf_int or {}) == set(free_names)
    # ... and no other non-negative choice of the held slopes fits better.
    x = np.column_stack(list(columns.values()))
    best_sse = float(np.sum((y - x @ np.array(model.coefficients)) ** 2))
    from scipy.optimize import lsq_linear

    exact = lsq_linear(x, y, bounds=([-np.inf, 0, 0, 0], np.inf), method="bvls")
    assert best_sse == pytest.approx(float(np.sum((y - x @ exact.x) ** 2)), rel=1e-9)
    # A free intercept keeps it unbiased on the fitted rows.
    assert np.sum([model.raw(i, o) for i, o in zip(tin, tout, strict=True)]) / np.sum(y) == pytest.approx(1, abs=1e-9)


def test_lad_rel_sign_constraint_refits_without_the_negative_slope() -> None:
    tin, tout, y = _confounded()
    model, _ = fit_cost_model(tin, tout, y, estimators=("lad_rel",), interaction=(False,), bias_tolerance=1.0)
    assert model.fit is not None and "input_tokens" in model.fit.constrained and model.input_tokens == 0.0
    assert model.output_tokens > 0


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(CalibrationError, match="at least 3"):
        fit_cost_model(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, 2.0]))


def test_too_few_rows_to_cross_validate_falls_back_to_least_squares_and_says_so() -> None:
    tin, tout = np.array([16.0, 16.0, 128.0, 128.0]), np.array([4.0, 16.0, 4.0, 16.0])
    y = 0.1 + 0.001 * tin + 0.05 * tout
    warned: list[str] = []
    model, candidates = fit_cost_model(tin, tout, y, warn=warned.append)
    assert [c.label for c in candidates] == ["ols"] and not model.uses_interaction
    assert model.coefficients[:3] == pytest.approx((0.1, 0.001, 0.05), abs=1e-6)
    assert model.fit is not None and model.fit.folds is None and model.fit.mape_holdout is None
    assert "Too few rows (4) to cross-validate" in model.fit.note and warned and "in-sample" in warned[0]


# -- folds ------------------------------------------------------------------------------------
def test_grouped_folds_never_split_a_design_cell() -> None:
    cells = [f"grid:in={i},out={o},rep={r}" for i in (16, 64, 256) for o in (4, 16) for r in (1, 2)]
    cells += [f"natural:chat-{k:02d}" for k in range(6)]
    groups = cell_groups(cells)
    assert groups[0] == "grid:in=16,out=4" == groups[1]
    folds = make_folds(len(cells), 5, "grouped", groups=groups, seed=0)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(len(cells)))
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_time_ordered_folds_do_not_shuffle_time() -> None:
    for train, test in make_folds(103, 5, "blocked"):
        assert np.all(np.diff(test) == 1)  # one contiguous stretch
        assert len(train) + len(test) == 103
    for train, test in make_folds(103, 4, "forward"):
        assert train.max() < test.min() and np.all(np.diff(test) == 1)


def test_fit_model_groups_by_design_cell_and_traces_by_time() -> None:
    tin, tout, y = _grid(noise=0.03)
    cells = [f"grid:in={int(i)},out={int(o)},rep={k % 2}" for k, (i, o) in enumerate(zip(tin, tout, strict=True))]
    frame = pd.DataFrame({"input_tokens": tin, "output_tokens": tout, "runtime_seconds": y, "energy_joules": 100 * y})
    raw = RawData(frame.assign(design_cell=cells), len(y), 0, {}, "grid.csv")
    profile, _ = fit_model("m", raw, accuracy=0.5, context_window=1024, length_rows="all", censored_at=None)
    assert "grouped by design cell" in (profile.runtime.fit.cv or "")  # type: ignore[union-attr]
    raw = RawData(frame.assign(design_cell=""), len(y), 0, {}, "trace.csv")
    profile, _ = fit_model("m", raw, accuracy=0.5, context_window=1024, censored_at=None)
    assert "time" in (profile.energy.fit.cv or "")  # type: ignore[union-attr]


# -- conditioning -----------------------------------------------------------------------------
def test_ill_conditioned_design_warns_and_records_the_condition_number() -> None:
    rng = np.random.default_rng(0)
    tin = rng.integers(5, 60, 300).astype(float)
    tout = tin + 50 + (rng.random(300) < 0.01)  # the original's prompt-included coding, almost exactly
    y = 0.1 + 0.02 * tout + 0.01 * rng.standard_normal(300) ** 2
    messages: list[str] = []
    model, _ = fit_cost_model(tin, tout, y, estimators=("ols",), interaction=(False,), warn=messages.append)
    assert model.fit is not None and model.fit.condition_number is not None
    assert model.fit.condition_number > CONDITION_WARN
    assert len(messages) == 1 and "ill-conditioned" in messages[0] and "collinear" in messages[0]
    tin, tout, y = _grid(noise=0.02)
    messages.clear()
    model, _ = fit_cost_model(tin, tout, y, warn=messages.append)
    assert messages == [] and model.fit is not None and 1 < model.fit.condition_number < CONDITION_WARN  # type: ignore[operator]


# -- output length ----------------------------------------------------------------------------
def test_output_length_uncensored_fit_and_heuristic_fallback() -> None:
    tin = np.arange(10, 60, dtype=float)
    model, message = fit_output_length(tin, 20 + 0.5 * tin, censored_at=None)
    assert message is None and model.source == "fitted"
    assert model.slope == pytest.approx(0.5) and model.max_output_tokens is None and model.censored_at is None
    fallback, message = fit_output_length(np.array([10.0, 10.0, 10.0, 10.0]), np.array([5.0, 6.0, 7.0, 8.0]))
    assert fallback.source == "heuristic" and fallback.slope == ORIGINAL_OUTPUT_SLOPE
    assert message is not None and "heuristic" in message


def test_output_length_keeps_the_mean_when_length_does_not_depend_on_the_prompt() -> None:
    rng = np.random.default_rng(0)
    tin = rng.integers(10, 60, size=40).astype(float)
    tout = rng.choice([20.0, 30.0], size=40)  # independent of tin, as chat answers often are
    model, message = fit_output_length(tin, tout, censored_at=None, cv="random")
    assert message is None and model.slope == 0.0
    assert model.intercept == pytest.approx(tout.mean())
    assert model.fit is not None and "constant tout" in model.fit.note and "line" in model.fit.note
    assert set(model.fit.conf_int or {}) == {"intercept"}


def test_censored_lengths_recover_the_true_mean() -> None:
    rng = np.random.default_rng(7)
    tin = rng.integers(5, 60, 4000).astype(float)
    true_length = 70 + 0.8 * tin + 20 * rng.standard_normal(4000)
    budget = 90
    tout = np.clip(np.round(true_length), 0, budget)  # what a run with max_new_tokens=90 records
    assert (tout >= budget).mean() > 0.3
    naive = sm.OLS(tout, sm.add_constant(tin)).fit().params
    assert naive[0] + naive[1] * 60 < 110  # ignoring censoring predicts short answers
    model, message = fit_output_length(tin, tout, censored_at="auto")
    assert message is None and model.censored_at == budget and model.max_output_tokens is None
    assert model.prediction_cap is None
    assert model.intercept == pytest.approx(70, abs=2.0) and model.slope == pytest.approx(0.8, abs=0.06)
    assert model.fit is not None and abs(model.fit.bias_holdout - 1) < 0.01  # type: ignore[operator]
    assert model.fit.conf_int is not None and model.fit.conf_int["slope"][0] < 0.8 < model.fit.conf_int["slope"][1]
    assert "right-censored" in model.fit.note


def test_every_answer_cut_predicts_at_least_the_budget() -> None:
    tin = np.arange(10.0, 30.0)
    model, message = fit_output_length(tin, np.full(20, 64.0), censored_at=64)
    assert model.intercept == 64 and model.slope == 0 and model.censored_at == 64
    assert message is not None and "lower bound" in message


def test_detect_budget() -> None:
    rng = np.random.default_rng(0)
    assert detect_budget(np.minimum(rng.integers(10, 120, 500), 50)) == 50
    assert detect_budget(rng.integers(10, 120, 500).astype(float)) is None
