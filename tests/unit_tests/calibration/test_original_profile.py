"""The original three-model profile, refitted by the decision-oriented fitter, behaves as the original did."""

from __future__ import annotations

import numpy as np
import pytest

from langchain_energyrouter.calibration.rawdata import read_raw
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.decide.scoring import PRESETS, Weights
from langchain_energyrouter.profile import EnergyProfile

from .conftest import PROFILES, TRACES

FILES = {
    "phi-3-mini": "phi-3-mini-4k-instruct.csv.gz",
    "mistral-7b": "mistral-7B-instruct-v0.2.csv.gz",
    "falcon-7b": "falcon-7b-instruct.csv.gz",
}
ENERGY_PER_TOKEN_J = {"phi-3-mini": (5.2, 6.2), "mistral-7b": (5.2, 6.2), "falcon-7b": (13.0, 15.5)}
"""The seed README: about 5.7 J per generated token for Phi-3 and Mistral, 14 J for Falcon."""


@pytest.fixture(scope="module")
def profile() -> EnergyProfile:
    return EnergyProfile.load(PROFILES / "original-3-models.json")


def _scheduler(profile: EnergyProfile, weights: Weights) -> Scheduler:
    return Scheduler(profile, weights, "minmax", on_infeasible="least_violating")  # what `explain` builds


@pytest.mark.parametrize("name", sorted(FILES))
def test_fits_are_unbiased_with_non_negative_slopes(profile: EnergyProfile, name: str) -> None:
    frame = read_raw(TRACES / FILES[name]).frame
    tin, tout = frame["input_tokens"].to_numpy(float), frame["output_tokens"].to_numpy(float)
    entry = profile.models[name]
    for cost, column in ((entry.runtime, "runtime_seconds"), (entry.energy, "energy_joules")):
        b0, b1, b2, b3 = cost.coefficients
        assert min(b1, b2, b3) >= 0.0
        predicted = b0 + b1 * tin + b2 * tout + b3 * tin * tout
        assert predicted.sum() / frame[column].sum() == pytest.approx(1.0, abs=0.003)
        assert cost.fit is not None and cost.fit.bias_holdout == pytest.approx(1.0, abs=0.02)
        assert cost.fit.mape_holdout is not None and cost.fit.r_squared is not None
        assert "time" in (cost.fit.cv or "") and cost.fit.condition_number is not None
        assert cost.input_range == (tin.min(), tin.max()) and cost.output_range == (tout.min(), tout.max())
    lo, hi = ENERGY_PER_TOKEN_J[name]
    median_tin = float(np.median(tin))
    assert lo <= entry.energy.output_tokens + entry.energy.interaction * median_tin <= hi


def test_phi3_length_is_not_capped_at_the_budget(profile: EnergyProfile) -> None:
    phi = profile.models["phi-3-mini"]
    # 90% of its answers were cut at the 50-token budget: the uncut mean lies beyond it ...
    assert phi.output_length.censored_at == 50 and phi.output_length.intercept > 50
    uncapped = phi.output_length.model_copy(update={"max_output_tokens": None})
    served_larger = phi.model_copy(update={"output_length": uncapped})
    for tin in range(4, 29):
        assert served_larger.predict_output_tokens(tin) > 50
    # ... and the original deployment's own limit (stated in the profile) caps what it serves.
    assert phi.output_length.prediction_cap == 50
    served = phi.predict_output_tokens(20, max_output_tokens=512)
    assert served == pytest.approx(phi.predict_output_length(20).mean_tokens(50)) and 45 < served < 50


@pytest.mark.parametrize(
    ("weights", "expected"),
    [(Weights(time=1), "phi-3-mini"), (Weights(accuracy=1), "mistral-7b")],
    ids=["time-only", "accuracy-only"],
)
def test_single_axis_choices(profile: EnergyProfile, weights: Weights, expected: str) -> None:
    scheduler = _scheduler(profile, weights)
    assert {scheduler.decide(tin).model for tin in range(5, 26)} == {expected}


def test_energy_only_chooses_phi3_at_the_original_budget(profile: EnergyProfile) -> None:
    scheduler = _scheduler(profile, Weights(energy=1))
    assert {scheduler.decide(tin, 50).model for tin in range(5, 26)} == {"phi-3-mini"}


def test_energy_only_chooses_phi3_without_a_token_limit(profile: EnergyProfile) -> None:
    """The profile states the original deployment's 50-token generation limit (``max_output_tokens``),
    so a request without ``max_tokens`` is predicted as that deployment would serve it."""
    assert {m.output_length.max_output_tokens for m in profile.models.values()} == {50}
    scheduler = _scheduler(profile, Weights(energy=1))
    assert {scheduler.decide(tin).model for tin in range(5, 26)} == {"phi-3-mini"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("max_tokens", [None, 50])
def test_falcon_is_never_chosen(profile: EnergyProfile, preset: str, max_tokens: int | None) -> None:
    scheduler = _scheduler(profile, PRESETS[preset])
    assert "falcon-7b" not in {scheduler.decide(tin, max_tokens).model for tin in range(5, 61)}
