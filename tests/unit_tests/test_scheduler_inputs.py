"""What makes a decision about *this* request and moment: load, training ranges, learned and per-prompt inputs."""

from __future__ import annotations

import json
import math

import pytest

from langchain_energyrouter.cost import DEFAULT_LENGTH_LOG_SIGMA, LengthDistribution, load_factors
from langchain_energyrouter.decide.predictions import ADAPTED, PRIOR, PROMPT, TASK
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.errors import ProfileError, UnknownModelError
from langchain_energyrouter.learn.costs import LearnedCosts
from langchain_energyrouter.profile import CostModel, EnergyProfile, LoadModel
from langchain_energyrouter.testing import tiny_profile


def _with(profile: EnergyProfile, name: str, **update: object) -> EnergyProfile:
    return profile.with_models({name: profile.models[name].model_copy(update=update)})


def test_load_factors_follow_the_documented_forms() -> None:
    load = LoadModel(runtime_per_request=0.1, energy_fixed_share=0.6, reference_load=1.0, max_load=8)
    assert load.factors(1) == (1.0, 1.0)
    runtime, energy = load.factors(4)
    assert runtime == pytest.approx(1.3)
    assert energy == pytest.approx(0.4 + 0.6 / 4)
    assert load_factors(None, 4) == (1.0, 1.0)
    assert load_factors(load.compile(), None) == (1.0, 1.0)
    assert load.factors(0.2) == load.factors(1)  # a request is always in flight with itself


def test_in_flight_changes_the_decision_and_flags_loads_beyond_the_measured() -> None:
    # tiny-b is 5x costlier at load 1; at 16 in flight its fixed power is shared, tiny-a has no load model.
    profile = _with(
        tiny_profile(), "tiny-b", load=LoadModel(runtime_per_request=0.05, energy_fixed_share=0.95, max_load=4)
    )
    scheduler = Scheduler(profile, {"energy": 1.0})
    idle = scheduler.decide(20, 10, in_flight={"tiny-a": 1, "tiny-b": 1})
    assert idle.model == "tiny-a"
    busy = scheduler.decide(20, 10, in_flight={"tiny-a": 1, "tiny-b": 16})
    b = busy.candidates["tiny-b"]
    assert b.in_flight == 16 and "load_extrapolated" in b.flags
    assert b.predicted_energy_j == pytest.approx(idle.candidates["tiny-b"].predicted_energy_j * (0.05 + 0.95 / 16))
    assert b.predicted_runtime_s == pytest.approx(idle.candidates["tiny-b"].predicted_runtime_s * 1.75)
    assert busy.model == "tiny-b"  # sharing a busy engine costs less energy per request than the idle small one


def test_predictions_outside_the_training_ranges_are_flagged() -> None:
    profile = tiny_profile()
    entry = profile.models["tiny-a"]
    ranged = _with(
        profile,
        "tiny-a",
        runtime=entry.runtime.model_copy(update={"input_range": (4.0, 28.0), "output_range": (0.0, 50.0)}),
    )
    decision = Scheduler(ranged).decide(20, 10)
    assert "extrapolated" not in decision.candidates["tiny-a"].flags
    assert "extrapolated" in Scheduler(ranged).decide(200, 10).candidates["tiny-a"].flags
    assert "extrapolated" not in Scheduler(ranged).decide(200, 10).candidates["tiny-b"].flags  # no range: unknown
    assert "extrapolated" in ranged.models["tiny-a"].predict(20, 60).flags


def test_bad_training_range_is_a_profile_error() -> None:
    data = json.loads(tiny_profile().to_json())
    data["models"]["tiny-a"]["runtime"]["input_range"] = [30, 4]
    with pytest.raises(ProfileError, match=r"input_range.*low <= high"):
        EnergyProfile.from_dict(data, origin="bad.json")


def test_version_1_files_load_unchanged_and_save_as_version_2() -> None:
    data = json.loads(tiny_profile().to_json())
    data["schema_version"] = 1
    old = EnergyProfile.from_dict(data, origin="v1.json")
    assert old.schema_version == 1 and old.models["tiny-a"].load is None
    assert old.models["tiny-a"].predict(20, 10) == tiny_profile().models["tiny-a"].predict(20, 10)
    assert EnergyProfile.new(old.models, device=old.device, energy_method="estimate").schema_version == 2


