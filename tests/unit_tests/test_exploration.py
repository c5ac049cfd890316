"""Exploring where predictions are uncertain: a wrong prior gets corrected, within the stated bounds."""

from __future__ import annotations

import pytest

from langchain_energyrouter.decide.exploration import ExplorationOptions, Explorer
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.learn.costs import CostLearner
from tests.conftest import make_model, make_profile

TRUE_ENERGY_J = {"cheap": 1.0, "known": 2.0}
"""What each model really uses per call; the prior says 3 J for "cheap" (measured elsewhere), 2 J for "known"."""


def _profile():  # type: ignore[no-untyped-def]
    return make_profile(
        {
            "cheap": make_model(energy=(3.0, 0.0, 0.0, 0.0), runtime=(0.5, 0.0, 0.0, 0.0)),
            "known": make_model(energy=(2.0, 0.0, 0.0, 0.0), runtime=(0.5, 0.0, 0.0, 0.0)),
        }
    )


def _route(calls: int, explorer: Explorer | None, cheap_prior_j: float = 3.0) -> list[str]:
    """Energy-first routing that learns every answer's measured joules, as a router does."""
    profile = _profile()
    if cheap_prior_j != 3.0:
        profile = make_profile(
            {
                "cheap": make_model(energy=(cheap_prior_j, 0.0, 0.0, 0.0), runtime=(0.5, 0.0, 0.0, 0.0)),
                "known": make_model(energy=(2.0, 0.0, 0.0, 0.0), runtime=(0.5, 0.0, 0.0, 0.0)),
            }
        )
    scheduler = Scheduler(profile, {"energy": 1.0})
    learner = CostLearner(profile)
    chosen = []
    for _ in range(calls):
        decision = scheduler.decide(20, 16, explorer=explorer)
        name = decision.model
        chosen.append(name)
        learner.observe(name, 20, 16, 0.5, TRUE_ENERGY_J[name], profile.energy_method)
        scheduler.set_learned(name, learner.snapshot(name))
    return chosen


def test_without_exploration_a_wrong_prior_rules_the_cheaper_model_out_for_good() -> None:
    assert set(_route(50, None)) == {"known"}


def test_exploration_finds_the_truly_cheaper_model_within_bounds() -> None:
    explorer = Explorer(ExplorationOptions(seed=0))
    chosen = _route(50, explorer)
    converged = next(i for i in range(len(chosen)) if all(c == "cheap" for c in chosen[i:]))
    assert converged < 50 and chosen[-10:] == ["cheap"] * 10
    stats = explorer.stats()
    assert stats.calls == 50 and 1 <= stats.explored <= 0.1 * 50
    assert stats.expected_extra_energy_j <= 0.05 * stats.predicted_energy_j
    assert stats.expected_extra_energy_j == pytest.approx(stats.explored * 1.0)  # 3 J predicted against 2 J


def test_an_explored_model_is_tried_until_its_readings_are_learned() -> None:
    """A prior 6x too high: a draw picks "cheap" rarely, and one or two readings leave its prior in place
    (learners wait for min_obs = 3). Following through turns each first exploration into a learned switch."""

    def runs(follow_through: int) -> tuple[int, int]:
        tried = converged = 0
        for seed in range(40):
            options = ExplorationOptions(seed=seed, follow_through=follow_through, max_extra_energy_share=1.0)
            chosen = _route(50, Explorer(options), cheap_prior_j=6.0)
            tried += "cheap" in chosen
            converged += chosen[-10:].count("cheap") >= 9
        return tried, converged

    tried, converged = runs(3)
    assert tried >= 10 and converged >= 0.9 * tried, (tried, converged)
    tried_off, converged_off = runs(0)
    assert converged_off < 0.5 * tried_off, (tried_off, converged_off)  # measured: 1 of 20 without, 19 of 20 with


def test_an_explored_decision_says_so_and_a_forced_one_never_explores() -> None:
    scheduler = Scheduler(_profile(), {"energy": 1.0})
    explorer = Explorer(ExplorationOptions(share=1.0, max_extra_energy_share=10.0, seed=1))
    decisions = [scheduler.decide(20, 16, explorer=explorer) for _ in range(40)]
    explored = [d for d in decisions if d.explored is not None]
    assert explored and all(d.model == "cheap" and d.ranking[0] == "cheap" for d in explored)
    assert explored[0].explored == {"from": "known", "expected_extra_energy_j": pytest.approx(1.0)}
    assert explored[0].as_dict()["explored"]["from"] == "known"
    assert all(d.explored is None and d.model == "known" for d in decisions if d not in explored)
    forced = [scheduler.decide(20, 16, force="known", explorer=explorer) for _ in range(40)]
    assert all(d.explored is None and d.model == "known" for d in forced)


def test_the_share_bound_holds_whatever_the_draws() -> None:
    scheduler = Scheduler(_profile(), {"energy": 1.0})
    explorer = Explorer(ExplorationOptions(share=0.05, max_extra_energy_share=10.0, prior_log_sd=5.0, seed=2))
    for _ in range(400):
        scheduler.decide(20, 16, explorer=explorer)
    assert 0 < explorer.stats().explored <= 0.05 * 400


def test_options_are_validated_and_coerced() -> None:
    assert ExplorationOptions.coerce(None) is None and ExplorationOptions.coerce(False) is None
    assert ExplorationOptions.coerce(True) == ExplorationOptions()
    assert ExplorationOptions.coerce({"share": 0.2}).share == 0.2  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"Unknown exploration option\(s\) \['shares'\]"):
        ExplorationOptions.coerce({"shares": 0.2})
    with pytest.raises(ValueError, match=r"ExplorationOptions.share is 1.5; expected a share in \[0, 1\]"):
        ExplorationOptions(share=1.5)
