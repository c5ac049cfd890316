"""Per-candidate places of the routing server, and a bounded queue of requests waiting for one.

Each candidate serves at most its limit of requests at once (:class:`Slots`, the router's
:class:`~langchain_energyrouter.router.call.Admission`). When every candidate a request could use is full,
it may wait for a place (``limits.queue_length`` requests at most, each ``limits.max_queue_wait_s`` at
most) instead of getting 429 at once. Waiting costs no thread: a waiter is an :class:`asyncio.Future`
that a release resolves. A released place goes straight to the first waiter (in arrival order) that can
use it, so a request that arrives later never takes it first. Every call holds its place in a
:class:`HeldPlace` from its decision to its first attempt: two requests decided at once never both count on
the same free place.

Releases come from the event loop and from the threads that read streams ahead, hence one lock, and
waiters are woken with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from langchain_energyrouter.server.metrics import ServerMetrics

__all__ = ["HeldPlace", "Slots", "Wait"]


@dataclass(eq=False)
class _Waiter:
    eligible: frozenset[str]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    granted: str | None = None
    """The candidate whose place was handed to this waiter (set under the lock by a release)."""


@dataclass(frozen=True)
class Wait:
    """How a wait for a place ended."""

    outcome: Literal["granted", "queue_full", "timeout", "abandoned"]
    """``granted``: a place was handed over (``name``); ``queue_full``: refused at once (no queue, or it is
    full); ``timeout``: no place came within ``max_queue_wait_s``; ``abandoned``: the waiter gave up first (its
    client left)."""
    name: str | None = None
    waited_s: float = 0.0


class Slots:
    """Requests in flight per candidate, bounded, and requests waiting for a place, bounded (see the module doc).

    Args:
        limits: candidate name -> requests it serves at once.
        metrics: the server's series (``in_flight``, ``queued``, ``queue_wait_seconds``).
        queue_length: requests that may wait at once (0: none wait, a full server refuses at once).
        max_wait_s: longest one request waits, seconds.
    """

    def __init__(
        self, limits: Mapping[str, int], metrics: ServerMetrics, *, queue_length: int = 0, max_wait_s: float = 0.0
    ) -> None:
        self.limits = dict(limits)
        self.counts = dict.fromkeys(limits, 0)
        self.queue_length = queue_length
        self.max_wait_s = max_wait_s
        self._metrics = metrics
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a place now."""
        return len(self._waiters)

    def try_acquire(self, name: str) -> bool:
        with self._lock:
            if self.counts[name] >= self.limits[name]:
                return False
            self.counts[name] += 1
            self._metrics.in_flight.labels(model=name).set(self.counts[name])
            return True

    def release(self, name: str) -> None:
        """Give back a place on ``name``: to the first waiter that can use it, else free it."""
        with self._lock:
            while (waiter := next((w for w in self._waiters if name in w.eligible), None)) is not None:
                self._waiters.remove(waiter)
                self._metrics.queued.set(len(self._waiters))
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its loop has closed (the server stopped): nobody waits there any more
                    continue
                waiter.granted = name  # the place passes on: the count stays (read by the waiter under the lock)
                return
            self.counts[name] -= 1
            self._metrics.in_flight.labels(model=name).set(self.counts[name])

    def full(self) -> dict[str, str]:
        """Candidates without a free place, and why (the reason the decision shows)."""
        with self._lock:
            return {
                name: f"at its limit of {limit} requests in flight"
                for name, limit in self.limits.items()
                if self.counts[name] >= limit
            }

    async def wait(self, eligible: Sequence[str], abandon: Callable[[], Awaitable[None]] | None = None) -> Wait:
        """Wait for a place on one of ``eligible`` (call it when all of them are full).

        Refused at once when the queue is off or full; a place freed meanwhile is taken at once. ``abandon``:
        awaited beside the wait once the request queues; when it returns first (the client left), the request
        leaves the queue, so no place goes to it.
        """
        loop = asyncio.get_running_loop()
        names = frozenset(eligible)
        with self._lock:
            for name in eligible:  # freed since the caller looked: no need to queue
                if self.counts[name] < self.limits[name]:
                    self.counts[name] += 1
                    self._metrics.in_flight.labels(model=name).set(self.counts[name])
                    return Wait("granted", name)
            if len(self._waiters) >= self.queue_length:
                return Wait("queue_full")
            waiter = _Waiter(names, loop.create_future(), loop)
            self._waiters.append(waiter)
            self._metrics.queued.set(len(self._waiters))
        started = time.perf_counter()
        watch = asyncio.ensure_future(abandon()) if abandon is not None else None
        try:
            await asyncio.wait(
                {waiter.future} if watch is None else {waiter.future, watch},
                timeout=self.max_wait_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:  # cancelled (shutdown): leave the queue, or give back a place handed over meanwhile
            if self._leave(waiter) is not None:
                self.release(str(waiter.granted))
            self._metrics.queue_wait.observe(time.perf_counter() - started)
            raise
        finally:
            if watch is not None:
                watch.cancel()
        granted = self._leave(waiter)
        waited_s = time.perf_counter() - started
        self._metrics.queue_wait.observe(waited_s)
        if granted is None:
            gave_up = watch is not None and watch.done() and not watch.cancelled()
            return Wait("abandoned" if gave_up else "timeout", waited_s=waited_s)
        return Wait("granted", granted, waited_s)

    def _leave(self, waiter: _Waiter) -> str | None:
        """Take ``waiter`` off the queue unless a release handed it a place; the place's candidate, else None."""
        with self._lock:
            if waiter.granted is None and waiter in self._waiters:
                self._waiters.remove(waiter)
                self._metrics.queued.set(len(self._waiters))
            return waiter.granted


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(eq=False)
class HeldPlace:
    """One call's admission, holding a place from its decision to its first attempt.

    The server takes the place of the decided candidate as it decides (or is handed one by the queue), so no
    other request can take it in between; the first attempt there uses it, an attempt that takes a place
    elsewhere gives it back, and so does :meth:`close` when no attempt used it.
    """

    slots: Slots
    held: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, name: str) -> bool:
        """Hold a place on ``name`` (giving back one held elsewhere); False when it has none free."""
        with self._lock:
            if name == self.held:
                return True
        if not self.slots.try_acquire(name):
            return False
        self.close()
        with self._lock:
            self.held = name
        return True

    def try_acquire(self, name: str) -> bool:
        with self._lock:
            if name == self.held:
                self.held = None
                return True
        taken = self.slots.try_acquire(name)
        if taken:
            self.close()
        return taken

    def release(self, name: str) -> None:
        self.slots.release(name)

    def close(self) -> None:
        """Give back the held place if no attempt used it (idempotent)."""
        with self._lock:
            held, self.held = self.held, None
        if held is not None:
            self.slots.release(held)