def test_censoring_budget_is_not_a_cap_on_predicted_length() -> None:
    profile = tiny_profile()
    length = profile.models["tiny-a"].output_length.model_copy(
        update={"intercept": 80.0, "slope": 0.0, "source": "fitted", "censored_at": 64}
    )
    budgeted = _with(profile, "tiny-a", output_length=length)
    # 80 on average, sometimes beyond the 64 of calibration: a cap at 512 barely touches it, one at 50 does.
    assert budgeted.models["tiny-a"].predict_output_tokens(2000, max_output_tokens=512) == pytest.approx(80.0, 1e-3)
    capped = budgeted.models["tiny-a"].predict_output_tokens(2000, max_output_tokens=50)
    assert capped == pytest.approx(LengthDistribution.from_mean(80.0, DEFAULT_LENGTH_LOG_SIGMA).mean_tokens(50))
    assert 45 < capped < 50
    served = length.model_copy(update={"max_output_tokens": 60})  # the deployment's own limit does cap
    at_served = _with(profile, "tiny-a", output_length=served).models["tiny-a"].predict_output_tokens(20)
    assert at_served == pytest.approx(LengthDistribution.from_mean(80.0, DEFAULT_LENGTH_LOG_SIGMA).mean_tokens(60))
    # Version 1 stored the longest fitted answer (the calibration budget) as a cap: dropped on load.
    data = json.loads(_with(profile, "tiny-a", output_length=served).to_json())
    data["schema_version"] = 1
    del data["models"]["tiny-a"]["output_length"]["censored_at"]
    old = EnergyProfile.from_dict(data, origin="v1.json")
    assert old.models["tiny-a"].output_length.max_output_tokens is None
    assert old.models["tiny-a"].predict_output_tokens(2000, max_output_tokens=512) == pytest.approx(80.0, 1e-3)


def test_learned_snapshot_replaces_the_prior_and_is_reported() -> None:
    scheduler = Scheduler(tiny_profile(), {"energy": 1.0})
    triple = tuple(3 * c for c in tiny_profile().models["tiny-a"].energy.coefficients)
    snap = LearnedCosts(
        runtime=tiny_profile().models["tiny-a"].runtime.coefficients,
        energy=triple,  # type: ignore[arg-type]
        output_log_shift=None,
        output_log_sigma=None,
        n_runtime=7,
        n_energy=7,
        n_length=2,
        resets=0,
    )
    scheduler.set_learned("tiny-a", snap)
    a = scheduler.decide(20, 10).candidates["tiny-a"]
    assert a.sources["energy"] == ADAPTED and a.sources["output_tokens"] == PRIOR
    assert a.observations == {"runtime": 7, "energy": 7, "output_tokens": 0}
    tout = tiny_profile().models["tiny-a"].predict_output_tokens(20, 10)
    assert a.predicted_energy_j == pytest.approx(3 * tiny_profile().models["tiny-a"].predict(20, tout).energy_j)
    scheduler.set_learned("tiny-a", None)
    assert scheduler.decide(20, 10).candidates["tiny-a"].sources["energy"] == PRIOR


def test_per_prompt_accuracy_and_length_override_the_profile() -> None:
    scheduler = Scheduler(tiny_profile(), {"accuracy": 1.0})
    assert scheduler.decide(20, 10).model == "tiny-b"  # 0.8 vs 0.4 accuracy
    easy = scheduler.decide(20, 10, prompt_accuracy={"tiny-a": 0.95, "tiny-b": 0.9})
    assert easy.model == "tiny-a"
    assert easy.candidates["tiny-a"].sources["accuracy"] == PROMPT and easy.candidates["tiny-a"].accuracy == 0.95
    long = scheduler.decide(20, 10, prompt_output_tokens={"tiny-a": 300.0})  # a number: a point prediction
    assert long.candidates["tiny-a"].predicted_output_tokens == pytest.approx(10)  # still capped by the request
    uncapped = scheduler.decide(20, None, prompt_output_tokens={"tiny-a": 300.0})
    assert uncapped.candidates["tiny-a"].predicted_output_tokens == pytest.approx(300.0)
    spread = LengthDistribution(math.log1p(300.0), 1.0)  # median 300: the mean under a cap of 300 is below it
    wide = scheduler.decide(20, 300, prompt_output_tokens={"tiny-a": spread}).candidates["tiny-a"]
    assert wide.predicted_output_tokens == pytest.approx(spread.mean_tokens(300)) and wide.predicted_output_tokens < 300
    assert wide.output_tokens_median == pytest.approx(300.0) and wide.output_tokens_upper == 300
    assert uncapped.candidates["tiny-a"].sources["output_tokens"] == PROMPT
    assert uncapped.candidates["tiny-b"].sources["output_tokens"] == PRIOR


