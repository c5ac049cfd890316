"""Load test of ``energyrouter serve`` on loopback: the latency the router adds over calling the candidate directly.

Two servers run in turn, each in its own process under uvicorn, over the same instant candidates (a real
``BaseChatModel`` subclass that answers at once, so the figures are the serving stack's own cost):

* ``direct``: a bare OpenAI-style endpoint that calls the candidate (``ainvoke``) and returns its answer;
* ``router``: :func:`langchain_energyrouter.server.create_app` over an ``EnergyAwareRouter`` of two such
  candidates, with per-prompt routing whose feedback log lives in an SQLite store.

Each gets the same load from this process (httpx): first sequential requests (pure added latency), then
64 concurrent clients sending 2,000 requests (latency under load, queueing included); the router then gets
the same load again with each answer's feedback posted back. Printed: p50/p99 per server and phase, the
router's difference, errors, and the feedback rows the store holds against the feedback acknowledged.
Bounded: 2,000 requests per phase, 240 s per phase, loopback only.

Both servers keep idle connections for :data:`~langchain_energyrouter.server.app.KEEP_ALIVE_S` (as ``energyrouter
serve`` does); ``--keep-alive 5`` gives uvicorn's default back, equal to httpx's pool expiry, and with it the odd
connection reset (a pooled connection reused just as the server closes it).

Run: ``.venv/bin/python benchmarks/bench_server.py [--requests 2000] [--clients 64] [--keep-alive 75]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request  # module level: FastAPI resolves the handler's (string) annotation from here

from langchain_energyrouter.server.app import KEEP_ALIVE_S

MODELS = ("fast-a", "fast-b")


def _instant_model_class() -> Any:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class Instant(BaseChatModel):
        """Answers at once with a fixed text and its own usage."""

        model_id: str

        @property
        def _llm_type(self) -> str:
            return "instant"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
            message = AIMessage(
                content="Paris.",
                usage_metadata={"input_tokens": 12, "output_tokens": 2, "total_tokens": 14},
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

        async def _agenerate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            return self._generate(messages, stop)

    return Instant


def _direct_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from langchain_core.messages import convert_to_messages

    model = _instant_model_class()(model_id=MODELS[0])
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        message = await model.ainvoke(convert_to_messages(body["messages"]))
        usage = message.usage_metadata or {}
        return JSONResponse(
            {
                "id": "direct",
                "object": "chat.completion",
                "model": MODELS[0],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": message.text}}],
                "usage": {"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens")},
            }
        )

    return app


def _router_app(state_path: str) -> Any:
    from langchain_energyrouter import EnergyAwareRouter
    from langchain_energyrouter.bandit import PromptRouting
    from langchain_energyrouter.features import HashingEncoder
    from langchain_energyrouter.profile import CostModel, DeviceInfo, EnergyProfile, ModelProfile
    from langchain_energyrouter.server import AppSettings, LimitsConfig, create_app
    from langchain_energyrouter.state import SQLiteStateStore

    def entry(scale: float, accuracy: float) -> ModelProfile:
        return ModelProfile(
            runtime=CostModel(intercept=0.001 * scale, input_tokens=1e-5 * scale, output_tokens=1e-4 * scale),
            energy=CostModel(intercept=0.01 * scale, input_tokens=1e-4 * scale, output_tokens=1e-3 * scale),
            accuracy=accuracy,
            context_window=4096,
        )

    profile = EnergyProfile.new(
        {MODELS[0]: entry(1.0, 0.5), MODELS[1]: entry(3.0, 0.7)},
        device=DeviceInfo(name="made up for the load test", kind="cpu"),
        energy_method="estimate",
    )
    instant = _instant_model_class()
    models = {name: instant(model_id=name) for name in MODELS}
    store = SQLiteStateStore(state_path)
    routing = PromptRouting(
        list(MODELS), None, store, prior_accuracy={n: profile.models[n].accuracy for n in MODELS},
        encoder=HashingEncoder(256),
    )  # fmt: skip
    router = EnergyAwareRouter(models=models, profile=profile, state_store=store, prompt_routing=routing)
    limits = LimitsConfig(max_in_flight_per_candidate=256)
    return create_app(router, AppSettings(limits=limits), close_router=True)


def _serve(kind: str, port: int, state_path: str, keep_alive_s: int) -> None:
    import uvicorn

    app = _direct_app() if kind == "direct" else _router_app(state_path)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=keep_alive_s
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _load(url: str, requests: int, clients: int, feedback: bool) -> tuple[list[float], int, int]:
    """Latencies (s) of ``requests`` completions from ``clients`` workers; errors; feedback acknowledged."""
    latencies: list[float] = []
    errors = 0
    acknowledged = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal errors, acknowledged
            for i in counter:
                body = {
                    "model": "auto",
                    "messages": [{"role": "user", "content": f"What is the capital of France? {i}"}],
                }
                start = time.perf_counter()
                try:
                    response = await client.post("/v1/chat/completions", json=body)
                except httpx.HTTPError as err:
                    errors += 1
                    print(f"request error: {type(err).__name__}: {err}", file=sys.stderr)
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1
                    print(f"HTTP {response.status_code}: {response.text[:300]}", file=sys.stderr)
                    continue
                run_id = (response.json().get("energyrouter") or {}).get("run_id")
                if feedback and run_id:
                    try:
                        ack = await client.post("/v1/feedback", json={"run_id": run_id, "score": 1.0})
                    except httpx.HTTPError as err:
                        errors += 1
                        print(f"feedback error: {type(err).__name__}: {err}", file=sys.stderr)
                        continue
                    if ack.status_code == 200:
                        acknowledged += 1
                    else:
                        errors += 1
                        print(f"feedback HTTP {ack.status_code}: {ack.text[:300]}", file=sys.stderr)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors, acknowledged


def _wait_ready(url: str, process: Any) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"server process exited with {process.exitcode}")
        try:
            # both apps answer a GET on the POST-only route with 405 once they are up
            if httpx.get(f"{url}/v1/chat/completions", timeout=1).status_code == 405:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start within 120 s")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def _run(url: str, requests: int, clients: int, feedback: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    latencies, errors, acked = asyncio.run(asyncio.wait_for(_load(url, requests, clients, feedback), timeout=240))
    return {"lat": latencies, "errors": errors, "acked": acked, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--keep-alive", type=int, default=KEEP_ALIVE_S, help="uvicorn's timeout_keep_alive (s)")
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    phases: dict[str, dict[str, dict[str, Any]]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        state_path = str(Path(tmp) / "state.sqlite")
        for kind in ("direct", "router"):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            process = ctx.Process(target=_serve, args=(kind, port, state_path, args.keep_alive), daemon=True)
            process.start()
            try:
                _wait_ready(url, process)
                _run(url, 50, 8, False)  # warm-up
                phases[kind] = {
                    "sequential": _run(url, args.sequential, 1, False),
                    "loaded": _run(url, args.requests, args.clients, False),
                }
                if kind == "router":  # the same load, each answer's feedback posted back
                    phases[kind]["feedback"] = _run(url, args.requests, args.clients, True)
            finally:
                process.terminate()
                process.join(30)
        from langchain_energyrouter.bandit import FEEDBACK_LOG
        from langchain_energyrouter.state import SQLiteStateStore

        with SQLiteStateStore(state_path) as store:
            rows = len(store.events(FEEDBACK_LOG))
    print(
        f"loopback load test, {args.clients} clients x {args.requests} requests (+{args.sequential} sequential), "
        f"keep-alive {args.keep_alive} s"
    )
    print(f"{'':24} {'p50':>8} {'p99':>8} {'req/s':>7} {'errors':>6}  (ms)")
    for kind, runs in phases.items():
        for phase, r in runs.items():
            print(
                f"{kind + ' ' + phase:24} {_pct(r['lat'], 0.5):8.2f} {_pct(r['lat'], 0.99):8.2f} "
                f"{len(r['lat']) / r['wall_s']:7.0f} {r['errors']:6d}"
            )
    d, r = phases["direct"], phases["router"]
    for phase, label in (("sequential", "sequential"), ("loaded", f"{args.clients} clients")):
        print(
            f"router adds ({label}): p50 {_pct(r[phase]['lat'], 0.5) - _pct(d[phase]['lat'], 0.5):+.2f} ms, "
            f"p99 {_pct(r[phase]['lat'], 0.99) - _pct(d[phase]['lat'], 0.99):+.2f} ms"
        )
    ratio = statistics.median(r["sequential"]["lat"]) / statistics.median(d["sequential"]["lat"])
    print(f"median sequential ratio router/direct: {ratio:.2f}x")
    acked = r["feedback"]["acked"]
    print(f"feedback acknowledged {acked}, rows in the store's feedback log {rows}, lost {acked - rows}")
    errors = sum(run["errors"] for runs in phases.values() for run in runs.values())
    print(f"errors {errors}; total wall time {time.monotonic() - started:.0f} s")
    return 1 if errors or acked != rows else 0


if __name__ == "__main__":
    sys.exit(main())
