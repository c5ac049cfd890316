"""Deciding once: ``router.plan(...)`` then ``invoke(routed=call)``, per-call ``exclude``, admission, and learning
off the request path (``learn_in_background``), with the real tiny offline models."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.decide.predictions import ADAPTED
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.errors import CandidatesBusyError, RoutingError, UnknownModelError
from langchain_energyrouter.learn.loop import COST_KIND, LearningLoop
from langchain_energyrouter.router.call import Admission, RoutedCall
from langchain_energyrouter.state import MemoryStateStore, SQLiteStateStore
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

QUESTION = [HumanMessage("What is the capital of France?")]


@pytest.fixture(scope="module")
def tiny() -> dict[str, BaseChatModel]:
    return dict(tiny_chat_models(max_new_tokens=4))


def _router(tiny: dict[str, BaseChatModel], **options: object) -> EnergyAwareRouter:
    return EnergyAwareRouter(models=tiny, profile=tiny_profile(), meter=EstimateMeter(), **options)


class _Slots:
    """A per-candidate limit, as a server keeps one."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.counts = dict.fromkeys(limits, 0)

    def try_acquire(self, name: str) -> bool:
        if self.counts[name] >= self.limits[name]:
            return False
        self.counts[name] += 1
        return True

    def release(self, name: str) -> None:
        self.counts[name] -= 1


def test_a_planned_call_runs_its_decision_once_and_stays_routed(tiny: dict[str, BaseChatModel]) -> None:
    router = _router(tiny, weights={"energy": 1.0})
    call = router.plan(QUESTION)
    assert isinstance(call, RoutedCall) and call.order[0] == call.model == "tiny-a"
    assert call.order == ["tiny-a", "tiny-b"]  # the fallback order: the rest of the ranking
    message = router.invoke(QUESTION, routed=call)
    routing = message.response_metadata["routing"]
    assert routing["served_by"] == routing["model"] == "tiny-a"
    assert routing["forced"] is False and routing["run_id"] == call.run_id is not None
    with pytest.raises(RoutingError, match="has run already"):
        router.invoke(QUESTION, routed=call)
    with pytest.raises(TypeError, match="RoutedCall"):
        router.invoke(QUESTION, routed="tiny-a")
    streamed = list(router.stream(QUESTION, routed=router.plan(QUESTION, weights={"accuracy": 1.0})))
    finals = [c for c in streamed if "routing" in c.response_metadata]
    assert len(finals) == 1 and finals[0].response_metadata["routing"]["served_by"] == "tiny-b"


async def test_exclude_routes_around_a_candidate_and_says_why(tiny: dict[str, BaseChatModel]) -> None:
    router = _router(tiny, weights={"energy": 1.0})
    message = await router.ainvoke(QUESTION, exclude={"tiny-a": "at its limit of 1 requests in flight"})
    routing = message.response_metadata["routing"]
    assert routing["served_by"] == "tiny-b" and routing["forced"] is False
    assert routing["excluded"] == {"tiny-a": "at its limit of 1 requests in flight"}
    assert router.explain(QUESTION, exclude=["tiny-a"]).excluded == {"tiny-a": "excluded by the caller"}
    with pytest.raises(UnknownModelError, match="exclude names unknown"):
        router.explain(QUESTION, exclude={"gpt-9": "no"})
    configured = {"configurable": {"energyrouter_exclude": {"tiny-a": "maintenance"}}}
    assert router.invoke(QUESTION, config=configured).response_metadata["routing"]["served_by"] == "tiny-b"


async def test_admission_skips_a_full_candidate_and_frees_every_place(tiny: dict[str, BaseChatModel]) -> None:
    router = _router(tiny, weights={"energy": 1.0})
    slots = _Slots({"tiny-a": 0, "tiny-b": 1})
    assert isinstance(slots, Admission)
    message = await router.ainvoke(QUESTION, admission=slots)
    routing = message.response_metadata["routing"]
    assert routing["model"] == "tiny-a" and routing["served_by"] == "tiny-b"  # the router fell back itself
    assert routing["busy"] == {"tiny-a": "at its limit of requests in flight"} and routing["failures"] == []
    assert slots.counts == {"tiny-a": 0, "tiny-b": 0}
    chunks = [c async for c in router.astream(QUESTION, admission=slots)]
    assert [c.response_metadata["routing"]["served_by"] for c in chunks if "routing" in c.response_metadata] == [
        "tiny-b"
    ]
    assert slots.counts == {"tiny-a": 0, "tiny-b": 0}
    full = _Slots({"tiny-a": 0, "tiny-b": 0})
    with pytest.raises(CandidatesBusyError) as caught:
        await router.ainvoke(QUESTION, admission=full)
    assert set(caught.value.busy) == {"tiny-a", "tiny-b"}
    call = router.plan(QUESTION, admission=slots)  # an abandoned call gives its places back on close()
    assert call.attempt("tiny-b") is not None and slots.counts["tiny-b"] == 1
    call.close()
    assert slots.counts["tiny-b"] == 0


