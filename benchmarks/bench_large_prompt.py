"""One large prompt against ``energyrouter serve``: how long ``/health`` waits while it is planned, and how soon
a prompt too large for every context window is refused.

The server is :func:`langchain_energyrouter.server.create_app` under uvicorn on loopback, over the two tiny
offline models (1,024-token windows) with per-prompt routing (hashing encoder). Two phases:

* ``refused by size``: a 900 KB prompt under the default limits (a 2 MB body limit): refused with 413 by its
  characters, before any token is counted;
* ``planned``: a prompt of ``--chars`` characters with ``limits.max_prompt_chars`` raised past it, so its tokens
  are counted with each chat template and its features encoded (then refused by the context-window check).

During each, ``/health`` is asked every 20 ms; printed: the large request's status and time, and the
``/health`` latencies (median, max) while it ran.

Run: ``.venv/bin/python benchmarks/bench_large_prompt.py [--chars 900000]``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import uvicorn

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.prompt.encoders import HashingEncoder
from langchain_energyrouter.prompt.routing import PromptRouting
from langchain_energyrouter.server import AppSettings, LimitsConfig, create_app
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _phase(url: str, chars: int) -> tuple[int, float, list[float]]:
    """The large request's status and seconds, and /health latencies (seconds) while it ran."""
    body = {"model": "auto", "messages": [{"role": "user", "content": ("word " * (chars // 5 + 1))[:chars]}]}
    latencies: list[float] = []
    with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=120) as client:
        started = time.perf_counter()
        large = pool.submit(client.post, f"{url}/v1/chat/completions", json=body)
        while not large.done():
            t = time.perf_counter()
            client.get(f"{url}/health")
            latencies.append(time.perf_counter() - t)
            time.sleep(0.02)
        response = large.result()
        return response.status_code, time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=900_000, help="characters of the planned prompt")
    args = parser.parse_args()
    models = tiny_chat_models(max_new_tokens=4)
    profile = tiny_profile()
    for phase, prompt_limit in (("refused by size", None), ("planned", args.chars + 1)):
        routing = PromptRouting(
            list(models), None, prior_accuracy={n: profile.models[n].accuracy for n in models},
            encoder=HashingEncoder(256),
        )  # fmt: skip
        router = EnergyAwareRouter(models=models, profile=profile, prompt_routing=routing)
        limits = LimitsConfig(max_request_bytes=2_000_000, max_prompt_chars=prompt_limit)
        server, thread, url = _serve(create_app(router, AppSettings(limits=limits)))
        try:
            status, seconds, health = _phase(url, args.chars)
        finally:
            server.should_exit = True
            thread.join(30)
        health_ms = [1000 * h for h in health] or [float("nan")]
        print(
            f"{phase:>16}: {args.chars} chars -> {status} in {seconds:.2f} s; /health while it ran: "
            f"{len(health)} asked, median {statistics.median(health_ms):.1f} ms, max {max(health_ms):.1f} ms"
        )


if __name__ == "__main__":
    main()
