"""The fitter recovers known coefficients and agrees with statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from langchain_energyrouter.calibration.fitting import fit_cost_model, fit_output_length
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
    model, _ = fit_cost_model(tin, tout, y, estimators=(estimator,), interaction=(True,))
    assert model.uses_interaction
    assert model.intercept == pytest.approx(0.05, rel=1e-4, abs=1e-6)
    assert model.input_tokens == pytest.approx(0.0004, rel=1e-4)
    assert model.output_tokens == pytest.approx(0.03, rel=1e-4)
    assert model.interaction == pytest.approx(0.00002, rel=1e-4)
    assert model.fit is not None and model.fit.mape_holdout == pytest.approx(0.0, abs=1e-6)


def test_noisy_fit_is_close_and_keeps_interaction() -> None:
    tin, tout, y = _grid(noise=0.02)
    model, candidates = fit_cost_model(tin, tout, y)
    assert model.interaction == pytest.approx(0.00002, rel=0.2)
    assert model.fit is not None and model.fit.mape_holdout < 0.03
    assert len(candidates) == 6
    assert "Plain OLS" in model.fit.note and "Chose" in model.fit.note


def test_plain_ols_matches_statsmodels_directly() -> None:
    tin, tout, y = _grid(noise=0.05, seed=3)
    model, _ = fit_cost_model(tin, tout, y, estimators=("ols",), interaction=(True,))
    direct = sm.OLS(y, sm.add_constant(np.column_stack([tin, tout, tin * tout]))).fit()
    assert [model.intercept, model.input_tokens, model.output_tokens, model.interaction] == pytest.approx(
        list(direct.params), rel=1e-9
    )
    assert model.fit is not None
    assert model.fit.r_squared == pytest.approx(direct.rsquared, rel=1e-9)
    ci = direct.conf_int(0.05)
    assert model.fit.conf_int is not None
    assert model.fit.conf_int["interaction"] == pytest.approx(tuple(ci[3]), rel=1e-9)
    assert model.fit.n == len(y) and model.fit.folds == 5


def test_without_interaction_when_it_is_better() -> None:
    rng = np.random.default_rng(1)
    tin = rng.integers(5, 60, 200).astype(float)
    tout = rng.integers(10, 100, 200).astype(float)
    y = (0.2 + 0.03 * tout) * (1 + 0.05 * rng.standard_normal(200))
    model, candidates = fit_cost_model(tin, tout, y, estimators=("ols",))
    labels = {c.label for c in candidates}
    assert labels == {"ols", "ols+interaction"}
    best = min(candidates, key=lambda c: c.cv_mape)
    assert model.uses_interaction == best.interaction


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(CalibrationError, match="at least 3"):
        fit_cost_model(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, 2.0]))


def test_output_length_fit_and_heuristic_fallback() -> None:
    tin = np.arange(10, 60, dtype=float)
    model, message = fit_output_length(tin, 20 + 0.5 * tin)
    assert message is None and model.source == "fitted"
    assert model.slope == pytest.approx(0.5) and model.max_output_tokens == int(max(20 + 0.5 * tin))
    fallback, message = fit_output_length(np.array([10.0, 10.0, 10.0, 10.0]), np.array([5.0, 6.0, 7.0, 8.0]))
    assert fallback.source == "heuristic" and fallback.slope == ORIGINAL_OUTPUT_SLOPE
    assert message is not None and "heuristic" in message


def test_output_length_keeps_the_mean_when_length_does_not_depend_on_the_prompt() -> None:
    rng = np.random.default_rng(0)
    tin = rng.integers(10, 60, size=40).astype(float)
    tout = rng.choice([20.0, 30.0], size=40)  # independent of tin, as chat answers often are
    model, message = fit_output_length(tin, tout)
    assert message is None and model.slope == 0.0
    assert model.intercept == pytest.approx(tout.mean())
    assert model.fit is not None and "mean tout" in model.fit.note and "line" in model.fit.note
    assert set(model.fit.conf_int or {}) == {"intercept"}
