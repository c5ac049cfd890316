"""The online cost learner: drift, bad readings, energy methods, physical slopes, state round trip."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_energyrouter import EnergyProfile, ProfileError
from langchain_energyrouter.cost import linear_cost
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.errors import UnknownModelError
from langchain_energyrouter.learn.costs import CostLearner, LearnedCosts
from langchain_energyrouter.learn.length import OutputLengthLearner
from langchain_energyrouter.learn.linear import LinearCostLearner
from langchain_energyrouter.learn.options import OnlineOptions
from langchain_energyrouter.profile import DeviceInfo, LoadModel
from tests.conftest import make_model, make_profile

TRUE_RUNTIME = (0.2, 0.002, 0.03, 0.0001)
TRUE_ENERGY = (40.0, 0.5, 5.0, 0.01)


def _nvml_profile(**model_kwargs: object) -> EnergyProfile:
    model = make_model(runtime=(0.1, 0.001, 0.02, 0.0), energy=(30.0, 0.2, 4.0, 0.0), **model_kwargs)  # type: ignore[arg-type]
    return make_profile({"m": model}).model_copy(update={"energy_method": "nvml_poll"})


def _rows(n: int, seed: int = 0, level: float = 1.0) -> list[tuple[float, float, float, float]]:
    """(tin, tout, runtime_s, energy_j) with 5% multiplicative noise around TRUE_* times ``level``."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tin, tout = float(rng.randint(4, 60)), float(rng.choice([rng.randint(1, 50), 50, 50]))
        noise = 1.0 + 0.05 * rng.gauss(0.0, 1.0)
        rows.append(
            (
                tin,
                tout,
                level * linear_cost(TRUE_RUNTIME, tin, tout) * noise,
                level * linear_cost(TRUE_ENERGY, tin, tout),
            )
        )
    return rows


def _relative_error(learner: LinearCostLearner, truth: tuple[float, float, float, float], level: float) -> float:
    """Largest relative error over a grid of (input, output) lengths, corners included."""
    points = [(tin, tout) for tin in (5.0, 20.0, 50.0) for tout in (5.0, 30.0, 50.0)]
    return max(abs(learner.predict(i, o) / (level * linear_cost(truth, i, o)) - 1.0) for i, o in points)


def _mean_relative_error(learner: LinearCostLearner, truth: tuple[float, float, float, float], level: float) -> float:
    """Mean relative error over fresh requests drawn like the training rows."""
    rows = _rows(500, seed=99)
    return sum(abs(learner.predict(i, o) / (level * linear_cost(truth, i, o)) - 1.0) for i, o, _, _ in rows) / 500


def test_converges_from_a_wrong_prior_and_follows_a_step_drift() -> None:
    learner = LinearCostLearner((0.05, 0.0, 0.01, 0.0), input_scale=60, output_scale=50)
    assert _mean_relative_error(learner, TRUE_RUNTIME, 1.0) > 0.5  # the prior is far off
    for tin, tout, runtime_s, _ in _rows(400, seed=1):
        assert learner.update(tin, tout, runtime_s)
    assert _mean_relative_error(learner, TRUE_RUNTIME, 1.0) < 0.03
    assert _relative_error(learner, TRUE_RUNTIME, 1.0) < 0.1
    # Costs jump 2.5x (another tenant on the GPU): the learner detects it and follows within 100 calls.
    resets_before = learner.resets
    rows = _rows(600, seed=2, level=2.5)
    for tin, tout, runtime_s, _ in rows[:100]:
        learner.update(tin, tout, runtime_s)
    assert learner.resets > resets_before
    assert _mean_relative_error(learner, TRUE_RUNTIME, 2.5) < 0.03
    # The shape (rarely seen short answers included) settles as the slow statistics forget the old level.
    for tin, tout, runtime_s, _ in rows[100:]:
        learner.update(tin, tout, runtime_s)
    assert _relative_error(learner, TRUE_RUNTIME, 2.5) < 0.15


def test_follows_a_slow_drift_without_lagging_behind_on_average() -> None:
    learner = LinearCostLearner(TRUE_RUNTIME, input_scale=60, output_scale=50)
    rng = random.Random(3)
    predicted = measured = 0.0
    for i in range(3000):
        level = 1.0 + 2.0 * i / 3000  # seconds per token triple over the run, as in the original traces
        tin, tout = float(rng.randint(4, 30)), 50.0
        y = level * linear_cost(TRUE_RUNTIME, tin, tout) * (1.0 + 0.1 * rng.gauss(0.0, 1.0))
        if i >= 500:
            predicted += learner.predict(tin, tout)
            measured += y
        learner.update(tin, tout, y)
    assert predicted / measured == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0])
