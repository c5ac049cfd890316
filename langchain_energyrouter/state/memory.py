"""An in-process :class:`~langchain_energyrouter.state.base.StateStore` (nothing survives the process)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from langchain_energyrouter.state.base import Document, Event, check_name, decode, encode


class MemoryStateStore:
    """Documents and event logs in a dict, behind a lock; the default when no store is configured.

    Payloads are stored as canonical JSON, exactly like the persistent stores, so a payload
    that this store accepts is one every store accepts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[tuple[str, str], tuple[str, int]] = {}
        self._logs: dict[str, list[tuple[int, str]]] = {}
        self._next_event_id = 1

    def get(self, kind: str, key: str) -> Document | None:
        with self._lock:
            found = self._docs.get((kind, key))
        return None if found is None else Document(decode(found[0], f"{kind}/{key}"), found[1])

    def put(self, kind: str, key: str, payload: Mapping[str, Any], *, expected_version: int | None) -> int | None:
        text = encode(payload)
        address = (check_name(kind, "kind"), check_name(key, "key"))
        with self._lock:
            current = self._docs.get(address)
            version = 0 if current is None else current[1]
            if expected_version is not None and expected_version != version:
                return None
            self._docs[address] = (text, version + 1)
            return version + 1

    def items(self, kind: str) -> dict[str, Document]:
        with self._lock:
            found = [(k, v) for (d, k), v in self._docs.items() if d == kind]
        return {k: Document(decode(text, f"{kind}/{k}"), version) for k, (text, version) in sorted(found)}

    def delete(self, kind: str | None = None, key: str | None = None) -> int:
        with self._lock:
            doomed = [a for a in self._docs if (kind is None or a[0] == kind) and (key is None or a[1] == key)]
            for address in doomed:
                del self._docs[address]
            if kind is None and key is None:
                doomed_events = sum(len(log) for log in self._logs.values())
                self._logs.clear()
                return len(doomed) + doomed_events
            return len(doomed)

    def append(self, log: str, payload: Mapping[str, Any]) -> int:
        text = encode(payload)
        check_name(log, "log")
        with self._lock:
            event_id = self._next_event_id
            self._next_event_id += 1
            self._logs.setdefault(log, []).append((event_id, text))
            return event_id

    def events(self, log: str, after_id: int = 0, limit: int | None = None) -> list[Event]:
        with self._lock:
            rows = [(i, t) for i, t in self._logs.get(log, ()) if i > after_id]
        if limit is not None:
            rows = rows[:limit]
        return [Event(i, decode(t, f"{log}#{i}")) for i, t in rows]

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryStateStore(documents={len(self._docs)})"


__all__ = ["MemoryStateStore"]
