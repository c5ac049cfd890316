"""Learned state, kept apart from the profile: a small store protocol and its backends.

:func:`open_store` turns what a user passes (``None``, a path, ``"memory"``, or a
store object) into a store. See :mod:`langchain_energyrouter.state.base` for the
protocol and :func:`~langchain_energyrouter.state.base.update` for atomic
read-modify-write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from langchain_energyrouter.errors import StateError
from langchain_energyrouter.state.base import Document, Event, StateStore, update
from langchain_energyrouter.state.memory import MemoryStateStore
from langchain_energyrouter.state.sqlite import SQLiteStateStore

STATE_ENV = "LANGCHAIN_ENERGYROUTER_STATE"
"""Environment variable naming the default SQLite state file."""


def default_state_path() -> Path:
    """``$LANGCHAIN_ENERGYROUTER_STATE``, else ``state.sqlite`` in the user's data directory."""
    configured = os.environ.get(STATE_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("langchain-energyrouter", appauthor=False)) / "state.sqlite"


def open_store(spec: Any) -> StateStore:
    """A store from a user's setting.

    Args:
        spec: a :class:`StateStore`; ``None`` or ``"memory"`` for an in-process store;
            ``"default"`` for :func:`default_state_path`; ``"redis://host:port/db"`` (or
            ``rediss://``) for a Redis server shared by routers on several hosts; any other
            string or path for an SQLite file there.

    Raises:
        StateError: the spec is of an unknown type, or the file or server cannot be opened.
        MissingExtraError: a Redis URL without the ``redis`` extra installed.
    """
    if spec is None or spec == "memory":
        return MemoryStateStore()
    if spec == "default":
        return SQLiteStateStore(default_state_path())
    if isinstance(spec, str) and spec.startswith(("redis://", "rediss://")):
        from langchain_energyrouter.state.redis import RedisStateStore  # redis-py is imported only here

        return RedisStateStore(spec)
    if isinstance(spec, (str, os.PathLike)):
        return SQLiteStateStore(spec)
    if isinstance(spec, StateStore):
        return spec
    raise StateError(
        f"Cannot use {spec!r} as a state store; pass None (in memory), 'default', the path of an SQLite file, "
        "a redis:// URL, or an object with get/put/items/delete/append/events/close."
    )


__all__ = [
    "STATE_ENV",
    "Document",
    "Event",
    "MemoryStateStore",
    "SQLiteStateStore",
    "StateStore",
    "default_state_path",
    "open_store",
    "update",
]
