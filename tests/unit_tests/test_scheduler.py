"""Scheduler: choices, weights, constraints, Pareto, determinism, and the dominance property."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from langchain_energyrouter import (
    NORMALIZERS,
    Constraints,
    EnergyProfile,
    NoFeasibleModelError,
    Scheduler,
    UnknownModelError,
    Weights,
    WeightsError,
)
from langchain_energyrouter.cost import DEFAULT_LENGTH_LOG_SIGMA, LengthDistribution
from langchain_energyrouter.decide.scoring import hybrid, minmax, relative
from tests.conftest import make_model, make_profile


def _capped_mean(mean_tokens: float, cap: float | None) -> float:
    """The scheduler's expected length: the profile's mean as a log-normal, averaged under the cap."""
    return LengthDistribution.from_mean(mean_tokens, DEFAULT_LENGTH_LOG_SIGMA).mean_tokens(cap)


def test_accuracy_first_picks_the_accurate_model(three_model_profile: EnergyProfile) -> None:
    decision = Scheduler(three_model_profile, Weights(accuracy=1)).decide(input_tokens=50, max_output_tokens=64)
    assert decision.model == "large"
    assert decision.ranking == ("large", "medium", "small")


def test_energy_first_picks_the_frugal_model(three_model_profile: EnergyProfile) -> None:
    decision = Scheduler(three_model_profile, Weights(energy=1)).decide(input_tokens=50, max_output_tokens=64)
    assert decision.model == "small"


def test_per_call_weights_override_defaults(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile, Weights(accuracy=1))
    assert scheduler.decide(50, 64).model == "large"
    assert scheduler.decide(50, 64, weights={"time": 1}).model == "small"
    assert scheduler.decide(50, 64).model == "large"  # the override did not stick


def test_candidate_fields_are_filled(three_model_profile: EnergyProfile) -> None:
    decision = Scheduler(three_model_profile, Weights(0.7, 0.2, 0.1)).decide(input_tokens=120, max_output_tokens=256)
    small = decision.candidates["small"]
    expected_out = _capped_mean(1.028 * 120 + 44.12, 256)
    assert 150 < expected_out < 1.028 * 120 + 44.12  # the cap cuts the long tail: below the uncapped mean
    assert small.predicted_output_tokens == pytest.approx(expected_out)
    assert small.predicted_runtime_s == pytest.approx(0.05 + 0.0005 * 120 + 0.01 * expected_out)
    assert small.predicted_energy_j == pytest.approx(2 + 0.02 * 120 + 0.5 * expected_out)
    assert small.accuracy == 0.55
    assert small.excluded is None
    # min-max: the small model is cheapest on energy and time, worst on accuracy
    assert (small.accuracy_term, small.energy_term, small.time_term) == pytest.approx((1.0, 0.0, 0.0), abs=1e-9)
    assert small.cost == pytest.approx(0.7)
    assert decision.as_dict()["candidates"]["small"]["cost"] == small.cost


def test_score_is_a_deprecated_name_of_cost(three_model_profile: EnergyProfile) -> None:
    # "score" meant lower-is-better here but higher-is-better in feedback; the decision's figure is "cost".
    decision = Scheduler(three_model_profile, Weights(0.7, 0.2, 0.1)).decide(input_tokens=120, max_output_tokens=256)
    costs = {name: c.cost for name, c in decision.candidates.items()}
    assert decision.model == min(costs, key=lambda m: costs[m])  # type: ignore[arg-type, return-value]
    small = decision.candidates["small"]
    with pytest.warns(DeprecationWarning, match=r"read Candidate\.cost"):
        assert small.score == small.cost
    assert decision.as_dict()["candidates"]["small"]["score"] == small.cost  # the JSON alias, for one release


def test_longer_prompts_shift_traffic_to_the_model_whose_cost_grows_slower() -> None:
    # "big" is more accurate, but its runtime and energy grow with tin*tout (attention),
    # the small model's barely do. Short prompts: big wins; long prompts: small wins.
    profile = make_profile(
        {
            "big": make_model(runtime=(0.2, 0.0, 0.02, 0.0004), energy=(10, 0, 1, 0.02), accuracy=0.8),
            "small": make_model(runtime=(0.2, 0.0, 0.025, 0.00001), energy=(10, 0, 1.2, 0.0005), accuracy=0.6),
        }
    )
    scheduler = Scheduler(profile, Weights(accuracy=0.5, energy=0.3, time=0.2), normalization="relative")
    assert scheduler.decide(input_tokens=10, max_output_tokens=50).model == "big"
    assert scheduler.decide(input_tokens=2000, max_output_tokens=50).model == "small"


def test_per_model_token_counts(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile, Weights(time=1))
    decision = scheduler.decide({"small": 10, "medium": 12, "large": 9}, 32)
    assert decision.candidates["medium"].input_tokens == 12
    with pytest.raises(UnknownModelError, match=r"no count for \['large'\]"):
        scheduler.decide({"small": 10, "medium": 12}, 32)


def test_constraints_exclude_with_reasons(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile, Weights(accuracy=1))
    decision = scheduler.decide(50, 64, constraints={"max_energy_j": 100})
    assert decision.model == "medium"
    assert "predicted energy" in decision.candidates["large"].excluded
    assert decision.candidates["large"].cost is None
    assert "large" not in decision.ranking
    decision = scheduler.decide(50, 64, constraints=Constraints(min_accuracy=0.6, max_runtime_s=2.0))
    assert decision.model == "medium"
    assert "min_accuracy" in decision.excluded["small"]


def test_context_window_constraint() -> None:
    profile = make_profile({"short": make_model(context_window=128), "long": make_model(context_window=8192)})
    decision = Scheduler(profile, Weights(energy=1)).decide(input_tokens=100, max_output_tokens=64)
    assert decision.excluded == {"short": "164 tokens needed > context window 128"}
    assert decision.model == "long"


def test_no_feasible_model_lists_every_reason(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile, Weights(accuracy=1), constraints={"max_runtime_s": 0.01})
    with pytest.raises(NoFeasibleModelError, match=r"small: predicted runtime.*medium:.*large:") as info:
        scheduler.decide(50, 64)
    assert set(info.value.reasons) == {"small", "medium", "large"}


def test_least_violating_fallback(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(
        three_model_profile, Weights(accuracy=1), constraints={"max_runtime_s": 0.01}, on_infeasible="least_violating"
    )
    decision = scheduler.decide(50, 64)
    assert decision.model == "small"
    assert decision.note and "least violating" in decision.note


def test_pareto_filter_drops_dominated() -> None:
    profile = make_profile(
        {
            "mistral": make_model(runtime=(0.1, 0, 0.02, 0), energy=(5, 0, 1, 0), accuracy=0.723),
            "falcon": make_model(runtime=(0.2, 0, 0.03, 0), energy=(9, 0, 2, 0), accuracy=0.705),
            "phi": make_model(runtime=(0.05, 0, 0.01, 0), energy=(3, 0, 0.5, 0), accuracy=0.685),
        }
    )
    decision = Scheduler(profile, Weights(accuracy=1), pareto=True).decide(20, 60)
    assert decision.excluded == {"falcon": "dominated by 'mistral' on accuracy, energy and runtime"}
    assert set(decision.ranking) == {"mistral", "phi"}


def test_forced_model_is_still_scored(three_model_profile: EnergyProfile) -> None:
    decision = Scheduler(three_model_profile, Weights(accuracy=1)).decide(50, 64, force="small")
    assert decision.model == "small" and decision.forced
    assert decision.ranking[0] == "large"
    with pytest.raises(UnknownModelError, match="Cannot force model 'huge'"):
        Scheduler(three_model_profile).decide(50, 64, force="huge")


def test_excluded_by_caller(three_model_profile: EnergyProfile) -> None:
    decision = Scheduler(three_model_profile, Weights(accuracy=1)).decide(50, 64, exclude={"large": "no tools"})
    assert decision.model == "medium"
    assert decision.excluded["large"] == "no tools"


def test_task_type_accuracy() -> None:
    profile = make_profile(
        {"a": make_model(accuracy=0.8, accuracy_by_task={"math": 0.1}), "b": make_model(accuracy=0.5)}
    )
    scheduler = Scheduler(profile, Weights(accuracy=1))
    assert scheduler.decide(10, 10).model == "a"
    assert scheduler.decide(10, 10, task_type="math").model == "b"


def test_ties_break_by_accuracy_then_energy_then_name() -> None:
    same = make_model()
    profile = make_profile({"zeta": same, "alpha": same})
    assert Scheduler(profile, Weights(time=1)).decide(10, 10).model == "alpha"
    profile = make_profile({"alpha": make_model(accuracy=0.5), "zeta": make_model(accuracy=0.9)})
    assert Scheduler(profile, Weights(time=1)).decide(10, 10).model == "zeta"


def test_decisions_are_deterministic(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile, Weights(0.4, 0.4, 0.2), normalization="hybrid")
    first = scheduler.decide(77, 100)
    for _ in range(20):
        assert scheduler.decide(77, 100) == first


def test_restrict_to_subset_and_unknown(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile, Weights(accuracy=1), models=["small", "medium"])
    assert scheduler.models == ("small", "medium")
    assert scheduler.decide(10, 10).model == "medium"
    with pytest.raises(ValueError, match="no entry for model 'xl'"):
        Scheduler(three_model_profile, models=["xl"])


@pytest.mark.parametrize(
    ("weights", "pattern"),
    [
        ({"accuracy": -1}, r"accuracy=-1.*>= 0"),
        ({"energy": math.nan}, r"energy=nan"),
        ({"time": math.inf}, r"time=inf"),
        ({"accuracy": 0, "energy": 0, "time": 0}, "All weights are zero"),
        ({"speed": 1}, r"Unknown weight name\(s\) \['speed'\]"),
        ((1, 2), "must have 3 values"),
        ("fast", "Cannot read weights"),
        ({"accuracy": "high"}, "not a number"),
    ],
)
def test_invalid_weights(weights, pattern: str) -> None:
    with pytest.raises(WeightsError, match=pattern):
        Weights.coerce(weights)


def test_weights_normalise_to_one() -> None:
    w = Weights(accuracy=7, energy=2, time=1)
    assert (w.accuracy, w.energy, w.time) == pytest.approx((0.7, 0.2, 0.1))
    assert Weights.coerce((1, 1, 2)).time == pytest.approx(0.5)


def test_bad_arguments(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile)
    with pytest.raises(ValueError, match="input_tokens=-3"):
        scheduler.decide(-3, 10)
    with pytest.raises(ValueError, match="max_output_tokens=0"):
        scheduler.decide(3, 0)
    with pytest.raises(ValueError, match="Unknown normalization 'zscore'"):
        Scheduler(three_model_profile, normalization="zscore")
    with pytest.raises(ValueError, match="Unknown constraint"):
        scheduler.decide(3, 10, constraints={"max_latency": 1})


def test_custom_normalizer(three_model_profile: EnergyProfile) -> None:
    def rank(values):
        order = sorted(values)
        return [float(order.index(v)) for v in values]

    decision = Scheduler(three_model_profile, Weights(energy=1), normalization=rank).decide(10, 10)
    assert decision.normalization == "rank"
    assert decision.model == "small"


def test_relative_keeps_small_differences_small() -> None:
    assert relative([100.0, 101.0]) == pytest.approx([0.0, 0.01])
    assert minmax([100.0, 101.0]) == pytest.approx([0.0, 1.0])
    assert relative([0.0, 2.0, 4.0]) == pytest.approx([0.0, 0.5, 1.0])


def test_hybrid_prefers_the_cheapest_unlike_the_original() -> None:
    # The original ranked by softmax(-cost) and took the lowest: the most expensive won.
    costs = [1.0, 5.0, 9.0]
    terms = hybrid(costs)
    assert terms.index(min(terms)) == 0
    assert terms == sorted(terms)
    assert hybrid([3.0, 3.0]) == [0.0, 0.0]


# -- the dominance property, for every normaliser ------------------------------
_cost = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
_acc = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=6)
_weight = st.one_of(st.just(0.0), _acc)  # zero weights often: they make score ties common


@st.composite
def _profiles_with_a_dominating_pair(draw):
    """(profile, better, worse): ``better`` is no worse than ``worse`` on every axis.

    Names are random, so a tie-break that falls back to the name before runtime (or any
    other axis) puts the dominated model first whenever its name happens to sort first.
    Each axis of ``better`` is either equal to ``worse``'s or drawn below it, so exact
    ties on some axes (and on the score) are common.
    """
    n_others = draw(st.integers(min_value=0, max_value=4))
    names = draw(st.lists(_name, min_size=2 + n_others, max_size=2 + n_others, unique=True))
    b = (draw(_acc), draw(_cost), draw(_cost))  # (accuracy, energy intercept, runtime intercept)
    a = (
        b[0] if draw(st.booleans()) else draw(st.floats(min_value=b[0], max_value=1.0)),
        b[1] if draw(st.booleans()) else draw(st.floats(min_value=0.0, max_value=b[1])),
        b[2] if draw(st.booleans()) else draw(st.floats(min_value=0.0, max_value=b[2])),
    )
    others = [(draw(_acc), draw(_cost), draw(_cost)) for _ in range(n_others)]

    def model(acc: float, energy: float, runtime: float):
        return make_model(runtime=(runtime, 0, 0, 0), energy=(energy, 0, 0, 0), accuracy=acc)

    better, worse = names[0], names[1]
    models = {better: model(*a), worse: model(*b)}
    models.update({name: model(*o) for name, o in zip(names[2:], others, strict=True)})
    return make_profile(models), better, worse


@pytest.mark.parametrize("normalization", sorted(NORMALIZERS))
@settings(max_examples=150, deadline=None)
@given(
    case=_profiles_with_a_dominating_pair(), weights=st.tuples(_weight, _weight, _weight).filter(lambda w: sum(w) > 0)
)
@example(  # equal score, accuracy and energy; "better" is faster but its name sorts last
    case=(
        make_profile(
            {
                "zz-fast": make_model(runtime=(1.0, 0, 0, 0), energy=(5.0, 0, 0, 0), accuracy=0.5),
                "aa-slow": make_model(runtime=(2.0, 0, 0, 0), energy=(5.0, 0, 0, 0), accuracy=0.5),
            }
        ),
        "zz-fast",
        "aa-slow",
    ),
    weights=(1.0, 0.0, 0.0),
)
def test_dominance_property(normalization: str, case, weights) -> None:
    """A model that dominates another never scores worse and always ranks before it."""
    profile, better, worse = case
    decision = Scheduler(profile, Weights(*weights), normalization=normalization).decide(10, 10)
    score_better = decision.candidates[better].cost
    score_worse = decision.candidates[worse].cost
    assert score_better is not None and score_worse is not None
    assert score_better <= score_worse + 1e-9
    costs = {
        name: (1.0 - c.accuracy, c.predicted_energy_j, c.predicted_runtime_s) for name, c in decision.candidates.items()
    }
    if costs[better] != costs[worse]:  # strictly dominates: no tie-break may put the other first
        assert decision.ranking.index(better) < decision.ranking.index(worse), (decision.ranking, costs)


@pytest.mark.parametrize("normalization", sorted(NORMALIZERS))
@settings(max_examples=100, deadline=None)
@given(values=st.lists(_cost, min_size=1, max_size=12))
def test_normalizers_preserve_order(normalization: str, values: list[float]) -> None:
    terms = NORMALIZERS[normalization](values)
    assert len(terms) == len(values)
    assert all(math.isfinite(t) and t >= -1e-12 for t in terms)
    for i in range(len(values)):
        for j in range(len(values)):
            if values[i] <= values[j]:
                assert terms[i] <= terms[j] + 1e-12


def test_scheduler_import_stays_light() -> None:
    code = (
        "import sys, langchain_energyrouter, langchain_energyrouter.decide.scheduler; "
        "bad = {'pandas', 'statsmodels', 'torch', 'transformers', 'pynvml', 'langchain_core', 'matplotlib'}"
        " & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_per_model_output_caps(three_model_profile: EnergyProfile) -> None:
    scheduler = Scheduler(three_model_profile, Weights(time=1))
    decision = scheduler.decide(100, {"small": 8, "medium": None, "large": 32})
    assert decision.candidates["small"].predicted_output_tokens == pytest.approx(_capped_mean(146.92, 8))
    assert decision.candidates["medium"].predicted_output_tokens == pytest.approx(1.028 * 100 + 44.12)
    assert decision.candidates["large"].predicted_output_tokens == pytest.approx(_capped_mean(146.92, 32))
    assert 7.9 < decision.candidates["small"].predicted_output_tokens < 8  # far above the cap: nearly always cut
    assert decision.candidates["small"].output_tokens_upper == 8 == decision.candidates["small"].output_tokens_median
    assert decision.as_dict()["max_output_tokens"] == {"small": 8, "medium": None, "large": 32}
    with pytest.raises(ValueError, match="max_output_tokens=0"):
        scheduler.decide(100, {"small": 0})


def test_task_type_output_length() -> None:
    from langchain_energyrouter import OutputLengthModel

    terse = make_model(runtime=(0.1, 0.0, 0.1, 0.0), energy=(1, 0, 1, 0), accuracy=0.6)
    terse = terse.model_copy(update={"output_length": OutputLengthModel(intercept=40, slope=0, by_task={"factual": 2})})
    chatty = make_model(runtime=(0.1, 0.0, 0.05, 0.0), energy=(1, 0, 0.5, 0), output=(40.0, 0.0), accuracy=0.6)
    scheduler = Scheduler(make_profile({"terse": terse, "chatty": chatty}), Weights(energy=1))
    # Per token, "terse" costs twice as much; it wins only where it is known to answer in 2 tokens.
    assert scheduler.decide(10, 64).model == "chatty"
    factual = scheduler.decide(10, 64, task_type="factual")
    assert factual.model == "terse"
    assert factual.candidates["terse"].predicted_output_tokens == pytest.approx(_capped_mean(2, 64))
    poetry = scheduler.decide(10, 64, task_type="poetry").candidates["terse"]
    assert poetry.predicted_output_tokens == pytest.approx(_capped_mean(40, 64))


_coef = st.floats(min_value=-10.0, max_value=10.0, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    runtime=st.tuples(_coef, _coef, _coef, _coef),
    energy=st.tuples(_coef, _coef, _coef, _coef),
    tin=st.integers(min_value=0, max_value=4000),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=512)),
    task=st.sampled_from([None, "math", "chat"]),
)
def test_the_scheduler_predicts_what_the_profile_predicts(runtime, energy, tin, cap, task) -> None:
    model = make_model(runtime=runtime, energy=energy, output=(12.0, 0.3), context_window=10**6)
    model = model.model_copy(update={"output_length": model.output_length.model_copy(update={"by_task": {"math": 7}})})
    candidate = Scheduler(make_profile({"m": model}), Weights(time=1)).decide(tin, cap, task_type=task).candidates["m"]
    tout = model.predict_output_tokens(tin, cap, task)
    assert candidate.predicted_output_tokens == tout
    assert (candidate.predicted_runtime_s, candidate.predicted_energy_j, candidate.flags) == model.predict(tin, tout)
