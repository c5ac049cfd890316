"""plan() latency when the learned-state store is slow (issue 17, item 9).

A router with ``learn_in_background`` (as the server runs it) on the real tiny offline models and the real
SQLite store, whose reads (``items``) sleep ``READ_S`` and writes (``put``) sleep ``WRITE_S``: a slow disk or
a distant Redis. It times ``router.plan(...)``

* when a read of other processes' updates is due (every decision here: ``refresh_s = 0``);
* while the learning thread's write is in progress (it holds the learning loop's lock).

A decision should take milliseconds in both: the read runs on a background thread and the decision uses the
snapshot it has.

Run: ``python benchmarks/bench_slow_store.py``
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from langchain_core.messages import HumanMessage

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.state import SQLiteStateStore
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

READ_S = 2.0
WRITE_S = 3.0
QUESTION = [HumanMessage("What is the capital of France?")]


class SlowStore(SQLiteStateStore):
    """The SQLite store, with reads and writes slowed once :attr:`slow` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.slow = False
        self.writing = threading.Event()

    def items(self, kind: str) -> Any:
        if self.slow:
            time.sleep(READ_S)
        return super().items(kind)

    def put(self, kind: str, key: str, payload: Any, *, expected_version: int | None) -> int | None:
        if self.slow:
            self.writing.set()
            time.sleep(WRITE_S)
        return super().put(kind, key, payload, expected_version=expected_version)


def plan_s(router: EnergyAwareRouter) -> float:
    start = time.perf_counter()
    router.plan(QUESTION).close()
    return time.perf_counter() - start


def main() -> None:
    with TemporaryDirectory() as tmp:
        store = SlowStore(Path(tmp) / "state.sqlite")
        router = EnergyAwareRouter(
            models=dict(tiny_chat_models(max_new_tokens=4)),
            profile=tiny_profile(),
            meter=EstimateMeter(),
            state_store=store,
            learn_in_background=True,
        )
        router.invoke(QUESTION)
        learning = router._parts().live.learning
        assert learning is not None
        learning.refresh_s = 0.0  # a read is due before every decision
        learning.refresh(force=True)
        fast = min(plan_s(router) for _ in range(20))
        store.slow = True
        read = max(plan_s(router) for _ in range(3))
        time.sleep(READ_S + 0.5)  # let a background read (if any) end
        router.invoke(QUESTION)  # its measurement goes to the learning thread, whose write is slow
        store.writing.wait(10)
        write = plan_s(router)
        store.slow = False
        router.flush_learning(timeout_s=30)
        router.close()
        store.close()
    print(f"plan() with a fast store:                      {fast * 1000:8.2f} ms (fastest of 20)")
    print(f"plan() with a {READ_S:.0f} s store read due:              {read * 1000:8.2f} ms (slowest of 3)")
    print(f"plan() during a {WRITE_S:.0f} s write by the learning thread: {write * 1000:8.2f} ms")


if __name__ == "__main__":
    main()
