"""A :class:`~langchain_energyrouter.state.base.StateStore` in one SQLite file, shared by processes on one host.

The file is in WAL mode (readers never block the writer) with ``synchronous=FULL``:
a write that returned is on disk, and a process killed in the middle of a write
loses that write only (SQLite rolls the unfinished transaction back on the next
open). Each compare-and-swap is a single ``INSERT``/``UPDATE`` statement guarded
by the version, so it is atomic across processes without holding a lock while the
caller computes. Processes on *different* hosts need a network store.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_energyrouter.errors import StateError
from langchain_energyrouter.state.base import Document, Event, check_name, decode, encode

STORE_FORMAT = 1
"""Version of the table layout, kept in the file's ``meta`` table."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS documents (kind TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, "
    "payload TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (kind, key))",
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, log TEXT NOT NULL, "
    "payload TEXT NOT NULL, created_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_by_log ON events (log, id)",
)


class SQLiteStateStore:
    """Learned state in an SQLite file (created on first use, with its directory).

    Args:
        path: the database file.
        timeout_s: how long a write waits for another process's write to finish.
        synchronous: SQLite's ``synchronous`` setting; ``"FULL"`` (default) makes every
            returned write durable, ``"NORMAL"`` is faster and still safe against a killed
            process (not against power loss) in WAL mode.

    Raises:
        StateError: the file cannot be opened or is not a store of a known format.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 30.0, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise StateError(f"synchronous={synchronous!r}; use 'FULL' or 'NORMAL'.")
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
            found = self._set_up(synchronous, timeout_s)
        except (sqlite3.Error, OSError) as err:
            raise StateError(
                f"Cannot open the state store {self.path}: {err}. Check the path and its permissions, "
                "or delete the file to start over (learned state only; the profile is untouched)."
            ) from err
        if int(found) > STORE_FORMAT:
            self._db.close()
            raise StateError(
                f"State store {self.path} has format {found}, newer than this package reads ({STORE_FORMAT}); "
                "upgrade langchain-energyrouter or use another file."
            )
        self._closed = False

    def _set_up(self, synchronous: str, timeout_s: float) -> str:
        """WAL mode, tables and the format row; returns the file's format.

        Switching to WAL needs a moment of exclusive access and SQLite reports "database is
        locked" at once instead of waiting when another process is setting up the same file:
        retry until ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        delay_s = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous}")
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (str(STORE_FORMAT),))
                (found,) = self._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                return str(found)
            except sqlite3.OperationalError as err:
                if ("locked" not in str(err) and "busy" not in str(err)) or time.monotonic() > deadline:
                    raise
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 0.5)

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        if self._closed:
            raise StateError(f"State store {self.path} is closed; open a new SQLiteStateStore.")
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as err:
            raise StateError(f"State store {self.path}: {err}") from err

    def get(self, kind: str, key: str) -> Document | None:
        with self._lock:
            row = self._run("SELECT payload, version FROM documents WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else Document(decode(row[0], f"{self.path}:{kind}/{key}"), int(row[1]))

    def put(self, kind: str, key: str, payload: Mapping[str, Any], *, expected_version: int | None) -> int | None:
        text = encode(payload)
        check_name(kind, "kind")
        check_name(key, "key")
        now = time.time()
        with self._lock:
            if expected_version == 0:
                cursor = self._run(
                    "INSERT INTO documents (kind, key, version, payload, updated_at) VALUES (?, ?, 1, ?, ?) "
                    "ON CONFLICT (kind, key) DO NOTHING",
                    (kind, key, text, now),
                )
                return 1 if cursor.rowcount == 1 else None
            if expected_version is not None:
                cursor = self._run(
                    "UPDATE documents SET version = version + 1, payload = ?, updated_at = ? "
                    "WHERE kind = ? AND key = ? AND version = ?",
                    (text, now, kind, key, expected_version),
                )
                return expected_version + 1 if cursor.rowcount == 1 else None
            row = self._run(
                "INSERT INTO documents (kind, key, version, payload, updated_at) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET version = version + 1, payload = excluded.payload, "
                "updated_at = excluded.updated_at RETURNING version",
                (kind, key, text, now),
            ).fetchone()
            return int(row[0])

    def items(self, kind: str) -> dict[str, Document]:
        with self._lock:
            rows = self._run(
                "SELECT key, payload, version FROM documents WHERE kind = ? ORDER BY key", (kind,)
            ).fetchall()
        return {key: Document(decode(text, f"{self.path}:{kind}/{key}"), int(version)) for key, text, version in rows}

    def kinds(self) -> list[str]:
        """Every document kind present (for ``energyrouter state show``)."""
        with self._lock:
            return [row[0] for row in self._run("SELECT DISTINCT kind FROM documents ORDER BY kind").fetchall()]

    def logs(self) -> dict[str, int]:
        """Event log name -> number of events."""
        with self._lock:
            rows = self._run("SELECT log, COUNT(*) FROM events GROUP BY log ORDER BY log").fetchall()
        return {log: int(n) for log, n in rows}

    def delete(self, kind: str | None = None, key: str | None = None) -> int:
        with self._lock:
            if kind is None and key is None:
                removed = self._run("DELETE FROM documents").rowcount
                return removed + self._run("DELETE FROM events").rowcount
            if key is None:
                return self._run("DELETE FROM documents WHERE kind = ?", (kind,)).rowcount
            if kind is None:
                return self._run("DELETE FROM documents WHERE key = ?", (key,)).rowcount
            return self._run("DELETE FROM documents WHERE kind = ? AND key = ?", (kind, key)).rowcount

    def append(self, log: str, payload: Mapping[str, Any]) -> int:
        text = encode(payload)
        check_name(log, "log")
        with self._lock:
            cursor = self._run(
                "INSERT INTO events (log, payload, created_at) VALUES (?, ?, ?)", (log, text, time.time())
            )
            return int(cursor.lastrowid or 0)

    def events(self, log: str, after_id: int = 0, limit: int | None = None) -> list[Event]:
        sql = "SELECT id, payload FROM events WHERE log = ? AND id > ? ORDER BY id"
        args: tuple[Any, ...] = (log, after_id)
        if limit is not None:
            sql += " LIMIT ?"
            args = (*args, int(limit))
        with self._lock:
            rows = self._run(sql, args).fetchall()
        return [Event(int(i), decode(text, f"{self.path}:{log}#{i}")) for i, text in rows]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> SQLiteStateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStateStore({str(self.path)!r})"


__all__ = ["STORE_FORMAT", "SQLiteStateStore"]
