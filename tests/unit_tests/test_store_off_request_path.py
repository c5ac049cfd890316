"""A decision never waits on the learned-state store: neither on a slow read of what other processes learned,
nor on the lock a learning thread holds while its write is slow. The real SQLite store, with reads or writes
held until the test releases them; the real tiny offline models."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.learn.loop import LearningLoop
from langchain_energyrouter.learn.options import OnlineOptions
from langchain_energyrouter.prompt.encoders import HashingEncoder
from langchain_energyrouter.prompt.routing import PromptRouting
from langchain_energyrouter.state import SQLiteStateStore
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

QUESTION = [HumanMessage("What is the capital of France?")]

GUARD_S = 10.0
"""The longest a held store operation waits before it goes on anyway: only a guard against a hung test (a
decision that waits on the store returns after it, with the operation no longer held)."""


class HeldStore(SQLiteStateStore):
    """The real SQLite store whose reads (``items``) or writes (``put``) wait, once :meth:`hold` says so, until
    :meth:`release` (at most :data:`GUARD_S`): a slow disk or a distant server, made deterministic."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.holding: frozenset[str] = frozenset()
        self.released = threading.Event()
        self.entered = {"items": threading.Event(), "put": threading.Event()}
        self.inside = {"items": 0, "put": 0}
        """Held operations in progress, by name."""
        self.held_threads: set[int] = set()

    def hold(self, *operations: str) -> None:
        self.released.clear()
        self.holding = frozenset(operations)

    def release(self) -> None:
        self.holding = frozenset()
        self.released.set()

    def _wait(self, operation: str) -> None:
        if operation not in self.holding:
            return
        self.held_threads.add(threading.get_ident())
        self.inside[operation] += 1
        self.entered[operation].set()
        try:
            self.released.wait(GUARD_S)
        finally:
            self.inside[operation] -= 1

    def items(self, kind: str) -> Any:
        self._wait("items")
        return super().items(kind)

    def put(self, kind: str, key: str, payload: Any, *, expected_version: int | None) -> int | None:
        self._wait("put")
        return super().put(kind, key, payload, expected_version=expected_version)


@pytest.fixture(scope="module")
def tiny() -> dict[str, BaseChatModel]:
    return dict(tiny_chat_models(max_new_tokens=4))


def _router(tiny: dict[str, BaseChatModel], store: Any) -> EnergyAwareRouter:
    return EnergyAwareRouter(
        models=tiny, profile=tiny_profile(), meter=EstimateMeter(), state_store=store, learn_in_background=True,
        online_options=OnlineOptions(min_obs=1),  # each reading counts in the decision at once
    )  # fmt: skip


def _learning(router: EnergyAwareRouter) -> LearningLoop:
    learning = router._parts().live.learning
    assert learning is not None
    learning.refresh_s = 0.0  # a read of other processes' updates is due before every decision ...
    learning.refresh(force=True)  # ... from this one on
    return learning


def _runtime_observations(router: EnergyAwareRouter, **plan: Any) -> int:
    call = router.plan(QUESTION, **plan)
    try:
        return call.decision.candidates["tiny-a"].observations["runtime"]
    finally:
        call.close()


def test_a_decision_does_not_wait_on_a_slow_store_read(tiny: dict[str, BaseChatModel], tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = HeldStore(path)
    router = _router(tiny, store)
    router.invoke(QUESTION, model="tiny-a")
    assert router.flush_learning(timeout_s=30)
    learning = _learning(router)
    other = EnergyAwareRouter(
        models=tiny, profile=tiny_profile(), meter=EstimateMeter(), state_store=str(path),
        online_options=OnlineOptions(min_obs=1),
    )  # fmt: skip
    for _ in range(2):  # another process learns two more answers of tiny-a in the shared file
        other.invoke(QUESTION, model="tiny-a")
    other.close()
    store.hold("items")
    try:
        before = _runtime_observations(router)  # a read is due: it starts, and the decision goes on without it
        assert store.entered["items"].wait(GUARD_S)
        assert store.inside["items"] == 1, "the decision waited for the store read"
        assert threading.get_ident() not in store.held_threads  # the read is on another thread
        assert before == 1  # the snapshot it had
    finally:
        store.release()
    assert learning.wait_for_refresh(timeout_s=30)
    assert _runtime_observations(router) == 3  # the read's snapshot, swapped in for the next decision
    router.close()
    store.close()


def test_a_decision_does_not_wait_on_the_learning_thread_writing(
    tiny: dict[str, BaseChatModel], tmp_path: Path
) -> None:
    store = HeldStore(tmp_path / "state.sqlite")
    router = _router(tiny, store)
    learning = _learning(router)
    store.hold("put")
    try:
        router.invoke(QUESTION, model="tiny-a")  # its measurement goes to the learning thread, whose write is held
        assert store.entered["put"].wait(GUARD_S)  # it holds the learning loop's lock while it writes
        assert _runtime_observations(router) == 0  # a read of shared state is due: started, not waited for
        assert store.inside["put"] == 1, "the decision waited for the learning thread's write"
    finally:
        store.release()
    assert router.flush_learning(timeout_s=30) and learning.wait_for_refresh(timeout_s=30)
    assert _runtime_observations(router) == 1
    router.close()
    store.close()


def test_a_prompt_prediction_does_not_wait_on_the_store_or_a_writer(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "state.sqlite")
    routing = PromptRouting(
        ("tiny-a", "tiny-b"),
        None,
        store,
        prior_accuracy={"tiny-a": 0.4, "tiny-b": 0.8},
        prior_output_tokens={"tiny-a": 64.0, "tiny-b": 64.0},
        encoder=HashingEncoder(256),
        refresh_s=0.0,
    )
    estimate = routing.predict("Add 3 and 4.", 6, None)
    routing.remember("r1", "tiny-a", estimate)
    store.hold("items", "put")
    writer = threading.Thread(target=routing.feedback, args=("r1", 1.0))
    try:
        writer.start()
        assert store.entered["put"].wait(GUARD_S)  # the feedback's write holds the routing's lock
        routing.predict("Add 3 and 4.", 6, None)  # a read is due: started in the background
        assert store.entered["items"].wait(GUARD_S)
        assert store.inside == {"items": 1, "put": 1}, "the prediction waited for the store or the writer"
    finally:
        store.release()
    writer.join(30)
    assert routing.wait_for_refresh(timeout_s=30)
    assert routing.predict("Add 3 and 4.", 6, None).accuracy["tiny-a"] > estimate.accuracy["tiny-a"]
    assert routing.close() and routing.errors == 0
    store.close()