def test_a_bad_measurement_is_ignored_and_counted(bad: float) -> None:
    learner = LinearCostLearner(TRUE_RUNTIME, input_scale=60, output_scale=50)
    for tin, tout, runtime_s, _ in _rows(20):
        learner.update(tin, tout, runtime_s)
    before = learner.coefficients
    assert not learner.update(10.0, 50.0, bad)
    assert not learner.update(bad, 50.0, 1.0)
    assert learner.n_rejected == 2
    assert learner.n_obs == 20
    assert learner.coefficients == before
    assert all(math.isfinite(c) for c in learner.coefficients)


def test_a_heavy_tailed_outlier_barely_moves_the_estimate() -> None:
    learner = LinearCostLearner(TRUE_RUNTIME, input_scale=60, output_scale=50)
    for tin, tout, runtime_s, _ in _rows(200):
        learner.update(tin, tout, runtime_s)
    before = learner.predict(20.0, 50.0)
    learner.update(20.0, 50.0, 1000.0 * before)  # one call 1000x slower (a stall)
    assert learner.predict(20.0, 50.0) == pytest.approx(before, rel=0.1)


def test_constant_inputs_do_not_wind_up() -> None:
    """A naive forgetting RLS's covariance explodes when inputs stop varying; the ridge bounds it here."""
    learner = LinearCostLearner(TRUE_RUNTIME, input_scale=60, output_scale=50)
    rng = random.Random(4)
    for _ in range(20000):
        learner.update(12.0, 50.0, linear_cost(TRUE_RUNTIME, 12.0, 50.0) * (1.0 + 0.2 * rng.gauss(0.0, 1.0)))
    b = learner.coefficients
    assert all(math.isfinite(c) for c in b)
    assert learner.predict(12.0, 50.0) == pytest.approx(linear_cost(TRUE_RUNTIME, 12.0, 50.0), rel=0.15)
    # Unseen lengths stay near the prior's shape instead of wherever the collinear directions drifted.
    assert learner.predict(40.0, 10.0) == pytest.approx(linear_cost(TRUE_RUNTIME, 40.0, 10.0), rel=0.5)


@settings(max_examples=40, deadline=None)
@given(
    prior=st.tuples(st.floats(-5, 5), st.floats(-0.1, 0.1), st.floats(-0.1, 0.1), st.floats(-0.01, 0.01)),
    slope_in=st.floats(-0.05, 0.05),
    slope_out=st.floats(-0.05, 0.05),
    seed=st.integers(0, 1000),
)
def test_slopes_are_never_negative(
    prior: tuple[float, float, float, float], slope_in: float, slope_out: float, seed: int
) -> None:
    learner = LinearCostLearner(prior, input_scale=60, output_scale=50)
    rng = random.Random(seed)
    for _ in range(60):
        tin, tout = float(rng.randint(1, 60)), float(rng.randint(1, 50))
        y = max(0.0, 3.0 + slope_in * tin + slope_out * tout + 0.3 * rng.gauss(0.0, 1.0))
        learner.update(tin, tout, y)
        b = learner.coefficients
        assert b[1] >= 0.0 and b[2] >= 0.0 and b[3] >= 0.0, b


def test_learner_state_round_trip_through_json() -> None:
    learner = LinearCostLearner((0.1, 0.001, 0.02, 0.0), input_scale=60, output_scale=50)
    rows = _rows(300, seed=5)
    for tin, tout, runtime_s, _ in rows[:200]:
        learner.update(tin, tout, runtime_s)
    learner.update(1.0, 1.0, math.nan)
    restored = LinearCostLearner.from_state(json.loads(json.dumps(learner.to_state())))
    assert restored.coefficients == learner.coefficients
    assert (restored.n_obs, restored.n_rejected, restored.resets) == (learner.n_obs, 1, learner.resets)
    for tin, tout, runtime_s, _ in rows[200:]:
        learner.update(tin, tout, runtime_s)
        restored.update(tin, tout, runtime_s)
    assert restored.coefficients == learner.coefficients

    length = OutputLengthLearner()
    for tokens in (10, 20, 50, 12, 33, 8):
        length.update(tokens, math.log1p(20.0), capped=tokens == 50)
    back = OutputLengthLearner.from_state(json.loads(json.dumps(length.to_state())))
    assert (back.shift, back.sigma, back.n_obs) == (length.shift, length.sigma, length.n_obs)
    # A state of the earlier form (means of raw tokens) is dropped, not read as residuals.
    old = {"version": 1, "sum": 120.0, "weight": 3.0, "n_obs": 3}
    assert OutputLengthLearner.from_state(old).shift is None


def test_state_from_a_future_version_or_garbage_is_refused() -> None:
    state = LinearCostLearner(TRUE_RUNTIME).to_state()
    with pytest.raises(ValueError, match="version 99"):
        LinearCostLearner.from_state({**state, "version": 99})
    with pytest.raises(ValueError, match="malformed"):
        LinearCostLearner.from_state({**state, "fast": {"a": "nope", "g": [0.0] * 4}})


