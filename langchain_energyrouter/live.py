"""What the router knows about the present moment, and how its measurements flow back.

:class:`LiveState` is the router's link between decisions and measurements:

- **Load.** It counts this process's requests in flight per candidate
  (:class:`~langchain_energyrouter.load.InFlightCounter`) and, for candidates
  served by an engine that exposes ``/metrics`` (vLLM, TGI), reads the engine's
  own count without blocking (:class:`~langchain_energyrouter.load.EngineLoadReader`).
  Before each decision it hands the scheduler ``{candidate: requests in flight if
  this one goes there}``, which the profile's load models turn into cost factors.
- **Learning.** After each answered call it feeds the measured runtime, joules and
  generated tokens to the :class:`~langchain_energyrouter.learning.LearningLoop`,
  which shares them through the state store and installs the adapted predictions
  in the scheduler: inline, or (``background=True``) on one writer thread that
  applies them in arrival order and writes each model's document once per batch
  (:class:`BackgroundLearning`), so an answer never waits on the store.

An :class:`Attempt` wraps one candidate's try: it counts the request in flight
while the meter window is open, and :meth:`Attempt.end` closes both exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from langchain_energyrouter.learning import LearningLoop
from langchain_energyrouter.load import EngineLoadReader, InFlightCounter, load_for_decision
from langchain_energyrouter.metering import MeterWindow
from langchain_energyrouter.state import StateStore, open_store

if TYPE_CHECKING:
    from langchain_energyrouter.energy.base import EnergyMeter, EnergyReading
    from langchain_energyrouter.online import OnlineOptions
    from langchain_energyrouter.scheduler import Candidate, Scheduler

logger = logging.getLogger(__name__)

GATHER_S = 0.05
"""Seconds the learning thread gathers measurements into one batch (see :class:`BackgroundLearning`)."""


class Attempt:
    """One try of one candidate: counted in flight and metered until :meth:`end`."""

    __slots__ = ("_live", "_reading", "_release", "in_flight", "name", "window")

    def __init__(
        self, live: LiveState, name: str, meter: EnergyMeter, release: Callable[[str], None] | None = None
    ) -> None:
        self._live = live
        self.name = name
        self._release = release
        self.in_flight = live.counter.increment(name)
        """Requests in flight on this candidate when the attempt began, this one included."""
        self._reading: EnergyReading | None = None
        self.window = MeterWindow(meter)

    def end(self) -> EnergyReading:
        """Close the meter window and stop counting the request (idempotent: later calls return the same reading)."""
        if self._reading is None:
            try:
                self._reading = self.window.end()  # never raises: a failing meter gives a time-only reading
            finally:
                self._live.counter.decrement(self.name)
                if self._release is not None:
                    self._release(self.name)
        return self._reading


class LengthObservation(NamedTuple):
    """An answer's generated length for per-prompt routing (:meth:`PromptRouting.observe_lengths`)."""

    routing: Any
    """The :class:`~langchain_energyrouter.bandit.PromptRouting` that predicted it."""
    run_id: str
    output_tokens: float
    capped: bool


class _Measurement(NamedTuple):
    model: str
    row: dict[str, Any]
    """:meth:`LearningLoop.observe` keywords."""
    length: LengthObservation | None
    """The same answer's length for per-prompt routing, learned after the row."""


def _learn_lengths(lengths: list[LengthObservation]) -> None:
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
        self._queue: deque[_Measurement] = deque()
        self._cond = threading.Condition()
        self._submitted = 0
        self._applied = 0
        self._flushing = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="energyrouter-learning", daemon=True)
        self._thread.start()

    def submit(self, measurement: _Measurement) -> None:
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

    def _apply(self, batch: list[_Measurement]) -> None:
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
            _learn_lengths(lengths)


