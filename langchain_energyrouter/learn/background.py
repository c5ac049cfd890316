"""Learning off the request path: one writer thread applies measurements in arrival order, in batches.

:class:`BackgroundLearning` gathers the measurements of answered calls (:class:`Measurement`: the cost row for
the :class:`~langchain_energyrouter.learn.loop.LearningLoop` and, with per-prompt routing, the answer's length as a
:class:`LengthObservation`) and writes each model's learned state once per batch, so under load one store write
serves many answers and an answer never waits on the store.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from langchain_energyrouter.learn.loop import LearningLoop

__all__ = ["GATHER_S", "BackgroundLearning", "LengthObservation", "Measurement", "learn_lengths"]

logger = logging.getLogger(__name__)

GATHER_S = 0.05
"""Seconds the learning thread gathers measurements into one batch (see :class:`BackgroundLearning`)."""


class LengthObservation(NamedTuple):
    """An answer's generated length for per-prompt routing (:meth:`PromptRouting.observe_lengths`)."""

    routing: Any
    """The :class:`~langchain_energyrouter.prompt.bandit.PromptRouting` that predicted it."""
    run_id: str
    output_tokens: float
    capped: bool


class Measurement(NamedTuple):
    """One answered call's measurement, as
    :meth:`~langchain_energyrouter.router.live.LiveState.observe` hands it over."""

    model: str
    row: dict[str, Any]
    """:meth:`LearningLoop.observe` keywords."""
    length: LengthObservation | None
    """The same answer's length for per-prompt routing, learned after the row."""


def learn_lengths(lengths: list[LengthObservation]) -> None:
    """Hand each per-prompt routing its answers' lengths in one call (one store write per model)."""
    by_routing: dict[int, tuple[Any, list[tuple[str, float, bool]]]] = {}
    for length in lengths:
        by_routing.setdefault(id(length.routing), (length.routing, []))[1].append(length[1:])
    for routing, items in by_routing.values():
        try:
            routing.observe_lengths(items)
        except Exception:  # a learner bug must not stop learning: the cost rows still count
            logger.exception("Learning %d answer length(s) for per-prompt routing failed.", len(items))


class BackgroundLearning:
    """Applies measurements on one daemon thread, in arrival order, one store write per model per batch.

    After the first measurement of a batch arrives the thread gathers more for ``gather_s`` seconds, so under
    load one store write (a read, a JSON document, a commit) serves many answers instead of each paying its
    own. Nothing queued is dropped: :meth:`flush` ends the gathering at once and waits until everything
    submitted so far is applied, and :meth:`close` flushes before it stops the thread (a measurement
    submitted after that is applied inline).
    """

    def __init__(self, learning: LearningLoop | None, *, gather_s: float = GATHER_S) -> None:
        self._learning = learning
        self._gather_s = float(gather_s)
        self._queue: deque[Measurement] = deque()
        self._cond = threading.Condition()
        self._submitted = 0
        self._applied = 0
        self._flushing = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="energyrouter-learning", daemon=True)
        self._thread.start()

    def submit(self, measurement: Measurement) -> None:
        """Queue one answer's measurement (O(1); the caller never waits on the store)."""
        with self._cond:
            if not self._closed:
                self._queue.append(measurement)
                self._submitted += 1
                self._cond.notify_all()
                return
        self._apply([measurement])

    def flush(self, timeout_s: float | None = 60.0) -> bool:
        """Wait until every measurement submitted so far is applied (not those that come later); False on timeout."""
        with self._cond:
            target = self._submitted
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._applied >= target, timeout_s)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Apply what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if not self._queue:
                    return  # closed and drained
                if self._gather_s > 0:  # let more arrive: one write for many (a flush or close ends it)
                    self._cond.wait_for(lambda: self._closed or self._flushing > 0, self._gather_s)
                batch = list(self._queue)
                self._queue.clear()
            try:
                self._apply(batch)
            finally:
                with self._cond:
                    self._applied += len(batch)
                    self._cond.notify_all()

    def _apply(self, batch: list[Measurement]) -> None:
        if self._learning is not None:
            rows: dict[str, list[dict[str, Any]]] = {}
            for measurement in batch:
                rows.setdefault(measurement.model, []).append(measurement.row)
            for model, model_rows in rows.items():
                try:
                    self._learning.observe_batch(model, model_rows)
                except Exception:  # a learner bug must not stop the thread: later batches still count
                    logger.exception("Learning from %d measurement(s) of %r failed.", len(model_rows), model)
        lengths = [m.length for m in batch if m.length is not None]
        if lengths:
            learn_lengths(lengths)