def test_censored_lengths_only_raise_the_estimate() -> None:
    length = OutputLengthLearner(OnlineOptions(length_forgetting=1.0))
    prior_mu = math.log1p(20.0)
    for tokens in (10, 20, 40):
        assert length.update(tokens, prior_mu)
    expected = sum(math.log1p(t) - prior_mu for t in (10, 20, 40)) / 3
    assert length.shift == pytest.approx(expected)
    # Capped at 16 tokens: the answers would have been longer; "at most 16" must not be learned.
    for _ in range(50):
        assert not length.update(16, prior_mu, capped=True)
    assert length.shift == pytest.approx(expected)
    assert length.n_censored_ignored == 50
    assert length.update(64, prior_mu, capped=True)  # a capped length above the estimate is a lower bound
    assert length.shift > expected
    assert not length.update(math.nan, prior_mu)
    assert length.n_rejected == 1


def test_the_learned_length_is_a_residual_that_keeps_the_input_slope() -> None:
    """Short chats teach "this model answers shorter than the prior says", never "every answer is 10 tokens":
    a long prompt keeps the prior's dependence on its length (the issue's 2,029-token prompt)."""
    model = make_model(output=(10.0, 1.0), context_window=10**6)  # the prior: tout = 10 + tin
    profile = EnergyProfile.new({"m": model}, device=DeviceInfo(name="cpu", kind="cpu"), energy_method="estimate")
    learner = CostLearner(profile, OnlineOptions(min_obs=3))
    for tin in (20, 25, 30, 22, 28):  # short chats, answered in about half the prior's length
        prior = profile.models["m"].predict_output_tokens(tin)
        learner.observe("m", tin, 0.5 * prior, 1.0, None, "estimate")
    snap = learner.snapshot("m")
    assert snap is not None and snap.output_log_shift is not None and snap.output_log_shift < -0.4
    scheduler = Scheduler(profile)
    before = scheduler.decide(2029).candidates["m"].predicted_output_tokens
    scheduler.set_learned("m", snap)
    after = scheduler.decide(2029).candidates["m"]
    assert after.sources["output_tokens"] == "adapted"
    assert 0.4 * before < after.predicted_output_tokens < 0.7 * before  # about half the prior, not a short chat
    assert after.predicted_output_tokens > 900


def test_cost_learner_learns_runtime_energy_and_length() -> None:
    learner = CostLearner(_nvml_profile())
    assert learner.snapshot("m") is None
    for tin, tout, runtime_s, energy_j in _rows(300):
        assert learner.observe("m", tin, tout, runtime_s, energy_j, "nvml_poll")
    snap = learner.snapshot("m")
    assert isinstance(snap, LearnedCosts)
    assert (snap.n_runtime, snap.n_energy, snap.n_length) == (300, 300, 300)
    assert snap.energy is not None and snap.output_log_shift is not None
    for tin, tout in ((10.0, 50.0), (40.0, 20.0)):
        assert linear_cost(snap.runtime, tin, tout) == pytest.approx(linear_cost(TRUE_RUNTIME, tin, tout), rel=0.1)
        assert linear_cost(snap.energy, tin, tout) == pytest.approx(linear_cost(TRUE_ENERGY, tin, tout), rel=0.1)


def test_too_few_observations_fall_back_to_the_prior() -> None:
    profile = _nvml_profile()
    learner = CostLearner(profile, OnlineOptions(min_obs=5))
    learner.observe("m", 10, 50, 2.0, 300.0, "nvml_poll")
    snap = learner.snapshot("m")
    assert snap is not None
    assert snap.runtime is None  # the prior's apply, and decisions say so (sources "prior", 0 observations)
    assert snap.energy is None and snap.output_log_shift is None
    assert snap.n_runtime == 1


def test_joules_of_another_method_never_train_energy() -> None:
    learner = CostLearner(_nvml_profile())
    for tin, tout, runtime_s, energy_j in _rows(50):
        assert learner.observe("m", tin, tout, runtime_s, energy_j, "estimate")  # runtime still learns
    snap = learner.snapshot("m")
    assert snap is not None
    assert snap.n_energy == 0 and snap.energy is None
    assert snap.n_runtime == 50
    assert learner.ignored["energy: method estimate (profile measured nvml_poll)"] == 50


