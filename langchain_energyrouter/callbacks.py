"""Collect the energy of every routed model call from LangChain callbacks.

The router puts ``EnergyReading.as_metadata()`` into
``AIMessage.response_metadata["energy"]``; :class:`EnergyCallbackHandler`
reads it in ``on_llm_end`` (never mutating the message) and keeps one record
per run and totals per method and per model. Joules obtained by different
methods (``nvml_counter``, ``estimate``, ...) are never added into one number:
every total is keyed by method.

Two kinds of reading get special handling:

* **Overlapped** readings (flag ``"overlapped"``, see the overlap policy in
  :mod:`langchain_energyrouter.energy.base`) each hold the *whole device's*
  joules over their window, other calls' work included, so summing them
  double-counts (four batched calls on the estimate meter summed to 2.9x the
  CPU time they used). They are kept apart, in
  :attr:`EnergyCallbackHandler.overlapped_energy_j_by_method`, and never added
  to :attr:`~EnergyCallbackHandler.energy_j_by_method`.
* **Failed attempts**: the router lists the candidates that raised before one
  answered in ``response_metadata["routing"]["failures"]`` (dicts with
  ``model, error_type, error, runtime_s, energy_j, method, flags``), and a call
  whose every candidate raised ends in ``on_llm_error`` with a
  :class:`~langchain_energyrouter.errors.RoutingError` carrying the same list
  as ``routing_failures``. Their joules were spent, so they count in the totals, and
  also in :attr:`~EnergyCallbackHandler.failed_energy_j_by_method`.

:func:`get_energy_callback` collects everything run inside a ``with`` block,
like ``langchain_core.callbacks.get_usage_metadata_callback``, but its context
variable and configure hook are registered once, at import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from langchain_energyrouter.energy.base import ENERGY_EVENT, FLAG_OVERLAPPED, EnergyReading
from langchain_energyrouter.errors import MeterError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergyRecord:
    """The energy of one model call (one LangChain run), or of one failed attempt within it.

    Attributes:
        run_id: the LangChain run id.
        model_name: ``response_metadata["model_name"]`` (or ``generation_info``), if any;
            for a failed attempt, the candidate that raised.
        reading: the reading the router attached.
        failed_attempt: ``None`` for the answer; for an attempt that raised, its position
            (0-based) among the run's failed attempts.
        error_type: for a failed attempt, the name of the exception it raised.
        candidate: the router's name of the candidate (``routing["served_by"]``, or the failed
            attempt's ``model``); None for a call that did not go through the router.
    """

    run_id: UUID
    model_name: str | None
    reading: EnergyReading
    failed_attempt: int | None = None
    error_type: str | None = None
    candidate: str | None = None

    @property
    def model_key(self) -> str:
        """The key of the per-model totals: the router's candidate name, else the model name, else ``"unknown"``.

        One name per candidate whether it answered or failed (the provider's name of an answer,
        e.g. a file path, would differ from the router's name its failures carry).
        """
        return self.candidate or self.model_name or "unknown"

    @property
    def failed(self) -> bool:
        """Whether this is an attempt that raised (its joules were spent all the same)."""
        return self.failed_attempt is not None

    @property
    def overlapped(self) -> bool:
        """Whether another window on the same device was open during this one (not summable)."""
        return FLAG_OVERLAPPED in self.reading.flags


def _add(totals: dict[str, float], key: str, value: float) -> None:
    totals[key] = totals.get(key, 0.0) + value


class EnergyCallbackHandler(BaseCallbackHandler):
    """Record ``response_metadata["energy"]`` of every LLM call, and its failed attempts; thread-safe.

    Totals, all keyed by method:

    * :attr:`energy_j_by_method`: joules of readings that had their device to
      themselves, failed attempts included. These add up.
    * :attr:`failed_energy_j_by_method`: the part of the above spent by attempts
      that raised (a fallback's failed tries, or a call whose every candidate failed).
    * :attr:`overlapped_energy_j_by_method`: the sum of ``"overlapped"`` readings,
      kept apart because each holds the whole device over its window, other
      calls' work included: the sum counts shared joules once per call, an upper
      bound, not a total. Apportioning them was considered and rejected: a
      reading carries its length but not its start, so the handler cannot tell
      which windows overlapped which or for how long. To get per-call joules,
      serialise calls per device (e.g. ``max_concurrency=1``).

    Example:
        ```python
        handler = EnergyCallbackHandler()
        router.invoke("Hello", config={"callbacks": [handler]})
        handler.total_energy_j(method="nvml_counter")
        handler.overlapped_energy_j_by_method  # {} unless calls overlapped
        ```

    Attributes:
        records: one :class:`EnergyRecord` per run that carried energy, plus one
            per failed attempt with a reading, in order of arrival (a copy).
        calls_without_energy: runs that ended without energy metadata.
    """

    run_inline: bool = True  # cheap and lock-protected: no need for an executor hop

    def __init__(self) -> None:
        """Create an empty handler."""
        super().__init__()
        self._lock = threading.Lock()
        self._records: dict[tuple[UUID, int | None], EnergyRecord] = {}
        self._energy_j_by_method: dict[str, float] = {}
        self._energy_j_by_model: dict[str, dict[str, float]] = {}
        self._failed_energy_j_by_method: dict[str, float] = {}
        self._overlapped_energy_j_by_method: dict[str, float] = {}
        self._overlapped_energy_j_by_model: dict[str, dict[str, float]] = {}
        self._runtime_s_by_method: dict[str, float] = {}
        self._calls_by_method: dict[str, int] = {}
        self._failed_calls_by_method: dict[str, int] = {}
        self._overlapped_calls_by_method: dict[str, int] = {}
        self._runs_without_energy: set[UUID] = set()
        self._failed_runs: set[UUID] = set()
        self._failed_attempts_without_energy = 0
        self._warned_overlap = False
        self._forward_to: EnergyCallbackHandler | None = None

    # -- callbacks -------------------------------------------------------------
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the energy metadata of the first generation and its failed attempts, if present."""
        energy, model_name, failures, served_by = _energy_model_and_failures(response)
        self._add_failures(run_id, failures)
        if energy is None:
            with self._lock:
                self._runs_without_energy.add(run_id)
        else:
            try:
                reading = EnergyReading.from_metadata(energy)
            except MeterError:
                logger.warning("Ignoring malformed energy metadata of run %s: %r", run_id, energy)
            else:
                self.add(EnergyRecord(run_id=run_id, model_name=model_name, reading=reading, candidate=served_by))
        if self._forward_to is not None:
            self._forward_to.on_llm_end(response, run_id=run_id, **kwargs)

    def on_custom_event(
        self, name: str, data: Any, *, run_id: UUID, tags: list[str] | None = None, metadata: Any = None, **_: Any
    ) -> None:
        """Record energy delivered after the model run ended (:data:`~langchain_energyrouter.energy.base.ENERGY_EVENT`:
        the agent middleware's steps), as that run's; a run counted without energy then has it."""
        if name != ENERGY_EVENT or not isinstance(data, Mapping):
            return
        message, model_run = data.get("message"), data.get("run_id")
        if not isinstance(message, BaseMessage):
            return
        model_run_id = _run_uuid(str(model_run)) or run_id
        self.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]), run_id=model_run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the failed attempts a :class:`~langchain_energyrouter.errors.RoutingError` carries.

        The run is counted in :attr:`failed_runs` whatever the error; when the error carries
        no readings it is also counted in :attr:`calls_without_energy`.
        """
        failures = _failures_of_error(error)
        recorded = self._add_failures(run_id, failures)
        with self._lock:
            self._failed_runs.add(run_id)
            if not recorded:
                self._runs_without_energy.add(run_id)
        if self._forward_to is not None:
            self._forward_to.on_llm_error(error, run_id=run_id, **kwargs)

    def _add_failures(self, run_id: UUID, failures: Sequence[Mapping[str, Any]]) -> int:
        """Add a record per failed attempt with a reading; return how many were added."""
        added = 0
        for index, failure in enumerate(failures):
            reading = _failure_reading(failure)
            if reading is None:
                with self._lock:
                    self._failed_attempts_without_energy += 1
                continue
            model = failure.get("model")
            error_type = failure.get("error_type")
            record = EnergyRecord(
                run_id=run_id,
                model_name=None if model is None else str(model),
                reading=reading,
                failed_attempt=index,
                error_type=None if error_type is None else str(error_type),
                candidate=None if model is None else str(model),
            )
            added += self.add(record)
        return added

    # -- totals ----------------------------------------------------------------
    def add(self, record: EnergyRecord) -> bool:
        """Add a record unless it was already recorded (same run and attempt); return whether added."""
        reading = record.reading
        key = (record.run_id, record.failed_attempt)
        warn = False
        with self._lock:
            if key in self._records:
                return False
            self._records[key] = record
            if record.failed_attempt is None:
                self._runs_without_energy.discard(record.run_id)  # its energy came after its end (middleware)
            method = reading.method
            model = record.model_key
            self._calls_by_method[method] = self._calls_by_method.get(method, 0) + 1
            _add(self._runtime_s_by_method, method, reading.runtime_s)
            if record.failed:
                self._failed_calls_by_method[method] = self._failed_calls_by_method.get(method, 0) + 1
            if record.overlapped:
                self._overlapped_calls_by_method[method] = self._overlapped_calls_by_method.get(method, 0) + 1
                warn = not self._warned_overlap
                self._warned_overlap = True
            if reading.energy_j is not None:
                if record.overlapped:
                    _add(self._overlapped_energy_j_by_method, method, reading.energy_j)
                    _add(self._overlapped_energy_j_by_model.setdefault(model, {}), method, reading.energy_j)
                else:
                    _add(self._energy_j_by_method, method, reading.energy_j)
                    _add(self._energy_j_by_model.setdefault(model, {}), method, reading.energy_j)
                    if record.failed:
                        _add(self._failed_energy_j_by_method, method, reading.energy_j)
        if warn:
            logger.warning(
                "Energy readings of calls that overlapped on one device are kept out of energy_j_by_method "
                "(each holds the whole device over its window; summing them double-counts). "
                "See overlapped_energy_j_by_method, or run calls one at a time per device for per-call joules."
            )
        return True

    @property
    def records(self) -> list[EnergyRecord]:
        """Every record so far, in order of arrival."""
        with self._lock:
            return list(self._records.values())

    @property
    def calls_without_energy(self) -> int:
        """Runs that ended (or failed) without energy metadata."""
        with self._lock:
            return len(self._runs_without_energy)

    @property
    def failed_runs(self) -> int:
        """Runs that ended in ``on_llm_error`` (every candidate tried raised)."""
        with self._lock:
            return len(self._failed_runs)

    @property
    def failed_attempts_without_energy(self) -> int:
        """Failed attempts reported without a usable reading (e.g. the meter failed too)."""
        with self._lock:
            return self._failed_attempts_without_energy

    @property
    def energy_j_by_method(self) -> dict[str, float]:
        """Method -> joules of non-overlapped readings, failed attempts included.

        Methods with ``energy_j=None`` (``"none"``) are absent; overlapped readings are in
        :attr:`overlapped_energy_j_by_method` instead.
        """
        with self._lock:
            return dict(self._energy_j_by_method)

    @property
    def failed_energy_j_by_method(self) -> dict[str, float]:
        """Method -> the part of :attr:`energy_j_by_method` spent by attempts that raised."""
        with self._lock:
            return dict(self._failed_energy_j_by_method)

    @property
    def overlapped_energy_j_by_method(self) -> dict[str, float]:
        """Method -> sum of ``"overlapped"`` readings: an upper bound that double-counts shared joules."""
        with self._lock:
            return dict(self._overlapped_energy_j_by_method)

    @property
    def energy_j_by_model(self) -> dict[str, dict[str, float]]:
        """Model -> method -> joules of non-overlapped readings, answers and failed attempts alike.

        Keyed by the router's candidate name (:attr:`EnergyRecord.model_key`); a call that did not go
        through the router by its model name (``"unknown"`` when it has none).
        """
        with self._lock:
            return {model: dict(by_method) for model, by_method in self._energy_j_by_model.items()}

    @property
    def overlapped_energy_j_by_model(self) -> dict[str, dict[str, float]]:
        """Model -> method -> sum of overlapped readings (double-counts, like its by-method twin; keys as in
        :attr:`energy_j_by_model`)."""
        with self._lock:
            return {model: dict(by_method) for model, by_method in self._overlapped_energy_j_by_model.items()}

    @property
    def runtime_s_by_method(self) -> dict[str, float]:
        """Method -> total runtime of the metered calls and failed attempts in seconds."""
        with self._lock:
            return dict(self._runtime_s_by_method)

    @property
    def calls_by_method(self) -> dict[str, int]:
        """Method -> number of records (answers and failed attempts, overlapped or not)."""
        with self._lock:
            return dict(self._calls_by_method)

    @property
    def failed_calls_by_method(self) -> dict[str, int]:
        """Method -> number of failed attempts recorded with a reading."""
        with self._lock:
            return dict(self._failed_calls_by_method)

    @property
    def overlapped_calls_by_method(self) -> dict[str, int]:
        """Method -> number of records flagged ``"overlapped"``."""
        with self._lock:
            return dict(self._overlapped_calls_by_method)

    def total_energy_j(self, method: str | None = None, *, model: str | None = None, overlapped: bool = False) -> float:
        """Total joules of one method, optionally of one model.

        Args:
            method: e.g. ``"nvml_counter"`` or ``"estimate"``. May be omitted
                only when every record with joules used the same method.
            model: restrict to this model (a key of :attr:`energy_j_by_model`).
            overlapped: total the overlapped readings instead (an upper bound that
                double-counts; see the class docstring). The default totals exclude them.

        Raises:
            MeterError: ``method`` is omitted while records mix methods
                (measured and estimated joules are never added silently).
        """
        with self._lock:
            if overlapped:
                by_method = (
                    self._overlapped_energy_j_by_method
                    if model is None
                    else self._overlapped_energy_j_by_model.get(model, {})
                )
            else:
                by_method = self._energy_j_by_method if model is None else self._energy_j_by_model.get(model, {})
            if method is None:
                if len(by_method) > 1:
                    msg = (
                        f"Energy was obtained by several methods {sorted(by_method)}; "
                        "pass method=... to total one of them."
                    )
                    raise MeterError(msg)
                return next(iter(by_method.values()), 0.0)
            return by_method.get(method, 0.0)

    def reset(self) -> None:
        """Forget every record and total."""
        with self._lock:
            self._records.clear()
            for totals in (
                self._energy_j_by_method,
                self._failed_energy_j_by_method,
                self._overlapped_energy_j_by_method,
                self._runtime_s_by_method,
            ):
                totals.clear()
            self._energy_j_by_model.clear()
            self._overlapped_energy_j_by_model.clear()
            self._calls_by_method.clear()
            self._failed_calls_by_method.clear()
            self._overlapped_calls_by_method.clear()
            self._runs_without_energy.clear()
            self._failed_runs.clear()
            self._failed_attempts_without_energy = 0
            self._warned_overlap = False

    def __repr__(self) -> str:
        extra = ""
        if self.overlapped_energy_j_by_method:
            extra += f", overlapped_energy_j_by_method={self.overlapped_energy_j_by_method}"
        if self.failed_energy_j_by_method:
            extra += f", failed_energy_j_by_method={self.failed_energy_j_by_method}"
        return (
            f"EnergyCallbackHandler(calls={self.calls_by_method}, energy_j_by_method={self.energy_j_by_method}{extra})"
        )


def _run_uuid(text: str) -> UUID | None:
    """The run id in ``text``: a UUID, or one followed by a generation index (``<run id>-0``, as LangChain
    names an answer ``lc_run--<run id>-<index>``)."""
    for candidate in (text, text.rpartition("-")[0]):
        try:
            return UUID(candidate)
        except ValueError:
            continue
    return None


def _failure_reading(failure: Mapping[str, Any]) -> EnergyReading | None:
    """The reading of one ``routing["failures"]`` entry, or None when it has none (or a malformed one).

    Accepts the flat shape ``{model, error_type, error, runtime_s, energy_j, method, flags}``
    (``is_estimate`` defaults to ``method == "estimate"``) or a nested ``energy`` mapping
    in :meth:`EnergyReading.as_metadata` form.
    """
    nested = failure.get("energy")
    data: Mapping[str, Any] = nested if isinstance(nested, Mapping) else failure
    method = data.get("method")
    if method is None:
        return None
    try:
        return EnergyReading.from_metadata({"is_estimate": method == "estimate", **data})
    except MeterError:
        logger.warning("Ignoring the malformed reading of a failed attempt: %r", dict(failure))
        return None


def _failures_of_error(error: BaseException) -> list[Mapping[str, Any]]:
    """The failed attempts an exception carries, as mappings.

    The router attaches every attempt's reading to the error that leaves it as
    ``routing_failures`` (the entries of ``routing["failures"]``): a
    :class:`~langchain_energyrouter.errors.RoutingError` when every candidate raised, or the
    candidate's own error when it could not fall back. Only without it is ``failures`` read:
    a list of such dicts, or a mapping of model name -> such a dict (the model name filled in)
    or -> the exception (no reading; ``RoutingError.failures`` has this shape).
    """
    attempts = getattr(error, "routing_failures", None)
    if isinstance(attempts, Sequence) and not isinstance(attempts, (str, bytes)) and attempts:
        return [f for f in attempts if isinstance(f, Mapping)]
    failures = getattr(error, "failures", None)
    out: list[Mapping[str, Any]] = []
    if isinstance(failures, Mapping):
        for model, value in failures.items():
            if isinstance(value, Mapping):
                out.append({"model": model, **value})
            else:
                out.append({"model": model, "error_type": type(value).__name__, "error": str(value)})
    elif isinstance(failures, Sequence) and not isinstance(failures, (str, bytes)):
        out.extend(f for f in failures if isinstance(f, Mapping))
    return out


def _energy_model_and_failures(
    response: LLMResult,
) -> tuple[Mapping[str, Any] | None, str | None, list[Mapping[str, Any]], str | None]:
    """``(energy metadata, model name, routing failures, routing["served_by"])`` of the first generation.

    Energy and model name come from the message's ``response_metadata`` or from ``generation_info``.
    """
    try:
        generation = response.generations[0][0]
    except IndexError:
        return None, None, [], None
    energy: Any = None
    model_name: Any = None
    routing: Any = None
    if isinstance(generation, ChatGeneration):
        metadata = getattr(generation.message, "response_metadata", None) or {}
        energy = metadata.get("energy")
        model_name = metadata.get("model_name")
        routing = metadata.get("routing")
    info = generation.generation_info or {}
    if energy is None:
        energy = info.get("energy")
    if model_name is None:
        model_name = info.get("model_name")
    if routing is None:
        routing = info.get("routing")
    if not isinstance(energy, Mapping):
        energy = None
    failures: list[Mapping[str, Any]] = []
    raw = routing.get("failures") if isinstance(routing, Mapping) else None
    if isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)):
        failures = [f for f in raw if isinstance(f, Mapping)]
    served_by = routing.get("served_by") if isinstance(routing, Mapping) else None
    return (
        energy,
        None if model_name is None else str(model_name),
        failures,
        None if served_by is None else str(served_by),
    )


_energy_callback_var: ContextVar[EnergyCallbackHandler | None] = ContextVar(
    "langchain_energyrouter_energy_callback", default=None
)
register_configure_hook(_energy_callback_var, inheritable=True)


@contextmanager
def get_energy_callback() -> Generator[EnergyCallbackHandler, None, None]:
    """Collect the energy of every model call made inside the ``with`` block.

    Nested blocks work: calls inside an inner block are recorded by the inner
    handler and by every enclosing one.

    Yields:
        The handler collecting this block's calls.

    Example:
        ```python
        with get_energy_callback() as cb:
            router.invoke("Hello")
        cb.energy_j_by_method
        ```
    """
    handler = EnergyCallbackHandler()
    handler._forward_to = _energy_callback_var.get()
    token = _energy_callback_var.set(handler)
    try:
        yield handler
    finally:
        _energy_callback_var.reset(token)


__all__ = ["EnergyCallbackHandler", "EnergyRecord", "get_energy_callback"]
