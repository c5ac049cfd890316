"""Learning from every routed call: measurements -> online learners -> store -> scheduler.

:class:`LearningLoop` is what the router holds. After each call that has a
measurement it updates that model's learners (:class:`~langchain_energyrouter.learn.costs.CostLearner`)
*inside* a compare-and-swap on the state store, so routers in several threads or
processes sharing one store all add to the same learned state and none overwrites
another's update; then it installs the new snapshot in the scheduler. Before a
decision (:meth:`LearningLoop.refresh_soon`) it starts, at most every ``refresh_s``
seconds, a read of what other processes learned on a background thread
(:class:`~langchain_energyrouter.state.refresh.BackgroundRefresh`), so a decision
never waits on the store nor on the lock a writer holds while it writes: the
scheduler's snapshots are immutable and swapped whole.

Each model's document (kind ``"cost"``, key = the model's name) records a
fingerprint of the profile entry it was learned against: a profile that changed
(recalibrated, other hardware, other energy method) starts from its own prior
again instead of inheriting state learned for another.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.errors import ProfileError, StateError
from langchain_energyrouter.learn.costs import CostLearner
from langchain_energyrouter.learn.options import OnlineOptions
from langchain_energyrouter.state.base import StateStore, update
from langchain_energyrouter.state.refresh import BackgroundRefresh, RefreshesInBackground

if TYPE_CHECKING:
    from langchain_energyrouter.decide.scheduler import Scheduler
    from langchain_energyrouter.profile import EnergyProfile

logger = logging.getLogger(__name__)

COST_KIND = "cost"
"""Store kind of the learned cost documents."""


def profile_fingerprint(profile: EnergyProfile, model: str) -> str:
    """A short hash of what a model's learned state depends on: its profile entry and how energy was measured."""
    entry = profile.model(model)
    text = "|".join((profile.energy_method, profile.device.name, entry.model_dump_json()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class LearningLoop(RefreshesInBackground):
    """Keeps a scheduler's adapted predictions in step with the measurements and the shared store.

    Args:
        scheduler: receives the snapshots (:meth:`Scheduler.set_learned`).
        store: where learned state lives (shared by every router using it).
        options: online learners' tuning.
        refresh_s: how often, at most, :meth:`refresh_soon` reads other processes' updates (0: whenever no read
            is running).
        models: the models to learn about (default: the scheduler's candidates).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        store: StateStore,
        *,
        options: OnlineOptions | None = None,
        refresh_s: float = 1.0,
        models: Iterable[str] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.store = store
        self.learner = CostLearner(scheduler.profile, options)
        self._models = tuple(models) if models is not None else scheduler.models
        self._fingerprints = {m: profile_fingerprint(scheduler.profile, m) for m in self._models}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._writes = 0
        """This loop's writes so far: a read that began before a write may hold an older document than it wrote."""
        self._written: dict[str, int] = {}
        self._next_refresh = 0.0
        self._background = BackgroundRefresh(
            lambda: self.refresh(force=True), refresh_s, f"energyrouter-refresh-{COST_KIND}"
        )
        self.errors = 0
        """Store failures so far (learning is skipped, routing goes on)."""
        self.refresh(force=True)

    # -- reading -------------------------------------------------------------
    def refresh_soon(self) -> None:
        """Start a read of other processes' updates in the background when one is due; returns at once."""
        self._background.poll()

    def refresh(self, *, force: bool = False) -> None:
        """Adopt documents other routers wrote since the last look, now, in this thread (blocking on the store).

        Without ``force`` it reads at most every ``refresh_s``. Decisions use :meth:`refresh_soon` instead.
        """
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_s
        began = self._writes
        try:
            documents = self.store.items(COST_KIND)
        except StateError as err:
            self._store_failed("read", err)
            return
        with self._lock:
            for model in self._models:
                if self._written.get(model, 0) > began:
                    continue  # this loop wrote it after the read began: what was read may be older
                doc = documents.get(model)
                if doc is None:
                    if model in self._versions:  # reset elsewhere: back to the prior
                        del self._versions[model]
                        self.learner.reset(model)
                        self.scheduler.set_learned(model, None)
                    continue
                if self._versions.get(model) == doc.version:
                    continue
                self._versions[model] = doc.version
                self._adopt(model, doc.payload)

    def _adopt(self, model: str, payload: Mapping[str, Any] | None) -> bool:
        """Load a stored payload into the learner (if it belongs to this profile); True when loaded."""
        if payload is None or payload.get("profile") != self._fingerprints[model]:
            self.learner.reset(model)
            self.scheduler.set_learned(model, None)
            return False
        try:
            self.learner.load_model_state(model, payload["learner"])
        except (ProfileError, KeyError, TypeError) as err:
            logger.warning("Ignoring learned state of %r (%s); starting from the profile's prior.", model, err)
            self.learner.reset(model)
            self.scheduler.set_learned(model, None)
            return False
        self.scheduler.set_learned(model, self.learner.snapshot(model))
        return True

    # -- writing -------------------------------------------------------------
    def observe(
        self,
        model: str,
        *,
        input_tokens: float,
        output_tokens: float,
        runtime_s: float | None,
        energy_j: float | None,
        method: str,
        flags: Iterable[str] = (),
        in_flight: float | None = None,
        output_capped: bool = False,
    ) -> bool:
        """Learn from one measured call of ``model`` and share it; True when something was learned.

        A store failure is logged and counted (:attr:`errors`), never raised: learning is
        an improvement of the predictions, not a condition of answering.
        """
        row = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "runtime_s": runtime_s,
            "energy_j": energy_j,
            "method": method,
            "flags": flags,
            "in_flight": in_flight,
            "output_capped": output_capped,
        }
        return self.observe_batch(model, [row]) > 0

    def observe_batch(self, model: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Learn from several measured calls of ``model`` (in order) with one store write; how many taught something.

        Each row holds :meth:`observe`'s keywords. A store failure is logged and counted, never raised.
        """
        if model not in self._fingerprints or not rows:
            return 0
        learned = [0]

        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            self._adopt(model, current)  # a retried write starts again from the stored state
            learned[0] = 0
            for row in rows:
                learned[0] += self.learner.observe(
                    model,
                    row["input_tokens"],
                    row["output_tokens"],
                    row["runtime_s"],
                    row["energy_j"],
                    row["method"],
                    flags=tuple(row.get("flags", ())),
                    load=row.get("in_flight"),
                    output_capped=bool(row.get("output_capped", False)),
                )
            state = self.learner.model_state(model)
            if not learned[0] or state is None:
                return None
            snap = self.learner.snapshot(model)
            summary = snap._asdict() if snap is not None else {}
            return {"profile": self._fingerprints[model], "model": model, "summary": summary, "learner": state}

        with self._lock:
            try:
                doc = update(self.store, COST_KIND, model, change)
            except StateError as err:
                self._store_failed("write", err)
                return 0
            if doc is not None:
                self._versions[model] = doc.version
            self._wrote(model)
            self.scheduler.set_learned(model, self.learner.snapshot(model))
        return learned[0]

    def reset(self, model: str | None = None) -> int:
        """Forget what was learned (one model, or all of this loop's): in the store too. Returns documents removed."""
        with self._lock:
            models = self._models if model is None else (model,)
            removed = 0
            for name in models:
                removed += self.store.delete(COST_KIND, name)
                self._versions.pop(name, None)
                self._wrote(name)
                self.learner.reset(name)
                self.scheduler.set_learned(name, None)
            return removed

    def _wrote(self, model: str) -> None:
        """Note a write of ``model``'s document (under the lock)."""
        self._writes += 1
        self._written[model] = self._writes

    def _store_failed(self, what: str, err: StateError) -> None:
        self.errors += 1
        logger.warning("Learned-state store %s failed (%s); routing goes on with the predictions it has.", what, err)

    @property
    def ignored(self) -> dict[str, int]:
        """Why parts of measurements were not learned from, and how often."""
        return dict(self.learner.ignored)


__all__ = ["COST_KIND", "LearningLoop", "profile_fingerprint"]
