"""Load test of ``energyrouter serve`` on loopback: the latency the router adds over calling the candidate directly.

Part 1, fast candidates. Two servers run side by side, each in its own process under uvicorn, over the same
instant candidates (a real ``BaseChatModel`` subclass that answers at once, so the figures are the serving
stack's own cost):

* ``direct``: a bare OpenAI-style endpoint that calls the candidate (``ainvoke``) and returns its answer;
* ``router``: :func:`langchain_energyrouter.server.create_app` over an ``EnergyAwareRouter`` of two such
  candidates, with per-prompt routing whose feedback log lives in an SQLite store.

Phases: sequential requests sent to the two servers alternately (pairs, so the machine's noise hits both
alike; the added latency is the median of the pairs' differences), then 64 concurrent clients sending 2,000
requests to each in turn (latency under load, queueing included), then the router again under the same load
with each answer's feedback posted back. Printed: p50/p99 per server and phase, the router's difference,
errors, and the feedback rows the store holds against the feedback acknowledged.

Part 2, the real engine: ``transformers serve`` serving the packaged SmolLM2 (the tiny offline model where the
packaged one is not converted yet), 100 requests straight to it and 100 through a router server whose
candidate is that engine (an OpenAI-compatible ``base_url`` candidate, as ``router.yaml`` writes it), each
from ``--engine-clients`` concurrent clients, same prompts, ``max_tokens`` 16.

Bounded: 2,000 requests per phase, 240 s per phase, loopback only. Both servers keep idle connections for
:data:`~langchain_energyrouter.server.app.KEEP_ALIVE_S` (as ``energyrouter serve`` does); ``--keep-alive 5``
gives uvicorn's default back, equal to httpx's pool expiry, and with it the odd connection reset (a pooled
connection reused just as the server closes it).

Run: ``.venv/bin/python benchmarks/bench_server.py [--requests 2000] [--clients 64] [--engine-requests 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request  # module level: FastAPI resolves the handler's (string) annotation from here

from langchain_energyrouter.server.app import KEEP_ALIVE_S
from langchain_energyrouter.testing.engine import free_port, serve_transformers

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
    from _profiles import profile_for

    from langchain_energyrouter import EnergyAwareRouter
    from langchain_energyrouter.prompt.encoders import HashingEncoder
    from langchain_energyrouter.prompt.routing import PromptRouting
    from langchain_energyrouter.server import AppSettings, LimitsConfig, create_app
    from langchain_energyrouter.state import SQLiteStateStore

    profile = profile_for(list(MODELS), accuracy_step=0.2)
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


def _engine_router_app(engine_url: str, engine_model: str) -> Any:
    """A router server whose candidates are the real engine (a ``base_url`` candidate) and an instant model
    that loses on accuracy, so every request is routed, and served by the engine."""
    from _profiles import profile_for

    from langchain_energyrouter import EnergyAwareRouter
    from langchain_energyrouter.server import AppSettings, LimitsConfig, create_app
    from langchain_energyrouter.server.config import CandidateConfig, build_candidate

    config = CandidateConfig(name="engine", base_url=f"{engine_url}/v1", model_id=engine_model, max_new_tokens=16)
    models = {"instant": _instant_model_class()(model_id="instant"), "engine": build_candidate(config, Path("."))}
    profile = profile_for(["instant", "engine"], accuracy_step=0.6)
    router = EnergyAwareRouter(models=models, profile=profile, weights={"accuracy": 1.0})
    return create_app(router, AppSettings(limits=LimitsConfig(max_in_flight_per_candidate=64)), close_router=True)


def _serve(kind: str, port: int, arg: Any, keep_alive_s: int) -> None:
    import uvicorn

    if kind == "direct":
        app = _direct_app()
    elif kind == "router":
        app = _router_app(arg)
    else:
        app = _engine_router_app(*arg)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=keep_alive_s
    )


def _body(i: int, model: str = "auto", max_tokens: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


QUESTIONS = [f"What is the capital of France? ({i})" for i in range(50)] + [
    "Name three primary colours.",
    "What is 12 times 12?",
    "Translate 'good morning' into French.",
    "Who wrote Hamlet?",
]


async def _load(
    url: str,
    requests: int,
    clients: int,
    feedback: bool,
    model: str = "auto",
    max_tokens: int | None = None,
    tokens: list[int] | None = None,
) -> tuple[list[float], int, int]:
    """Latencies (s) of ``requests`` completions from ``clients`` workers; errors; feedback acknowledged.

    ``tokens``, when given, receives each answer's completion tokens (its usage)."""
    latencies: list[float] = []
    errors = 0
    acknowledged = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal errors, acknowledged
            for i in counter:
                start = time.perf_counter()
                try:
                    response = await client.post("/v1/chat/completions", json=_body(i, model, max_tokens))
                except httpx.HTTPError as err:
                    errors += 1
                    print(f"request error: {type(err).__name__}: {err}", file=sys.stderr)
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1
                    print(f"HTTP {response.status_code}: {response.text[:300]}", file=sys.stderr)
                    continue
                answer = response.json()
                if tokens is not None:
                    tokens.append(int((answer.get("usage") or {}).get("completion_tokens") or 0))
                extension = answer.get("energyrouter") or {}
                run_id, token = extension.get("run_id"), extension.get("feedback_token")
                if feedback and run_id:
                    try:
                        body = {"run_id": run_id, "feedback_token": token, "score": 1.0}
                        ack = await client.post("/v1/feedback", json=body)
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


