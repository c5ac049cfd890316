"""The learned-state store: versioned JSON documents with compare-and-swap, and an event log.

What the router learns while it answers (adapted cost models, output lengths,
feedback) is kept apart from the profile, which stays the prior. A store holds
it as small JSON documents addressed by ``(kind, key)`` (e.g. ``("cost",
"smollm2-135m")``), each with a version that grows by one on every write, plus
append-only event logs (e.g. feedback rows that must never be lost).

Writers never lock a document for long: they read it, compute the new payload and
write it back only if nobody wrote in between (:meth:`StateStore.put` with
``expected_version``), retrying otherwise (:func:`update`). That is the one
primitive every backend offers cheaply (SQLite ``BEGIN IMMEDIATE``, Redis
``WATCH``/``MULTI``, PostgreSQL ``UPDATE ... WHERE version = $1``), so a network
store can replace the embedded one without changing its users.

Backends: :class:`~langchain_energyrouter.state.memory.MemoryStateStore` (one
process), :class:`~langchain_energyrouter.state.sqlite.SQLiteStateStore`
(processes on one host, WAL mode, crash-safe) and
:class:`~langchain_energyrouter.state.redis.RedisStateStore` (router replicas on
several hosts).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from langchain_energyrouter.errors import StateError

MAX_CAS_RETRIES = 64
"""How often :func:`update` retries a write that lost a race before giving up."""


class Document(NamedTuple):
    """One stored document."""

    payload: dict[str, Any]
    """The JSON object as stored."""
    version: int
    """1 after the first write, +1 on every write."""


class Event(NamedTuple):
    """One entry of an event log."""

    id: int
    """Position in the log, increasing (not necessarily contiguous)."""
    payload: dict[str, Any]


@runtime_checkable
class StateStore(Protocol):
    """Versioned JSON documents and append-only event logs, shared by every router using the store."""

    def get(self, kind: str, key: str) -> Document | None:
        """The document, or None when there is none."""
        ...

    def put(self, kind: str, key: str, payload: Mapping[str, Any], *, expected_version: int | None) -> int | None:
        """Write ``payload`` if the stored version is ``expected_version`` (0 = must not exist yet;
        None = unconditionally). Returns the new version, or None when the version did not match."""
        ...

    def items(self, kind: str) -> dict[str, Document]:
        """Every document of ``kind`` by key."""
        ...

    def delete(self, kind: str | None = None, key: str | None = None) -> int:
        """Delete one document, every document of a kind (``key=None``) or everything; return how many."""
        ...

    def append(self, log: str, payload: Mapping[str, Any]) -> int:
        """Append an event durably; return its id. When this returns, the event survives a crash."""
        ...

    def events(self, log: str, after_id: int = 0, limit: int | None = None) -> list[Event]:
        """Events of ``log`` with id > ``after_id``, oldest first."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


def update(
    store: StateStore,
    kind: str,
    key: str,
    change: Callable[[dict[str, Any] | None], Mapping[str, Any] | None],
    *,
    retries: int = MAX_CAS_RETRIES,
) -> Document | None:
    """Read-modify-write one document atomically with respect to every other writer.

    Args:
        store: the store.
        kind: document kind.
        key: document key.
        change: maps the current payload (None when absent) to the new one; None means
            "no change". It may run several times (once per lost race), so keep it pure.
        retries: attempts before :class:`~langchain_energyrouter.errors.StateError`.

    Returns:
        The document as written (or as found, when ``change`` returned None).
    """
    for _ in range(retries):
        current = store.get(kind, key)
        payload = change(None if current is None else current.payload)
        if payload is None:
            return current
        version = store.put(kind, key, payload, expected_version=0 if current is None else current.version)
        if version is not None:
            return Document(dict(payload), version)
    raise StateError(
        f"Could not update state {kind}/{key}: {retries} concurrent writers won the race in a row. "
        "The store is overloaded; retry, or give each router its own key."
    )


def encode(payload: Mapping[str, Any]) -> str:
    """Canonical JSON for storage; rejects NaN and infinities (they are not JSON).

    Raises:
        StateError: the payload is not a JSON object of finite numbers, strings, lists and dicts.
    """
    if not isinstance(payload, Mapping):
        raise StateError(f"State payloads must be JSON objects (dicts), got {type(payload).__name__}.")
    try:
        return json.dumps(payload, allow_nan=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as err:
        bad = _first_non_finite(payload)
        hint = f" (non-finite number at {bad})" if bad else ""
        raise StateError(f"State payload is not storable as JSON{hint}: {err}") from err


def decode(text: str, where: str) -> dict[str, Any]:
    """Parse a stored payload; a corrupt one raises :class:`StateError` naming ``where``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise StateError(
            f"Stored state {where} is not valid JSON ({err}); `energyrouter state reset` clears it."
        ) from err
    if not isinstance(value, dict):
        raise StateError(f"Stored state {where} is not a JSON object; `energyrouter state reset` clears it.")
    return value


def check_name(value: str, what: str) -> str:
    """Kinds, keys and log names are non-empty strings."""
    if not isinstance(value, str) or not value:
        raise StateError(f"State {what} {value!r} must be a non-empty string.")
    return value


def _first_non_finite(value: Any, path: str = "$") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = _first_non_finite(v, f"{path}.{k}")
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _first_non_finite(v, f"{path}[{i}]")
            if found:
                return found
    return None


__all__ = ["MAX_CAS_RETRIES", "Document", "Event", "StateStore", "check_name", "decode", "encode", "update"]
