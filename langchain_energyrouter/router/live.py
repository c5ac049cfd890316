"""What the router knows about the present moment, and how its measurements flow back.

:class:`LiveState` is the router's link between decisions and measurements:

- **Load.** It counts this process's requests in flight per candidate
  (:class:`~langchain_energyrouter.router.inflight.InFlightCounter`) and, for candidates
  served by an engine that exposes ``/metrics`` (vLLM, TGI), reads the engine's
  own count without blocking (:class:`~langchain_energyrouter.router.inflight.EngineLoadReader`).
  Before each decision it hands the scheduler ``{candidate: requests in flight if
  this one goes there}``, which the profile's load models turn into cost factors.
- **Learning.** After each answered call it feeds the measured runtime, joules and
  generated tokens to the :class:`~langchain_energyrouter.learn.loop.LearningLoop`,
  which shares them through the state store and installs the adapted predictions
  in the scheduler: inline, or (``background=True``) on one writer thread that
  applies them in arrival order and writes each model's document once per batch
  (:class:`~langchain_energyrouter.learn.background.BackgroundLearning`), so an answer never waits on the store.
  What other processes learned is read on a background thread too
  (:meth:`~langchain_energyrouter.learn.loop.LearningLoop.refresh_soon`): a decision never waits on the store.

An :class:`Attempt` wraps one candidate's try: it counts the request in flight
while the meter window is open, and :meth:`Attempt.end` closes both exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.energy.metering import MeterWindow
from langchain_energyrouter.learn.background import BackgroundLearning, LengthObservation, Measurement, learn_lengths
from langchain_energyrouter.learn.loop import LearningLoop
from langchain_energyrouter.router.inflight import EngineLoadReader, InFlightCounter, load_for_decision
from langchain_energyrouter.state import StateStore, open_store

if TYPE_CHECKING:
    from langchain_energyrouter.decide.scheduler import Candidate, Scheduler
    from langchain_energyrouter.energy.base import EnergyMeter, EnergyReading
    from langchain_energyrouter.learn.options import OnlineOptions

logger = logging.getLogger(__name__)


class Attempt:
    """One try of one candidate: counted in flight from the start, metered from :meth:`start_window` (at
    once unless ``start=False``) until :meth:`end`; thread-safe."""

    __slots__ = ("_live", "_lock", "_meter", "_reading", "_release", "in_flight", "load", "name", "window")

    def __init__(
        self,
        live: LiveState,
        name: str,
        meter: EnergyMeter,
        release: Callable[[str], None] | None = None,
        *,
        start: bool = True,
    ) -> None:
        self._live = live
        self.name = name
        self._release = release
        self._meter = meter
        self._lock = threading.Lock()
        self.in_flight = live.counter.increment(name)
        """Requests in flight on this candidate when the attempt began, this one included."""
        self.load = live.load_of(name, self.in_flight)
        """The load the learners divide this attempt's costs by: the figure a decision scales by (the
        engine's count where it reports one and it is larger), so a learned base cost holds no load."""
        self._reading: EnergyReading | None = None
        self.window: MeterWindow | None = None
        if start:
            self.start_window()

    def start_window(self) -> None:
        """Open the meter window (when the model starts: not while the call waits for a worker thread)."""
        with self._lock:
            if self.window is None and self._reading is None:
                self.window = MeterWindow(self._meter)

    def end(self) -> EnergyReading:
        """Close the meter window and stop counting the request (idempotent: later calls return the same reading).

        An attempt whose window never opened (it ended before its worker started) reads 0 s.
        """
        with self._lock:
            if self._reading is None:
                try:
                    window = self.window if self.window is not None else MeterWindow(self._meter)
                    self._reading = window.end()  # never raises: a failing meter gives a time-only reading
                finally:
                    self._live.counter.decrement(self.name)
                    if self._release is not None:
                        self._release(self.name)
            return self._reading


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
            background: learn on a writer thread
                (see :class:`~langchain_energyrouter.learn.background.BackgroundLearning`).
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
        """Start a background read of shared learned state when one is due; return the load each candidate would see.

        Nothing here waits on the store or on a learning thread's lock.
        """
        if self.learning is not None:
            self.learning.refresh_soon()
        engines = self.engines
        counter = self.counter
        if not engines:
            return {name: counter.get(name) + 1.0 for name in names}
        return {
            name: load_for_decision(counter.get(name), engines[name].load() if name in engines else None)
            for name in names
        }

    def load_of(self, name: str, in_flight: int) -> float:
        """The load of ``name`` with ``in_flight`` of this process's requests on it (one more included), read
        as :meth:`before_decision` reads it: the engine's own figure where it has one."""
        reader = self.engines.get(name)
        if reader is None:
            return float(in_flight)
        return load_for_decision(in_flight - 1, reader.load())

    def attempt(
        self, name: str, meter: EnergyMeter, release: Callable[[str], None] | None = None, *, start: bool = True
    ) -> Attempt:
        """Begin a try of ``name`` (counted in flight, metered from now or, ``start=False``, from
        :meth:`Attempt.start_window`; ``release(name)`` is called when it ends)."""
        return Attempt(self, name, meter, release, start=start)

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
            "in_flight": attempt.load,
            "output_capped": output_cap is not None and output_tokens >= output_cap,
        }
        if self.background is not None:
            self.background.submit(Measurement(attempt.name, row, length))
            return
        if self.learning is not None:
            self.learning.observe_batch(attempt.name, [row])
        if length is not None:
            learn_lengths([length])

    def flush(self, timeout_s: float | None = 60.0) -> bool:
        """Wait until every queued measurement is learned from (True at once when learning inline)."""
        return self.background.flush(timeout_s) if self.background is not None else True

    def close_background(self) -> None:
        """Apply the queued measurements and stop the writer thread (later ones are learned inline); stop the
        background reads of shared state."""
        if self.background is not None:
            self.background.close()
        if self.learning is not None:
            self.learning.close()

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


__all__ = ["Attempt", "LiveState"]
