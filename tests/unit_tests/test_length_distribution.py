"""Answer lengths as distributions: the closed forms against sampling, and decisions that use them."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_energyrouter import Constraints, NoFeasibleModelError, Scheduler
from langchain_energyrouter.cost import LengthDistribution
from tests.conftest import make_model, make_profile

Z90 = 1.2815515655446004


def _sample(length: LengthDistribution, n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [math.expm1(rng.gauss(length.mu, length.sigma)) for _ in range(n)]


@pytest.mark.parametrize(("median", "sigma"), [(40.0, 0.8), (5.0, 0.3), (300.0, 1.2)])
def test_quantiles_and_capped_means_match_synthetic_log_normal_lengths(median: float, sigma: float) -> None:
    length = LengthDistribution(math.log1p(median), sigma)
    draws = sorted(_sample(length, 200_000))
    assert length.quantile_tokens(0.0) == pytest.approx(draws[len(draws) // 2], rel=0.02)
    assert length.quantile_tokens(Z90) == pytest.approx(draws[int(0.9 * len(draws))], rel=0.02)
    for cap in (None, 0.5 * median, median, 4 * median):
        truth = sum(d if cap is None else min(d, cap) for d in draws) / len(draws)
        assert length.mean_tokens(cap) == pytest.approx(truth, rel=0.02), cap


@settings(max_examples=200, deadline=None)
@given(
    mean=st.floats(min_value=0.0, max_value=5000.0),
    sigma=st.floats(min_value=0.0, max_value=3.0),
    cap=st.floats(min_value=1.0, max_value=5000.0),
)
def test_the_capped_mean_never_exceeds_the_cap_or_the_mean(mean: float, sigma: float, cap: float) -> None:
    length = LengthDistribution.from_mean(mean, sigma)
    capped = length.mean_tokens(cap)
    assert capped <= cap + 1e-6 and capped <= length.mean_tokens() + 1e-6 * max(1.0, mean)
    assert length.mean_tokens() == pytest.approx(mean, rel=1e-9, abs=1e-9)
    assert length.quantile_tokens(0.0, cap) <= length.quantile_tokens(Z90, cap) <= cap


def test_constraints_hold_at_the_upper_quantile_not_on_average() -> None:
    # 0.1 s per token; answers of 50 tokens on average, a long right tail (sigma 1).
    model = make_model(runtime=(0.0, 0.0, 0.1, 0.0), energy=(0.0, 0.0, 1.0, 0.0), output=(50.0, 0.0))
    model = model.model_copy(update={"output_length": model.output_length.model_copy(update={"log_sigma": 1.0})})
    profile = make_profile({"m": model})
    decision = Scheduler(profile, constraint_quantile=0.9).decide(10)
    m = decision.candidates["m"]
    assert m.predicted_runtime_s == pytest.approx(5.0)  # the mean: 50 tokens
    assert m.predicted_runtime_s_upper == pytest.approx(0.1 * m.output_tokens_upper) and m.predicted_runtime_s_upper > 9
    assert m.output_tokens_median < m.predicted_output_tokens < m.output_tokens_upper
    limit = Constraints(max_runtime_s=8.0)  # met on average, broken by one answer in ten
    with pytest.raises(NoFeasibleModelError, match="runtime"):
        Scheduler(profile).decide(10, constraints=limit)
    at_median = Scheduler(profile, constraint_quantile=0.5).decide(10, constraints=limit)
    assert at_median.model == "m" and at_median.constraint_quantile == 0.5
    assert at_median.as_dict()["constraint_quantile"] == 0.5


def test_a_bad_constraint_quantile_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"constraint_quantile=1.5; give a number in \(0, 1\)"):
        Scheduler(make_profile({"m": make_model()}), constraint_quantile=1.5)
