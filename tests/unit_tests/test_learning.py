"""LearningLoop: measured calls -> online learners -> shared store -> the scheduler's next decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_energyrouter.cli import main
from langchain_energyrouter.decide.predictions import ADAPTED, PRIOR
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.learn.loop import COST_KIND, LearningLoop, profile_fingerprint
from langchain_energyrouter.profile import CostModel
from langchain_energyrouter.state import MemoryStateStore, SQLiteStateStore
from langchain_energyrouter.testing import tiny_profile


def _observe_slow(loop: LearningLoop, model: str, n: int, factor: float, method: str = "estimate") -> None:
    """Calls of ``model`` that take ``factor`` times the prior's prediction (20 in, 10 out tokens)."""
    prior = loop.scheduler.profile.models[model].predict(20, 10)
    for _ in range(n):
        loop.observe(
            model,
            input_tokens=20,
            output_tokens=10,
            runtime_s=prior.runtime_s * factor,
            energy_j=prior.energy_j * factor,
            method=method,
        )


def test_measurements_move_the_next_decision_and_say_so() -> None:
    scheduler = Scheduler(tiny_profile(), {"energy": 1.0})
    loop = LearningLoop(scheduler, MemoryStateStore())
    before = scheduler.decide(20, 10)
    assert before.model == "tiny-a" and before.chosen.sources["runtime"] == PRIOR
    # tiny-a turns out 20x costlier than its profile says (tiny-b is 5x tiny-a in the profile).
    _observe_slow(loop, "tiny-a", 40, 20.0)
    after = scheduler.decide(20, 10)
    a = after.candidates["tiny-a"]
    assert dict(a.sources) == {"runtime": ADAPTED, "energy": ADAPTED, "output_tokens": ADAPTED, "accuracy": PRIOR}
    assert a.observations["runtime"] == 40 and a.observations["energy"] == 40
    prior = tiny_profile().models["tiny-a"].predict(20, 10)
    assert a.predicted_energy_j == pytest.approx(prior.energy_j * 20.0, rel=0.1)
    assert after.model == "tiny-b"  # the decision changed because of what was measured
    assert after.as_dict()["candidates"]["tiny-a"]["sources"]["energy"] == ADAPTED


def test_estimated_joules_never_train_a_measured_profile() -> None:
    profile = tiny_profile().model_copy(update={"energy_method": "nvml_counter"})
    scheduler = Scheduler(profile, {"energy": 1.0})
    loop = LearningLoop(scheduler, MemoryStateStore())
    _observe_slow(loop, "tiny-a", 10, 3.0, method="estimate")
    a = scheduler.decide(20, 10).candidates["tiny-a"]
    assert a.sources["runtime"] == ADAPTED  # time is time, whatever measured the joules
    assert a.sources["energy"] == PRIOR and a.observations["energy"] == 0
    assert any("method estimate" in reason for reason in loop.ignored)


def test_two_routers_share_what_they_learn_through_one_store(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    first = LearningLoop(Scheduler(tiny_profile()), SQLiteStateStore(path))
    second = LearningLoop(Scheduler(tiny_profile()), SQLiteStateStore(path), refresh_s=3600)
    _observe_slow(first, "tiny-b", 5, 2.0)
    assert second.scheduler.decide(20, 10).candidates["tiny-b"].sources["runtime"] == PRIOR  # not refreshed yet
    second.refresh(force=True)
    shared = second.scheduler.decide(20, 10).candidates["tiny-b"]
    assert shared.sources["runtime"] == ADAPTED and shared.observations["runtime"] == 5
    # The second router adds to the same state rather than overwriting it.
    _observe_slow(second, "tiny-b", 3, 2.0)
    first.refresh(force=True)
    assert first.scheduler.decide(20, 10).candidates["tiny-b"].observations["runtime"] == 8
    # A reset in one router reaches the other on its next refresh.
    assert first.reset("tiny-b") == 1
    second.refresh(force=True)
    assert second.scheduler.decide(20, 10).candidates["tiny-b"].sources["runtime"] == PRIOR


def test_state_learned_against_another_profile_is_not_inherited() -> None:
    store = MemoryStateStore()
    old = LearningLoop(Scheduler(tiny_profile()), store)
    _observe_slow(old, "tiny-a", 5, 4.0)
    entry = tiny_profile().models["tiny-a"]
    recalibrated = tiny_profile().with_models(
        {"tiny-a": entry.model_copy(update={"runtime": CostModel(intercept=1.0, input_tokens=0.0, output_tokens=0.1)})}
    )
    assert profile_fingerprint(recalibrated, "tiny-a") != profile_fingerprint(tiny_profile(), "tiny-a")
    fresh = LearningLoop(Scheduler(recalibrated), store)
    assert fresh.scheduler.decide(20, 10).candidates["tiny-a"].sources["runtime"] == PRIOR
    assert set(fresh.scheduler.decide(20, 10).candidates["tiny-b"].sources.values()) == {PRIOR}


def test_a_failing_store_never_fails_the_call(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    loop = LearningLoop(Scheduler(tiny_profile()), store)
    store.close()
    assert (
        loop.observe("tiny-a", input_tokens=5, output_tokens=5, runtime_s=1.0, energy_j=1.0, method="estimate") is False
    )
    assert loop.errors == 1
    loop.refresh(force=True)
    assert loop.errors == 2


def test_state_show_and_reset_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.sqlite"
    loop = LearningLoop(Scheduler(tiny_profile()), SQLiteStateStore(path))
    _observe_slow(loop, "tiny-a", 4, 2.0)
    assert main(["state", "show", "--store", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"{COST_KIND}/tiny-a" in text and "observations=4" in text
    assert main(["state", "show", "--store", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["documents"][COST_KIND]["tiny-a"]["runtime"]["observations"] == 4
    assert main(["state", "reset", "--store", str(path), "--model", "tiny-a"]) == 0
    assert "Removed 1 learned-state entry" in capsys.readouterr().out
    assert main(["state", "show", "--store", str(path)]) == 0
    assert "nothing learned yet" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["show", "reset"])
def test_state_cli_refuses_a_missing_path_or_a_database_that_is_not_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    import sqlite3

    missing = tmp_path / "typo" / "state.sqlite"
    assert main(["state", action, "--store", str(missing)]) == 1
    assert "No state store at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()

    other = tmp_path / "app.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE documents (kind TEXT, key TEXT)")
    db.execute("INSERT INTO documents VALUES ('cost', 'x')")
    db.commit()
    db.close()
    before = other.read_bytes()
    assert main(["state", action, "--store", str(other)]) == 1
    assert "is not an energyrouter state store" in capsys.readouterr().err
    assert other.read_bytes() == before
    assert not (tmp_path / "app.sqlite-wal").exists()
