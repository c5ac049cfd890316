"""Collect the energy of every routed model call from LangChain callbacks.

The router puts ``EnergyReading.as_metadata()`` into
``AIMessage.response_metadata["energy"]``; :class:`EnergyCallbackHandler`
reads it in ``on_llm_end`` (never mutating the message) and keeps one record
per run and totals per method and per model. Joules obtained by different
methods (``nvml_counter``, ``estimate``, ...) are never added into one number:
every total is keyed by method.

:func:`get_energy_callback` collects everything run inside a ``with`` block,
like ``langchain_core.callbacks.get_usage_metadata_callback``, but its context
variable and configure hook are registered once, at import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from langchain_energyrouter.energy.base import EnergyReading
from langchain_energyrouter.errors import MeterError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergyRecord:
    """The energy of one model call (one LangChain run).

    Attributes:
        run_id: the LangChain run id.
        model_name: ``response_metadata["model_name"]`` (or ``generation_info``), if any.
        reading: the reading the router attached.
    """

    run_id: UUID
    model_name: str | None
    reading: EnergyReading


class EnergyCallbackHandler(BaseCallbackHandler):
    """Record ``response_metadata["energy"]`` of every LLM call; thread-safe.

    Example:
        ```python
        handler = EnergyCallbackHandler()
        router.invoke("Hello", config={"callbacks": [handler]})
        handler.total_energy_j(method="nvml_counter")
        ```

    Attributes:
        records: one :class:`EnergyRecord` per run that carried energy, in
            order of completion (a copy; safe to iterate).
        calls_without_energy: runs that ended without energy metadata.
    """

    run_inline: bool = True  # cheap and lock-protected: no need for an executor hop

    def __init__(self) -> None:
        """Create an empty handler."""
        super().__init__()
        self._lock = threading.Lock()
        self._records: dict[UUID, EnergyRecord] = {}
        self._energy_j_by_method: dict[str, float] = {}
        self._energy_j_by_model: dict[str, dict[str, float]] = {}
        self._runtime_s_by_method: dict[str, float] = {}
        self._calls_by_method: dict[str, int] = {}
        self._runs_without_energy: set[UUID] = set()
        self._forward_to: EnergyCallbackHandler | None = None

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the energy metadata of the first generation, if present."""
        energy, model_name = _energy_and_model(response)
        if energy is None:
            with self._lock:
                self._runs_without_energy.add(run_id)
        else:
            try:
                reading = EnergyReading.from_metadata(energy)
            except MeterError:
                logger.warning("Ignoring malformed energy metadata of run %s: %r", run_id, energy)
            else:
                self.add(EnergyRecord(run_id=run_id, model_name=model_name, reading=reading))
        if self._forward_to is not None:
            self._forward_to.on_llm_end(response, run_id=run_id, **kwargs)

    def add(self, record: EnergyRecord) -> bool:
        """Add a record unless its run was already recorded; return whether added."""
        reading = record.reading
        with self._lock:
            if record.run_id in self._records:
                return False
            self._records[record.run_id] = record
            method = reading.method
            self._calls_by_method[method] = self._calls_by_method.get(method, 0) + 1
            self._runtime_s_by_method[method] = self._runtime_s_by_method.get(method, 0.0) + reading.runtime_s
            if reading.energy_j is not None:
                self._energy_j_by_method[method] = self._energy_j_by_method.get(method, 0.0) + reading.energy_j
                per_model = self._energy_j_by_model.setdefault(record.model_name or "unknown", {})
                per_model[method] = per_model.get(method, 0.0) + reading.energy_j
        return True

    @property
    def records(self) -> list[EnergyRecord]:
        """Every record so far, in order of completion."""
        with self._lock:
            return list(self._records.values())

    @property
    def calls_without_energy(self) -> int:
        """Runs that ended without ``response_metadata["energy"]``."""
        with self._lock:
            return len(self._runs_without_energy)

    @property
    def energy_j_by_method(self) -> dict[str, float]:
        """Method -> total joules (methods with ``energy_j=None`` are absent)."""
        with self._lock:
            return dict(self._energy_j_by_method)

    @property
    def energy_j_by_model(self) -> dict[str, dict[str, float]]:
        """Model name -> method -> total joules (``"unknown"`` when no model name)."""
        with self._lock:
            return {model: dict(by_method) for model, by_method in self._energy_j_by_model.items()}

    @property
    def runtime_s_by_method(self) -> dict[str, float]:
        """Method -> total runtime of the metered calls in seconds."""
        with self._lock:
            return dict(self._runtime_s_by_method)

    @property
    def calls_by_method(self) -> dict[str, int]:
        """Method -> number of recorded calls."""
        with self._lock:
            return dict(self._calls_by_method)

    def total_energy_j(self, method: str | None = None, *, model: str | None = None) -> float:
        """Total joules of one method, optionally of one model.

        Args:
            method: e.g. ``"nvml_counter"`` or ``"estimate"``. May be omitted
                only when every record with joules used the same method.
            model: restrict to this model name.

        Raises:
            MeterError: ``method`` is omitted while records mix methods
                (measured and estimated joules are never added silently).
        """
        with self._lock:
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
            self._energy_j_by_method.clear()
            self._energy_j_by_model.clear()
            self._runtime_s_by_method.clear()
            self._calls_by_method.clear()
            self._runs_without_energy.clear()

    def __repr__(self) -> str:
        return f"EnergyCallbackHandler(calls={self.calls_by_method}, energy_j_by_method={self.energy_j_by_method})"


def _energy_and_model(response: LLMResult) -> tuple[Mapping[str, Any] | None, str | None]:
    """``(energy metadata, model name)`` of the first generation, from message or generation_info."""
    try:
        generation = response.generations[0][0]
    except IndexError:
        return None, None
    energy: Any = None
    model_name: Any = None
    if isinstance(generation, ChatGeneration):
        metadata = getattr(generation.message, "response_metadata", None) or {}
        energy = metadata.get("energy")
        model_name = metadata.get("model_name")
    info = generation.generation_info or {}
    if energy is None:
        energy = info.get("energy")
    if model_name is None:
        model_name = info.get("model_name")
    if not isinstance(energy, Mapping):
        energy = None
    return energy, None if model_name is None else str(model_name)


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