def test_background_learning_loses_no_measurement(tiny: dict[str, BaseChatModel], tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    router = _router(tiny, state_store=str(path), learn_in_background=True)
    for _ in range(5):
        router.invoke(QUESTION, model="tiny-a")
    assert router.flush_learning(timeout_s=30)
    a = router.explain(QUESTION).candidates["tiny-a"]
    assert a.sources["runtime"] == ADAPTED and a.observations["runtime"] == 5
    for _ in range(3):
        router.invoke(QUESTION, model="tiny-a")
    router.close()  # applies what is still queued
    again = _router(tiny, state_store=str(path))
    assert again.explain(QUESTION).candidates["tiny-a"].observations["runtime"] == 8
    again.close()


def test_the_learning_thread_gathers_a_batch_and_a_flush_ends_the_gathering(tmp_path: Path) -> None:
    from langchain_energyrouter.learn.background import BackgroundLearning, Measurement

    profile = tiny_profile()
    store = SQLiteStateStore(tmp_path / "gather.sqlite")
    loop = LearningLoop(Scheduler(profile), store)
    background = BackgroundLearning(loop, gather_s=600.0)  # gathers for ten minutes unless a flush ends it
    for i in range(4):
        row = {"input_tokens": 10 + i, "output_tokens": 4, "runtime_s": 0.01 * (i + 1), "energy_j": 0.1,
               "method": profile.energy_method, "flags": (), "in_flight": 1, "output_capped": False}  # fmt: skip
        background.submit(Measurement("tiny-a", row, None))
    assert background.flush(timeout_s=20)  # not 600 s: the flush cut the gathering short
    document = store.get(COST_KIND, "tiny-a")
    assert document is not None and document.version == 1  # four answers, one store write
    assert loop.learner.snapshot("tiny-a").n_runtime == 4  # type: ignore[union-attr]
    background.submit(Measurement("tiny-a", row, None))
    closing = threading.Thread(target=background.close)
    closing.start()
    closing.join(20)
    assert not closing.is_alive()  # a close ends the gathering too, and applies what was queued first
    assert loop.learner.snapshot("tiny-a").n_runtime == 5  # type: ignore[union-attr]
    store.close()


def test_a_batch_of_measurements_is_one_store_write_with_the_same_result(tmp_path: Path) -> None:
    profile = tiny_profile()
    rows = [
        {"input_tokens": 10 + i, "output_tokens": 4, "runtime_s": 0.01 * (i + 1), "energy_j": 0.1 * (i + 1),
         "method": profile.energy_method, "flags": (), "in_flight": 1, "output_capped": False}
        for i in range(6)
    ]  # fmt: skip
    one_by_one = LearningLoop(Scheduler(profile), MemoryStateStore())
    for row in rows:
        one_by_one.observe("tiny-a", **row)  # type: ignore[arg-type]
    store = SQLiteStateStore(tmp_path / "batch.sqlite")
    batched = LearningLoop(Scheduler(profile), store)
    assert batched.observe_batch("tiny-a", rows) == 6
    document = store.get(COST_KIND, "tiny-a")
    assert document is not None and document.version == 1
    assert batched.learner.snapshot("tiny-a") == one_by_one.learner.snapshot("tiny-a")
    store.close()


def test_per_candidate_caps_reach_each_candidate(tiny: dict[str, BaseChatModel]) -> None:
    router = _router(tiny)
    call = router.plan(QUESTION, model="tiny-b", max_tokens={"tiny-a": 2, "tiny-b": 3})
    assert call.cap_for("tiny-a") == 2 and call.cap_for("tiny-b") == 3
    assert call.decision.max_output_tokens == {"tiny-a": 2, "tiny-b": 3}
    answer = router.invoke(QUESTION, routed=call)
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] <= 3
    assert answer.response_metadata["routing"]["generated_tokens"] == 3
    kept = router.invoke(QUESTION, model="tiny-a", max_tokens={"tiny-b": 1})  # tiny-a keeps its own budget (4)
    assert kept.response_metadata["routing"]["generated_tokens"] == 4
    with pytest.raises(UnknownModelError, match="max_tokens names unknown model"):
        router.plan(QUESTION, max_tokens={"tiny-z": 2})
    with pytest.raises(ValueError, match=r"max_tokens\['tiny-a'\]=0"):
        router.plan(QUESTION, max_tokens={"tiny-a": 0})
