"""Exploration on the packaged models: energy-first finds the truly cheaper model without forced routes.

The README's router (two packaged models, the CPU reference profile from another machine, 24-token budget)
with ``weights={"energy": 1.0}`` asks one short question 50 times with exploration on. It must try the model
its prior rules out (so both are measured here, by the router itself), stay within the share bound, learn
from what it measured (a model read min_obs times or more: its predicted joules move towards the readings), and, where
its own measurements tell the two apart (15% or more, each model measured 3 times or more), route the last
calls to the cheaper one: one reading is not evidence on a noisy CPU (a CI run explored once, read 5.5 J
against 6.4 J and rightly kept its choice). The test prints the route, the measured joules and the expected
extra joules spent exploring. With exploration off, no decision explores, and ``explain`` never explores nor
counts against the budget.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

import pytest

from langchain_energyrouter import EnergyAwareRouter, Weights, load_chat_model
from langchain_energyrouter.models import installed_embedded_models

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        set(installed_embedded_models()) != {"smollm2-135m", "gemma3-270m"},
        reason="the embedded models' packages are not installed (make setup installs them)",
    ),
]

QUESTION = "What is 2 + 2?"
PROFILE = "calibration/profiles/cpu-reference.json"


def _models() -> dict[str, Any]:
    return {name: load_chat_model(name, max_new_tokens=24) for name in ("smollm2-135m", "gemma3-270m")}


def _router(models: Mapping[str, Any], **kwargs: Any) -> EnergyAwareRouter:
    return EnergyAwareRouter(models=dict(models), energy_profile=PROFILE, weights=Weights(energy=1.0), **kwargs)


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return _models()


def test_energy_first_explores_the_ruled_out_model_and_settles_on_the_cheaper(models: Mapping[str, Any]) -> None:
    router = _router(models, exploration=True)
    before = {n: c.predicted_energy_j for n, c in router.explain(QUESTION).candidates.items()}
    assert router.exploration_stats().calls == 0  # explain is not a routed call
    chosen: list[str] = []
    joules: dict[str, list[float]] = {name: [] for name in models}
    explored, extra_j = 0, 0.0
    for _ in range(50):
        message = router.invoke(QUESTION)
        routing = message.response_metadata["routing"]
        chosen.append(routing["model"])
        joules[routing["model"]].append(message.response_metadata["energy"]["energy_j"])
        if routing.get("explored"):
            explored += 1
            extra_j += routing["explored"]["expected_extra_energy_j"]
    means = {name: statistics.mean(v) for name, v in joules.items() if v}
    spent_j = sum(sum(v) for v in joules.values())
    print(
        f"routes: {''.join(name[0] for name in chosen)} (s: smollm2, g: gemma3); measured mean J per answer: {means}; "
        f"explored {explored} calls, expected extra {extra_j:.2f} J of {spent_j:.2f} J measured"
    )
    assert set(means) == set(models), "exploration never tried the model the prior ruled out"
    assert explored <= 0.1 * 50 + 1  # the default share bound (10% of calls), one call of slack for rounding
    stats = router.exploration_stats()
    assert (stats.calls, stats.explored) == (50, explored)
    router.flush_learning()
    after = {n: c.predicted_energy_j for n, c in router.explain(QUESTION).candidates.items()}
    for name, measured in means.items():  # a model measured min_obs (3) times or more: its prediction moved
        if len(joules[name]) < 3:  # fewer readings leave the prior's prediction (OnlineOptions.min_obs)
            continue
        assert abs(math.log(after[name] / measured)) < abs(math.log(before[name] / measured)) or (
            abs(math.log(after[name] / measured)) < math.log(1.25)
        ), (name, before[name], after[name], measured)
    cheaper, dearer = sorted(means, key=means.__getitem__)
    evidence = min(len(v) for v in joules.values()) >= 3
    if evidence and means[dearer] >= 1.15 * means[cheaper]:  # a difference the meter can tell from noise here
        assert chosen[-10:].count(cheaper) >= 8, chosen


def test_without_exploration_no_decision_explores(models: Mapping[str, Any]) -> None:
    router = _router(models)
    routes = [router.invoke(QUESTION).response_metadata["routing"] for _ in range(12)]
    assert all(not r.get("explored") for r in routes)
    assert router.explain(QUESTION).explored is None


def test_explain_neither_explores_nor_spends_the_budget(models: Mapping[str, Any]) -> None:
    router = _router(models, exploration={"share": 1.0, "max_extra_energy_share": 10.0})
    assert all(router.explain(QUESTION).explored is None for _ in range(20))
    assert router.exploration_stats().calls == 0
