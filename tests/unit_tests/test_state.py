"""The learned-state store: compare-and-swap, event logs, processes sharing one SQLite file, kill -9."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from langchain_energyrouter.errors import StateError
from langchain_energyrouter.state import MemoryStateStore, SQLiteStateStore, StateStore, open_store, update


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    made: StateStore = MemoryStateStore() if request.param == "memory" else SQLiteStateStore(tmp_path / "s.sqlite")
    yield made
    made.close()


def test_put_is_compare_and_swap(store: StateStore) -> None:
    assert store.get("cost", "a") is None
    assert store.put("cost", "a", {"x": 1}, expected_version=0) == 1
    assert store.put("cost", "a", {"x": 2}, expected_version=0) is None  # exists already
    assert store.put("cost", "a", {"x": 3}, expected_version=5) is None  # stale version
    assert store.put("cost", "a", {"x": 4}, expected_version=1) == 2
    assert store.put("cost", "a", {"x": 5}, expected_version=None) == 3  # unconditional
    doc = store.get("cost", "a")
    assert doc is not None and doc.payload == {"x": 5} and doc.version == 3
    assert set(store.items("cost")) == {"a"}
    assert store.items("other") == {}


def test_update_applies_change_and_none_means_unchanged(store: StateStore) -> None:
    doc = update(store, "cost", "m", lambda old: {"n": (old or {"n": 0})["n"] + 1})
    assert doc is not None and doc.payload == {"n": 1}
    update(store, "cost", "m", lambda old: {"n": old["n"] + 1} if old else None)
    same = update(store, "cost", "m", lambda old: None)
    assert same is not None and same.payload == {"n": 2} and same.version == 2


def test_delete_by_key_kind_and_all(store: StateStore) -> None:
    for kind, key in (("cost", "a"), ("cost", "b"), ("bandit", "a")):
        store.put(kind, key, {"k": key}, expected_version=0)
    store.append("feedback", {"score": 1.0})
    assert store.delete("cost", "a") == 1
    assert store.delete("cost") == 1
    assert store.items("bandit") != {}
    assert store.delete() == 2  # one document and one event
    assert store.items("bandit") == {} and store.events("feedback") == []


def test_events_are_ordered_and_paged(store: StateStore) -> None:
    ids = [store.append("feedback", {"i": i}) for i in range(5)]
    assert ids == sorted(ids)
    assert [e.payload["i"] for e in store.events("feedback")] == [0, 1, 2, 3, 4]
    assert [e.payload["i"] for e in store.events("feedback", after_id=ids[1], limit=2)] == [2, 3]
    assert store.events("other") == []


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": [1.0, math.inf]}, {"x": object()}])
def test_unstorable_payload_is_refused_with_its_path(store: StateStore, bad: dict) -> None:
    with pytest.raises(StateError, match="not storable"):
        store.put("cost", "a", bad, expected_version=None)
    assert store.get("cost", "a") is None


def test_open_store_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(None), MemoryStateStore)
    mine = MemoryStateStore()
    assert open_store(mine) is mine
    opened = open_store(tmp_path / "x.sqlite")
    assert isinstance(opened, SQLiteStateStore)
    opened.close()
    monkeypatch.setenv("LANGCHAIN_ENERGYROUTER_STATE", str(tmp_path / "env.sqlite"))
    default = open_store("default")
    assert isinstance(default, SQLiteStateStore) and default.path == tmp_path / "env.sqlite"
    default.close()
    with pytest.raises(StateError, match="Cannot use 42"):
        open_store(42)


def test_corrupt_document_names_the_store_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteStateStore(path) as store:
        store.put("cost", "m", {"ok": True}, expected_version=0)
    db = sqlite3.connect(path)
    db.execute("UPDATE documents SET payload = '{not json' WHERE key = 'm'")
    db.commit()
    db.close()
    with SQLiteStateStore(path) as store, pytest.raises(StateError, match=r"cost/m is not valid JSON.*state reset"):
        store.get("cost", "m")


def test_a_newer_store_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SQLiteStateStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="format 99, newer"):
        SQLiteStateStore(path)


def test_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StateError, match="is closed"):
        store.get("cost", "m")


_WRITER = textwrap.dedent(
    """
    import sys
    from langchain_energyrouter.state import SQLiteStateStore, update
    path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SQLiteStateStore(path, timeout_s=60)
    for i in range(n):
        update(store, "cost", "shared", lambda old: {"count": (old or {"count": 0})["count"] + 1,
                                                      "last": name})
        store.append("feedback", {"writer": name, "i": i})
        print(i, flush=True)
    store.close()
    """
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    n = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name, str(n)], stdout=subprocess.PIPE, text=True)
        for name in ("p1", "p2")
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert len(out.split()) == n
    with SQLiteStateStore(path) as store:
        doc = store.get("cost", "shared")
        assert doc is not None and doc.payload["count"] == 2 * n and doc.version == 2 * n
        events = store.events("feedback")
        assert len(events) == 2 * n
        for name in ("p1", "p2"):
            assert [e.payload["i"] for e in events if e.payload["writer"] == name] == list(range(n))


def kill_9_mid_stream(proc: subprocess.Popen[str], after: int = 200) -> int:
    """Let a writer that prints each acknowledged index run past ``after``, SIGKILL it; the last index it printed."""
    assert proc.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 60
    while acknowledged < after and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read().split()
    proc.wait()
    return int(rest[-1]) if rest else acknowledged


def test_kill_9_in_the_middle_of_writing_loses_at_most_the_write_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), "victim", "100000"], stdout=subprocess.PIPE, text=True
    )
    acknowledged = kill_9_mid_stream(proc)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    with SQLiteStateStore(path) as store:
        events = [e.payload["i"] for e in store.events("feedback")]
        doc = store.get("cost", "shared")
    # Every acknowledged write is there; at most the one in flight (written, not yet acknowledged) is extra.
    assert events == list(range(len(events)))
    assert acknowledged + 1 <= len(events) <= acknowledged + 2
    assert doc is not None and doc.payload["count"] in (len(events), len(events) + 1)
    assert json.dumps(doc.payload)  # readable
