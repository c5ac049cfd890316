"""Bursts wait in a bounded queue (``limits.queue_length``, ``limits.max_queue_wait_s``) instead of 429 at once.

A real uvicorn on loopback; the candidates are gated ``BaseChatModel``s that hold each request until the test
opens their gate (see ``test_server``'s module doc: "held" is what a full candidate needs). The queue itself is
also driven directly on an event loop, with releases from another thread as the stream readers do.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.server import AppSettings, LimitsConfig, create_app
from langchain_energyrouter.server.admission import HeldPlace, Slots
from langchain_energyrouter.server.context import ServerContext
from langchain_energyrouter.server.metrics import ServerMetrics
from langchain_energyrouter.testing import tiny_profile
from tests.unit_tests.doubles import GatedChatModel
from tests.unit_tests.server.test_server import _Served

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hold"}]}


@contextmanager
def gated_server(**limits: Any) -> Iterator[tuple[_Served, threading.Event, threading.Semaphore]]:
    """Two gated candidates (tiny-a, tiny-b) behind a real server with ``limits``; the gate opens on exit."""
    gate, entered = threading.Event(), threading.Semaphore(0)
    models = {n: GatedChatModel(gate=gate, entered=entered, model_id=n) for n in ("tiny-a", "tiny-b")}
    router = EnergyAwareRouter(models=models, profile=tiny_profile(), weights={"energy": 1.0})
    try:
        with _Served(create_app(router, AppSettings(limits=LimitsConfig(**limits)))) as served:
            yield served, gate, entered
    finally:
        gate.set()


def timed_post(url: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(url, json=body, timeout=60)
    return response, time.perf_counter() - started


def wait_until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_burst_fills_the_places_and_the_queue_then_gets_429_at_once() -> None:
    # 2 candidates x 2 places + a queue of 8: of 24 simultaneous requests 12 are served, 12 refused at once.
    with gated_server(max_in_flight_per_candidate=2, queue_length=8, max_queue_wait_s=30) as (s, gate, entered):
        url = f"{s.url}/v1/chat/completions"
        bodies = [{**BODY, "stream": i % 2 == 1} for i in range(24)]  # half stream: their places end on a thread
        with ThreadPoolExecutor(24) as pool:
            futures: list[Future[tuple[httpx.Response, float]]] = [pool.submit(timed_post, url, b) for b in bodies]
            for _ in range(4):
                assert entered.acquire(timeout=30)
            wait_until(lambda: sum(f.done() for f in futures) == 12)
            health = httpx.get(f"{s.url}/health").json()
            assert health["queue"] == {"waiting": 8, "queue_length": 8, "max_queue_wait_s": 30.0}
            assert [c["in_flight"] for c in health["candidates"].values()] == [2, 2]
            refused = [f.result() for f in futures if f.done()]
            time.sleep(0.3)  # the queued requests keep waiting while the gate is shut
            assert sum(f.done() for f in futures) == 12
            gate.set()
            results = [f.result() for f in futures]
        metrics = httpx.get(f"{s.url}/metrics").text
        health = httpx.get(f"{s.url}/health").json()
    statuses = sorted(r.status_code for r, _ in results)
    assert statuses == [200] * 12 + [429] * 12
    for response, elapsed_s in refused:
        assert response.status_code == 429 and elapsed_s < 5  # at once, not after a wait
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["code"] == "candidates_busy" and "limits.queue_length" in error["message"]
    served_by = [r.headers["x-energyrouter-model"] for r, _ in results if r.status_code == 200]
    assert sorted(set(served_by)) == ["tiny-a", "tiny-b"]
    assert 'energyrouter_rejected_total{reason="queue_full"} 12.0' in metrics
    assert "energyrouter_queue_wait_seconds_count 8.0" in metrics  # the 8 that queued, each served
    assert "energyrouter_queued 0.0" in metrics
    assert health["queue"]["waiting"] == 0 and [c["in_flight"] for c in health["candidates"].values()] == [0, 0]
    print(f"burst of 24: 12 served, 12 refused in at most {max(t for _, t in refused) * 1000:.0f} ms")


def test_a_queued_request_gets_429_with_retry_after_once_its_wait_runs_out() -> None:
    with gated_server(max_in_flight_per_candidate=1, queue_length=4, max_queue_wait_s=0.4, retry_after_s=2) as (
        s,
        gate,
        entered,
    ):
        url = f"{s.url}/v1/chat/completions"
        with ThreadPoolExecutor(4) as pool:
            held = [pool.submit(timed_post, url, BODY) for _ in range(2)]
            for _ in range(2):
                assert entered.acquire(timeout=30)
            waited = [pool.submit(timed_post, url, body) for body in (BODY, {**BODY, "model": "tiny-b"})]
            outcomes = [f.result() for f in waited]
            gate.set()
            assert [f.result()[0].status_code for f in held] == [200, 200]
        metrics = httpx.get(f"{s.url}/metrics").text
    for response, elapsed_s in outcomes:
        assert response.status_code == 429, response.text
        assert 0.4 <= elapsed_s < 2.0, elapsed_s  # waited its bound, not much longer
        assert response.headers["retry-after"] == "2"
        assert "limits.max_queue_wait_s" in response.json()["error"]["message"]
    assert 'energyrouter_rejected_total{reason="queue_timeout"} 2.0' in metrics


def test_a_queued_request_whose_client_leaves_gives_up_its_turn_and_no_model_runs_for_it() -> None:
    with gated_server(max_in_flight_per_candidate=1, queue_length=4, max_queue_wait_s=30) as (s, gate, entered):
        url = f"{s.url}/v1/chat/completions"
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(timed_post, url, BODY) for _ in range(2)]
            for _ in range(2):
                assert entered.acquire(timeout=30)  # both candidates hold a request: the next one queues
            client = socket.create_connection(("127.0.0.1", s.port))
            body = json.dumps(BODY)
            head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            client.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode())
            wait_until(lambda: httpx.get(f"{s.url}/health").json()["queue"]["waiting"] == 1)
            client.close()  # the client leaves while its request waits
            wait_until(lambda: httpx.get(f"{s.url}/health").json()["queue"]["waiting"] == 0)
            gate.set()
            assert [f.result()[0].status_code for f in held] == [200, 200]
        assert not entered.acquire(timeout=0.5)  # the places freed went to no one: no model ran for it
        health = httpx.get(f"{s.url}/health").json()
        metrics = httpx.get(f"{s.url}/metrics").text
    assert [c["in_flight"] for c in health["candidates"].values()] == [0, 0]
    assert 'energyrouter_rejected_total{reason="client_left"} 1.0' in metrics


def test_a_place_handed_to_a_queued_request_whose_handler_is_cancelled_goes_back() -> None:
    # The wait runs beside a watch of the client: a place granted just before the handler is cancelled (shutdown)
    # must not stay counted with nobody holding it.
    async def scenario(ticks: int) -> dict[str, int]:
        gate = threading.Event()
        models = {n: GatedChatModel(gate=gate, entered=threading.Semaphore(0), model_id=n) for n in ("tiny-a",)}
        router = EnergyAwareRouter(models=models, profile=tiny_profile())
        settings = AppSettings(limits=LimitsConfig(max_in_flight_per_candidate=1, queue_length=2))
        server = ServerContext(router, settings)
        assert server.slots.try_acquire("tiny-a")
        stays = asyncio.Event()
        handler = asyncio.create_task(server.plan([HumanMessage("hold")], {}, None, None, client_left=stays.wait))
        await asyncio.sleep(0.01)
        assert server.slots.queued == 1
        server.slots.release("tiny-a")  # the place passes to the queued request
        for _ in range(ticks):
            await asyncio.sleep(0)
        handler.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handler
        await asyncio.sleep(0.01)
        await asyncio.to_thread(server.close)
        return dict(server.slots.counts)

    for ticks in range(4):  # the cancel lands before, while and after the wait hands its place over
        assert asyncio.run(scenario(ticks)) == {"tiny-a": 0}, ticks


def test_the_queue_hands_places_over_in_arrival_order_and_a_later_request_does_not_jump_it() -> None:
    async def scenario() -> list[str]:
        slots = Slots({"a": 1, "b": 1}, ServerMetrics(["a", "b"]), queue_length=3, max_wait_s=5)
        assert slots.try_acquire("a") and slots.try_acquire("b")
        order: list[str] = []

        async def queued(label: str, eligible: list[str]) -> None:
            wait = await slots.wait(eligible)
            order.append(f"{label}:{wait.outcome}:{wait.name}")

        tasks = [asyncio.create_task(queued("first", ["a", "b"])), asyncio.create_task(queued("forced-b", ["b"]))]
        tasks.append(asyncio.create_task(queued("second", ["a", "b"])))
        await asyncio.sleep(0.05)
        assert slots.queued == 3
        assert (await slots.wait(["a"])).outcome == "queue_full"  # the queue holds 3
        # Releases from another thread, as a stream's reader thread ends its attempt.
        await asyncio.to_thread(slots.release, "b")  # -> first (it came first and can use b)
        await asyncio.sleep(0.05)
        await asyncio.to_thread(slots.release, "a")  # -> second: forced-b cannot use a
        await asyncio.sleep(0.05)
        assert slots.counts == {"a": 1, "b": 1}  # each place passed on, none freed
        # "first" holds b but its call moved elsewhere: the held place goes on to forced-b.
        HeldPlace(slots, "b").close()
        await asyncio.gather(*tasks)
        assert slots.queued == 0
        return order

    assert asyncio.run(scenario()) == ["first:granted:b", "second:granted:a", "forced-b:granted:b"]


def test_serve_refuses_queue_flags_out_of_range_before_loading_models(capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_energyrouter.cli import main
    from tests.unit_tests.servers import ROOT

    example = str(ROOT / "examples" / "router.yaml")
    assert main(["serve", "--config", example, "--queue-length", "-1", "--max-queue-wait-s", "0"]) == 1
    err = capsys.readouterr().err
    assert "--queue-length -1: Input should be greater than or equal to 0" in err
    assert "--max-queue-wait-s 0.0: Input should be greater than 0" in err