class LiveState:
    """Requests in flight, engine load readers and the learning loop of one router.

    Args:
        counter: this process's in-flight counts (kept across settings changes).
        engines: candidate name -> reader of its engine's ``/metrics``.
        learning: the learning loop, or None when the router does not learn.
        store: the learned-state store.
        owns_store: whether :meth:`close` closes the store (it was opened here, not passed in).
        store_spec: what the user passed as the store (to keep the store when nothing changed).
        background: learn on a writer thread (:class:`BackgroundLearning`) instead of in the caller's.
    """

    def __init__(
        self,
        counter: InFlightCounter,
        engines: Mapping[str, EngineLoadReader],
        learning: LearningLoop | None,
        store: StateStore,
        *,
        owns_store: bool = False,
        store_spec: Any = None,
        background: bool = False,
    ) -> None:
        self.counter = counter
        self.engines = dict(engines)
        self.learning = learning
        self.store = store
        self.owns_store = owns_store
        self.store_spec = store_spec
        self.background = BackgroundLearning(learning) if background else None

    @classmethod
    def create(
        cls,
        scheduler: Scheduler,
        *,
        state_store: Any,
        learn: bool,
        online_options: OnlineOptions | None,
        engine_metrics: Mapping[str, tuple[str, str]],
        previous: LiveState | None = None,
        background: bool = False,
    ) -> LiveState:
        """The live state of a router's (re)built scheduler.

        The store and the in-flight counts outlive a settings change (``previous``); the
        learning loop is rebuilt on the new scheduler and reloads what the store holds.

        Args:
            scheduler: the scheduler to keep informed.
            state_store: the router's ``state_store`` setting (see :func:`~langchain_energyrouter.state.open_store`).
            learn: whether to learn from measurements.
            online_options: the learners' tuning.
            engine_metrics: candidate -> (metrics URL, model name the engine reports).
            previous: the state being replaced, if any (its engine readers are closed, its queue applied).
            background: learn on a writer thread (see :class:`BackgroundLearning`).
        """
        if previous is not None:
            previous.close_background()
        if previous is not None and previous.store_spec is state_store:
            store, owns = previous.store, previous.owns_store
        else:
            if previous is not None and previous.owns_store:
                previous.store.close()
            store = open_store(state_store)
            owns = store is not state_store
        counter = previous.counter if previous is not None else InFlightCounter()
        if previous is not None:
            previous.close_engines()
        engines = {name: EngineLoadReader(url, model=model) for name, (url, model) in engine_metrics.items()}
        learning = LearningLoop(scheduler, store, options=online_options) if learn else None
        return cls(counter, engines, learning, store, owns_store=owns, store_spec=state_store, background=background)

    def before_decision(self, names: Any) -> dict[str, float]:
        """Pick up shared learned state (cheap, rate-limited) and return the load each candidate would see."""
        if self.learning is not None:
            self.learning.refresh()
        engines = self.engines
        counter = self.counter
        if not engines:
            return {name: counter.get(name) + 1.0 for name in names}
        return {
            name: load_for_decision(counter.get(name), engines[name].load() if name in engines else None)
            for name in names
        }

    def attempt(self, name: str, meter: EnergyMeter, release: Callable[[str], None] | None = None) -> Attempt:
        """Begin a try of ``name`` (counted in flight, metered; ``release(name)`` is called when it ends)."""
        return Attempt(self, name, meter, release)

    def observe(
        self,
        candidate: Candidate,
        attempt: Attempt,
        reading: EnergyReading,
        output_tokens: int,
        output_cap: int | None,
        length: LengthObservation | None = None,
    ) -> None:
        """Learn from one answered call, and its ``length`` for per-prompt routing; inline or queued."""
        if self.learning is None and length is None:
            return
        row: dict[str, Any] = {
            "input_tokens": candidate.input_tokens,
            "output_tokens": output_tokens,
            "runtime_s": reading.runtime_s,
            "energy_j": reading.energy_j,
            "method": reading.method,
            "flags": reading.flags,
            "in_flight": attempt.in_flight,
            "output_capped": output_cap is not None and output_tokens >= output_cap,
        }
        if self.background is not None:
            self.background.submit(_Measurement(attempt.name, row, length))
            return
        if self.learning is not None:
            self.learning.observe_batch(attempt.name, [row])
        if length is not None:
            _learn_lengths([length])

    def flush(self, timeout_s: float | None = 60.0) -> bool:
        """Wait until every queued measurement is learned from (True at once when learning inline)."""
        return self.background.flush(timeout_s) if self.background is not None else True

    def close_background(self) -> None:
        """Apply the queued measurements and stop the writer thread (later ones are learned inline)."""
        if self.background is not None:
            self.background.close()

    def close_engines(self) -> None:
        """Stop the engine readers' background refreshes."""
        for reader in self.engines.values():
            reader.close()

    def close(self) -> None:
        """Apply queued measurements, stop the engine readers and close the store if it was opened here."""
        self.close_background()
        self.close_engines()
        if self.owns_store:
            self.store.close()


def prompt_text(messages: Any) -> str:
    """The text per-prompt features read: the last user turn (the question being asked), else everything."""
    from langchain_core.messages import HumanMessage

    from langchain_energyrouter.tokens import message_text

    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message_text(message)
    return "\n".join(message_text(m) for m in messages)


def build_prompt_routing(spec: Any, profile: Any, models: list[str], store: StateStore) -> Any:
    """The router's ``prompt_routing`` setting as a :class:`~langchain_energyrouter.bandit.PromptRouting` (or None).

    A predictor (or the path of one) gets a router-owned ``PromptRouting`` whose bandit state lives in
    the router's store, with the profile's accuracies as the prior for models the predictor lacks.
    numpy and the encoder are imported only here, only when per-prompt routing is configured.
    """
    if spec is None:
        return None
    from langchain_energyrouter.bandit import PromptRouting
    from langchain_energyrouter.quality import PromptPredictor

    if isinstance(spec, PromptRouting):
        return spec
    predictor = spec if isinstance(spec, PromptPredictor) else PromptPredictor.load(spec)
    accuracy = {name: profile.models[name].accuracy for name in models}
    return PromptRouting(models, predictor, store, prior_accuracy=accuracy)


__all__ = [
    "GATHER_S",
    "Attempt",
    "BackgroundLearning",
    "LengthObservation",
    "LiveState",
    "build_prompt_routing",
    "prompt_text",
]