def _paired(direct_url: str, router_url: str, pairs: int) -> dict[str, Any]:
    """Sequential requests to the two servers in turn (the order alternates): each one's latencies (s)."""
    lat: dict[str, list[float]] = {"direct": [], "router": []}
    errors = 0
    with httpx.Client(timeout=60) as client:
        for i in range(pairs):
            order = (("direct", direct_url), ("router", router_url))
            for kind, url in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                response = client.post(f"{url}/v1/chat/completions", json=_body(i))
                lat[kind].append(time.perf_counter() - start)
                errors += response.status_code != 200
    return {"lat": lat, "errors": errors}


def _wait_ready(url: str, process: Any) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"server process exited with {process.exitcode}")
        try:
            # the apps answer a GET on the POST-only route with 405 once they are up
            if httpx.get(f"{url}/v1/chat/completions", timeout=1).status_code == 405:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start within 120 s")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def _run(url: str, requests: int, clients: int, feedback: bool = False, **body: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    load = _load(url, requests, clients, feedback, **body)
    latencies, errors, acked = asyncio.run(asyncio.wait_for(load, timeout=240))
    return {"lat": latencies, "errors": errors, "acked": acked, "wall_s": time.perf_counter() - t0}


@contextmanager
def _server(ctx: Any, kind: str, arg: Any, keep_alive_s: int) -> Iterator[tuple[str, int]]:
    """A server process on a free port: its URL and pid."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ctx.Process(target=_serve, args=(kind, port, arg, keep_alive_s), daemon=True)
    process.start()
    try:
        _wait_ready(url, process)
        yield url, process.pid
    finally:
        process.terminate()
        process.join(30)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(pid: int, url: str, requests: int, clients: int, **options: Any) -> dict[str, Any]:
    """:func:`_run`, with the server's CPU seconds per request."""
    before = _cpu_s(pid)
    run = _run(url, requests, clients, **options)
    run["cpu_ms"] = (_cpu_s(pid) - before) / max(len(run["lat"]), 1) * 1000.0
    return run


def _row(label: str, r: dict[str, Any]) -> str:
    return (
        f"{label:24} {_pct(r['lat'], 0.5):9.2f} {_pct(r['lat'], 0.99):9.2f} "
        f"{len(r['lat']) / r['wall_s']:7.1f} {r['errors']:6d}"
    )


def _fast_candidates(ctx: Any, args: argparse.Namespace, state_path: str) -> int:
    with (
        _server(ctx, "direct", None, args.keep_alive) as (direct, direct_pid),
        _server(ctx, "router", state_path, args.keep_alive) as (router, router_pid),
    ):
        for url in (direct, router):
            _run(url, 50, 8)  # warm-up
        paired = _paired(direct, router, args.sequential)
        loaded = {
            "direct": _measured(direct_pid, direct, args.requests, args.clients),
            "router": _measured(router_pid, router, args.requests, args.clients),
        }
        with_feedback = _measured(router_pid, router, args.requests, args.clients, feedback=True)
    from langchain_energyrouter.prompt.feedback import FEEDBACK_LOG
    from langchain_energyrouter.state import SQLiteStateStore

    with SQLiteStateStore(state_path) as store:
        rows = len(store.events(FEEDBACK_LOG))
    d, r = paired["lat"]["direct"], paired["lat"]["router"]
    diffs = [b - a for a, b in zip(d, r, strict=True)]
    print(
        f"fast candidates: {args.sequential} sequential pairs, then {args.clients} clients x {args.requests} requests "
        f"per server, keep-alive {args.keep_alive} s"
    )
    print(f"{'':24} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>7} {'errors':>6}")
    for kind, lat in (("direct", d), ("router", r)):
        print(f"{kind + ' sequential':24} {_pct(lat, 0.5):9.2f} {_pct(lat, 0.99):9.2f} {'':>7} {'':>6}")
    for kind, run in loaded.items():
        print(_row(f"{kind} {args.clients} clients", run))
    print(_row("router + feedback", with_feedback))
    print(
        f"router adds, sequential (median of paired differences): {statistics.median(diffs) * 1000:+.2f} ms; "
        f"p99 {_pct(r, 0.99) - _pct(d, 0.99):+.2f} ms; median ratio {statistics.median(r) / statistics.median(d):.2f}x"
    )
    lr, ld = loaded["router"], loaded["direct"]
    print(
        f"router adds, {args.clients} clients: p50 {_pct(lr['lat'], 0.5) - _pct(ld['lat'], 0.5):+.2f} ms, "
        f"p99 {_pct(lr['lat'], 0.99) - _pct(ld['lat'], 0.99):+.2f} ms; throughput "
        f"{len(lr['lat']) / lr['wall_s']:.0f} vs {len(ld['lat']) / ld['wall_s']:.0f} req/s"
    )
    print(
        f"server CPU per request under load: direct {ld['cpu_ms']:.2f} ms, router {lr['cpu_ms']:.2f} ms, "
        f"router with feedback {with_feedback['cpu_ms']:.2f} ms (the load generator shares the cores)"
    )
    acked = with_feedback["acked"]
    print(f"feedback acknowledged {acked}, rows in the store's feedback log {rows}, lost {acked - rows}")
    errors = paired["errors"] + sum(run["errors"] for run in (*loaded.values(), with_feedback))
    print(f"errors {errors}")
    return 1 if errors or acked != rows else 0