def test_counter_reset_and_zero_joule_readings_are_not_training_data() -> None:
    learner = CostLearner(_nvml_profile())
    for tin, tout, runtime_s, energy_j in _rows(30):
        learner.observe("m", tin, tout, runtime_s, energy_j, "nvml_poll")
    before = learner.snapshot("m")
    assert before is not None and before.energy is not None
    assert learner.observe("m", 10, 50, 1.5, 0.0, "nvml_poll", flags=("counter_went_backwards",))
    assert learner.observe("m", 10, 50, 1.5, 0.0, "nvml_poll", flags=("below_resolution",))
    assert learner.observe("m", 10, 50, 1.5, 9e9, "nvml_poll", flags=("overlapped",))
    after = learner.snapshot("m")
    assert after is not None
    assert after.energy == before.energy and after.n_energy == 30
    assert after.n_runtime == 32  # the time of the first two is still good; an overlapped call's is not its own
    assert learner.ignored["runtime: overlapped window"] == 1
    assert learner.ignored["energy: counter went backwards"] == 1
    assert learner.ignored["energy: 0 J below the meter's resolution"] == 1


def test_nan_measurement_through_the_cost_learner() -> None:
    learner = CostLearner(_nvml_profile())
    assert learner.observe("m", 10, 50, math.nan, math.nan, "nvml_poll")  # only the length is learned
    assert not learner.observe("m", math.nan, 50, 1.0, 100.0, "nvml_poll")
    snap = learner.snapshot("m")
    assert snap is not None and (snap.n_runtime, snap.n_energy, snap.n_length) == (0, 0, 1)
    assert learner.ignored == {
        "runtime: not finite or negative": 1,
        "energy: not finite or negative": 1,
        "tokens: not finite or negative": 1,
    }


def test_measurements_are_divided_by_the_load_factor() -> None:
    load = LoadModel(runtime_per_request=0.5, energy_fixed_share=0.5)
    plain = CostLearner(_nvml_profile())
    loaded_profile = _nvml_profile()
    loaded_profile = loaded_profile.with_models({"m": loaded_profile.models["m"].model_copy(update={"load": load})})
    loaded = CostLearner(loaded_profile)
    runtime_factor, energy_factor = load.factors(3)
    for tin, tout, runtime_s, energy_j in _rows(200):
        plain.observe("m", tin, tout, runtime_s, energy_j, "nvml_poll")
        loaded.observe("m", tin, tout, runtime_s * runtime_factor, energy_j * energy_factor, "nvml_poll", load=3)
    a, b = plain.snapshot("m"), loaded.snapshot("m")
    assert a is not None and b is not None and a.energy is not None and b.energy is not None
    assert linear_cost(b.runtime, 20, 50) == pytest.approx(linear_cost(a.runtime, 20, 50), rel=1e-6)
    assert linear_cost(b.energy, 20, 50) == pytest.approx(linear_cost(a.energy, 20, 50), rel=1e-6)


def test_cost_learner_state_round_trip_and_method_check() -> None:
    learner = CostLearner(_nvml_profile())
    for tin, tout, runtime_s, energy_j in _rows(100):
        learner.observe("m", tin, tout, runtime_s, energy_j, "nvml_poll", output_capped=tout == 50)
    state = json.loads(json.dumps(learner.model_state("m")))
    fresh = CostLearner(_nvml_profile())
    fresh.load_model_state("m", state)
    assert fresh.snapshot("m") == learner.snapshot("m")
    other = CostLearner(make_profile({"m": make_model()}))  # estimate joules
    with pytest.raises(ProfileError, match="learned from 'nvml_poll' joules"):
        other.load_model_state("m", state)
    with pytest.raises(ProfileError, match="malformed"):
        fresh.load_model_state("m", {**state, "runtime": {"version": 1}})
    fresh.reset("m")
    assert fresh.snapshot("m") is None


def test_unknown_model_is_named() -> None:
    learner = CostLearner(_nvml_profile())
    with pytest.raises(UnknownModelError, match=r"'nope'.*\['m'\]"):
        learner.observe("nope", 1, 1, 1.0, 1.0, "nvml_poll")
    with pytest.raises(UnknownModelError, match="'nope'"):
        learner.snapshot("nope")


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"forgetting is 1\.5"):
        OnlineOptions(forgetting=1.5)
    with pytest.raises(ValueError, match=r"reset_keep is 1\.0"):
        OnlineOptions(reset_keep=1.0)


def test_online_import_stays_light() -> None:
    code = (
        "import sys, langchain_energyrouter.learn.costs; "
        "bad = {'numpy', 'pandas', 'statsmodels', 'torch', 'transformers', 'pynvml'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_identical_answers_keep_a_floor_under_the_learned_length_spread() -> None:
    from langchain_energyrouter.learn.length import MIN_LOG_SIGMA, MIN_OBS_FOR_SIGMA, OutputLengthLearner

    learner = OutputLengthLearner()
    for _ in range(MIN_OBS_FOR_SIGMA + 5):
        learner.update(40.0, prior_mu=3.0)  # the same answer length every time
    assert learner.sigma == MIN_LOG_SIGMA  # was 0.001: constraint quantiles collapsed onto the mean
