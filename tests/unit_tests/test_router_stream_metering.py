"""What a call's measured runtime holds: the model's time only (issue 17 item 4).

A stream used to stay metered until its consumer read the last chunk (a slow reader made an instant model
measure seconds, and the learner predicted seconds after it), and an async call's wait for a worker thread
was metered as model time. Real tiny models on local pipelines; the reader and the worker pool are
held by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.messages import HumanMessage

from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.energy.base import EnergyReading
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.router.stream_ahead import StreamAhead
from tests.unit_tests.test_router_metering import _tiny, entry, profile_of

QUESTION = [HumanMessage("What is the capital of France?")]
HOLD_S = 1.0


def _router() -> EnergyAwareRouter:
    profile = profile_of(**{"tiny-a": entry(), "tiny-b": entry()})
    return EnergyAwareRouter(models=_tiny(), profile=profile, meter=EstimateMeter(), learn=False)


def _metered_until_read(router: EnergyAwareRouter) -> bool:
    """Whether the attempt is still open (in flight) after the model had every chance to finish."""
    counter = router._parts().live.counter
    deadline = time.monotonic() + 30.0
    while counter.get("tiny-a") and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(counter.get("tiny-a"))


def test_a_slow_reader_is_not_metered() -> None:
    router = _router()
    chunks = router.stream(QUESTION, model="tiny-a")
    first = next(chunks)  # the model is generating; the reader now stalls
    assert not _metered_until_read(router), "the window stayed open until the reader read the last chunk"
    time.sleep(HOLD_S)
    rest = list(chunks)
    energy = rest[-1].response_metadata["energy"]
    assert first.content or any(c.content for c in rest)
    assert energy["runtime_s"] < HOLD_S  # the model's time, not the reader's


async def test_a_slow_async_reader_is_not_metered() -> None:
    router = _router()
    chunks = router.astream(QUESTION, model="tiny-a")
    await chunks.__anext__()
    assert not await asyncio.to_thread(_metered_until_read, router)
    await asyncio.sleep(HOLD_S)
    rest = [chunk async for chunk in chunks]
    assert rest[-1].response_metadata["energy"]["runtime_s"] < HOLD_S


async def test_waiting_for_a_worker_thread_is_not_metered() -> None:
    router = _router()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(1))  # one worker, which the test holds
    release = threading.Event()
    held = loop.run_in_executor(None, release.wait)
    answer: Any = asyncio.ensure_future(router.ainvoke(QUESTION, model="tiny-a"))
    await asyncio.sleep(HOLD_S)  # the call waits for the worker all this time
    release.set()
    await held
    message = await answer
    assert message.content
    assert message.response_metadata["energy"]["runtime_s"] < HOLD_S


class _Window:
    """An attempt's meter window, as :class:`StreamAhead` uses it."""

    def start_window(self) -> None:
        pass

    def end(self) -> EnergyReading:
        return EnergyReading(None, {}, 0.0, "none", is_estimate=False)


async def test_an_abandoned_async_reader_leaves_no_worker_thread_waiting() -> None:
    # A client that leaves mid-stream cancels the read while a worker thread waits for the next chunk; that
    # worker waited forever (one leaked per abandoned stream, and the process could not exit).
    model_done = threading.Event()

    def chunks() -> Iterator[str]:
        yield "first"
        model_done.wait(30)  # the model is still generating when the client leaves

    loop = asyncio.get_running_loop()
    workers = ThreadPoolExecutor(1)
    loop.set_default_executor(workers)
    ahead = StreamAhead(chunks(), _Window())
    reading = ahead.aiter()
    assert await reading.__anext__() == "first"
    waiting = asyncio.ensure_future(reading.__anext__())  # a worker now waits on the buffer
    await asyncio.sleep(0.2)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await reading.aclose()
    try:
        assert await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), 10) == "free"
    finally:
        model_done.set()
        ahead.join(30)