def test_task_sources_are_reported() -> None:
    profile = _with(tiny_profile(), "tiny-a", accuracy_by_task={"math": 0.1})
    c = Scheduler(profile).decide(20, 10, task_type="math").candidates
    assert c["tiny-a"].sources["accuracy"] == TASK and c["tiny-a"].accuracy == 0.1
    assert c["tiny-b"].sources["accuracy"] == PRIOR


def test_runtime_breaks_a_tie_between_otherwise_equal_models() -> None:
    profile = tiny_profile()
    same = profile.models["tiny-a"]
    slower = same.model_copy(
        update={"runtime": CostModel(intercept=1.0, input_tokens=0.0, output_tokens=0.0, uses_interaction=False)}
    )
    faster = same.model_copy(
        update={"runtime": CostModel(intercept=0.5, input_tokens=0.0, output_tokens=0.0, uses_interaction=False)}
    )
    both = EnergyProfile.new({"a-slow": slower, "b-fast": faster}, device=profile.device, energy_method="estimate")
    assert Scheduler(both, {"accuracy": 1.0, "energy": 1.0}).decide(20, 10).model == "b-fast"


def test_predict_costs_for_given_tokens_uses_the_coefficients_in_force() -> None:
    scheduler = Scheduler(tiny_profile())
    prior = tiny_profile().models["tiny-a"].predict(20, 30)
    assert scheduler.predict_costs("tiny-a", 20, 30)[:2] == pytest.approx(prior[:2])
    doubled = tuple(2 * c for c in tiny_profile().models["tiny-a"].runtime.coefficients)
    scheduler.set_learned(
        "tiny-a",
        LearnedCosts(
            runtime=doubled,  # type: ignore[arg-type]
            energy=None,
            output_log_shift=None,
            output_log_sigma=None,
            n_runtime=5,
            n_energy=0,
            n_length=0,
            resets=0,
        ),
    )
    runtime_s, energy_j, _ = scheduler.predict_costs("tiny-a", 20, 30)
    assert runtime_s == pytest.approx(2 * prior.runtime_s) and energy_j == pytest.approx(prior.energy_j)
    with pytest.raises(UnknownModelError, match="candidates are"):
        scheduler.predict_costs("nope", 1, 1)


@pytest.mark.parametrize(
    "length",
    [
        LengthDistribution(math.nan, 0.5),
        LengthDistribution(3.0, -0.1),
        LengthDistribution(3.0, math.inf),
        math.nan,
        -5.0,
    ],
)
def test_a_prompt_length_that_is_not_a_length_is_refused_by_name(length: object) -> None:
    scheduler = Scheduler(tiny_profile())
    model = scheduler.models[0]
    with pytest.raises(ValueError, match=rf"prompt_output_tokens\['{model}'\]"):
        scheduler.decide(10, prompt_output_tokens={model: length})  # type: ignore[dict-item]


def test_an_empty_prompt_predicts_no_fewer_than_zero_tokens() -> None:
    short = LengthDistribution(-0.4, 0.3)  # log1p(tokens) below 0: what a fit gives an empty prompt
    assert short.mean_tokens() == 0.0 and short.quantile_tokens(-1.0) == 0.0 and short.mean_tokens(10) >= 0.0
    scheduler = Scheduler(tiny_profile())
    decision = scheduler.decide(1, prompt_output_tokens=dict.fromkeys(scheduler.models, short))
    assert all(c.predicted_energy_j >= 0.0 and c.predicted_runtime_s >= 0.0 for c in decision.candidates.values())