def _engine_directory() -> tuple[str | None, str]:
    """The packaged SmolLM2's converted directory, or None (the tiny model is served instead) and why."""
    from langchain_energyrouter.models import resolve_model

    resolved = resolve_model("smollm2-135m")
    if resolved.is_cached and resolved.cache_path is not None:
        return str(resolved.cache_path), "smollm2-135m (packaged)"
    return None, "the tiny offline model (smollm2-135m is not converted yet: run `make setup`)"


async def _side_by_side(engine_url: str, engine_model: str, router_url: str, requests: int, clients: int) -> Any:
    """The same prompts straight to the engine and through the router, at the same time (``clients`` each), so
    both meet the same engine load; each path's latencies and its answers' completion tokens."""
    paths = {"direct": (engine_url, engine_model), "router": (router_url, "auto")}
    tokens: dict[str, list[int]] = {kind: [] for kind in paths}
    t0 = time.perf_counter()
    loads = [_load(url, requests, clients, False, model, 16, tokens[kind]) for kind, (url, model) in paths.items()]
    results = await asyncio.wait_for(asyncio.gather(*loads), timeout=480)
    wall_s = time.perf_counter() - t0
    return {
        kind: {"lat": lat, "errors": errors, "acked": 0, "wall_s": wall_s, "tokens": tokens[kind]}
        for kind, (lat, errors, _) in zip(paths, results, strict=True)
    }


def _real_engine(ctx: Any, args: argparse.Namespace) -> int:
    directory, label = _engine_directory()
    try:
        engine = serve_transformers(directory)
        engine_url, engine_model = engine.__enter__()
    except (RuntimeError, ImportError) as err:
        print(f"real engine: not run ({err})")
        return 0
    try:
        with _server(ctx, "engine-router", (engine_url, engine_model), args.keep_alive) as (router, _):
            _run(engine_url, 4, 2, model=engine_model, max_tokens=16)  # warm-up
            _run(router, 4, 2, max_tokens=16)
            n, c = args.engine_requests, args.engine_clients
            runs = asyncio.run(_side_by_side(engine_url, engine_model, router, n, c))
    finally:
        engine.__exit__(None, None, None)
    print(
        f"\nreal engine: transformers serve, {label}; {n} requests straight to it and {n} through the router at "
        f"the same time, {c} clients each, max_tokens 16"
    )
    print(f"{'':24} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>7} {'errors':>6} {'tokens':>7} {'ms/token':>9}")
    per_token = {}
    for kind, run in runs.items():
        mean_tokens = statistics.fmean(run["tokens"]) if run["tokens"] else float("nan")
        per_token[kind] = statistics.median(lat / max(t, 1) for lat, t in zip(run["lat"], run["tokens"], strict=False))
        print(f"{_row(kind, run)} {mean_tokens:7.1f} {per_token[kind] * 1000:9.1f}")
    d, r = runs["direct"], runs["router"]
    print(
        f"router adds over the engine: p50 {_pct(r['lat'], 0.5) - _pct(d['lat'], 0.5):+.1f} ms, "
        f"p99 {_pct(r['lat'], 0.99) - _pct(d['lat'], 0.99):+.1f} ms; median per answer token "
        f"{(per_token['router'] - per_token['direct']) * 1000:+.2f} ms (the engine samples: lengths differ)"
    )
    errors = d["errors"] + r["errors"]
    print(f"errors {errors}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="0 skips the fast candidates")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=300, help="sequential pairs (direct, router)")
    parser.add_argument("--engine-requests", type=int, default=100, help="0 skips the real engine")
    parser.add_argument("--engine-clients", type=int, default=8)
    parser.add_argument("--keep-alive", type=int, default=KEEP_ALIVE_S, help="uvicorn's timeout_keep_alive (s)")
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    status = 0
    if args.requests > 0:
        with tempfile.TemporaryDirectory() as tmp:
            status = _fast_candidates(ctx, args, str(Path(tmp) / "state.sqlite"))
    if args.engine_requests > 0:
        status |= _real_engine(ctx, args)
    print(f"total wall time {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
