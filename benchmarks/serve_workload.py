"""A mixed workload against a running ``energyrouter serve``, for its decision log and ``energyrouter report``.

Sends ``--calls`` chat completions from ``--clients`` concurrent clients to ``--url``, drawn (seeded) from the
shipped prompt suites: short questions with known answers (``qa-small``), chat requests (``natural-chat``) and
the routing suite's mixed tasks; each call picks its weights (the server's default, energy-first,
accuracy-first, time-first), a ``max_tokens`` (none, 16 or 96), streaming for one call in four, and a forced
candidate for one in twenty. Answers to questions with a known answer are graded (the expected text in the
answer) and posted to ``/v1/feedback`` when the server has per-prompt routing. Prints the calls per outcome,
calls per served model, the throughput and the latency quantiles.

Run (with a server started as ``energyrouter serve --config examples/router.yaml --decision-log d.jsonl``)::

    .venv/bin/python benchmarks/serve_workload.py --url http://127.0.0.1:8000 --calls 200 --clients 3
    .venv/bin/energyrouter report d.jsonl --plot report.png
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

SUITES = Path(__file__).resolve().parents[1] / "calibration" / "suites"
WEIGHTS = (None, None, {"energy": 1.0}, {"accuracy": 1.0}, {"accuracy": 0.2, "energy": 0.2, "time": 0.6})
"""The server's default twice as often as each preset."""


def load_prompts() -> list[dict[str, Any]]:
    """Every prompt of the three suites (``answer`` where the suite has one)."""
    rows = []
    for name in ("qa-small", "natural-chat", "routing-suite"):
        for line in (SUITES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append({"prompt": row["prompt"], "answer": row.get("answer"), "suite": name})
    return rows


def one_call(client: httpx.Client, item: dict[str, Any], rng: random.Random, candidates: list[str]) -> dict[str, Any]:
    """Send one request (streamed or not); return its outcome, served model and latency."""
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": item["prompt"]}]}
    weights = rng.choice(WEIGHTS)
    if weights is not None:
        body["routing"] = {"weights": weights}
    cap = rng.choice((None, None, 16, 96))
    if cap is not None:
        body["max_tokens"] = cap
    if candidates and rng.random() < 0.05:
        body["model"] = rng.choice(candidates)
    stream = rng.random() < 0.25
    body["stream"] = stream
    start = time.perf_counter()
    try:
        if stream:
            text, served, run_id = "", None, None
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    return {"outcome": str(response.status_code), "latency_s": time.perf_counter() - start}
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        text += (choice.get("delta") or {}).get("content") or ""
                    extension = chunk.get("energyrouter") or {}
                    served = extension.get("served_by", served)
                    run_id = extension.get("run_id", run_id)
        else:
            response = client.post("/v1/chat/completions", json=body)
            if response.status_code != 200:
                return {"outcome": str(response.status_code), "latency_s": time.perf_counter() - start}
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
            extension = data.get("energyrouter") or {}
            served, run_id = extension.get("served_by"), extension.get("run_id")
    except httpx.HTTPError as err:
        return {"outcome": type(err).__name__, "latency_s": time.perf_counter() - start}
    latency = time.perf_counter() - start
    graded = None
    if item["answer"] is not None and run_id is not None:
        graded = float(str(item["answer"]).lower() in text.lower())
    return {"outcome": "200", "served": served, "run_id": run_id, "score": graded, "latency_s": latency}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--clients", type=int, default=3, help="concurrent clients")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per request")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 10_000 or not 1 <= args.clients <= 64:
        parser.error("--calls must be 1..10000 and --clients 1..64")
    prompts = load_prompts()
    with httpx.Client(base_url=args.url, timeout=args.timeout_s) as client:
        names = [m["id"] for m in client.get("/v1/models").json()["data"]]
        candidates = names[2:]  # "auto", the server's name, then every candidate
        lock = threading.Lock()
        results: list[dict[str, Any]] = []
        feedback: Counter[str] = Counter()

        def worker(index: int) -> None:
            rng = random.Random(args.seed * 100_003 + index)
            result = one_call(client, rng.choice(prompts), rng, candidates)
            if result.get("score") is not None:
                posted = client.post("/v1/feedback", json={"run_id": result["run_id"], "score": result["score"]})
                feedback[str(posted.status_code)] += 1
            with lock:
                results.append(result)
                if len(results) % 20 == 0:
                    print(f"  {len(results)}/{args.calls} calls", file=sys.stderr, flush=True)

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(worker, range(args.calls)))
        elapsed = time.perf_counter() - start
    latencies = sorted(r["latency_s"] for r in results if r["outcome"] == "200")
    print(f"calls: {len(results)} in {elapsed:.1f} s ({len(results) / elapsed:.2f}/s), clients {args.clients}")
    print(f"outcomes: {dict(Counter(r['outcome'] for r in results))}")
    print(f"served by: {dict(Counter(r.get('served') for r in results if r['outcome'] == '200'))}")
    if latencies:
        p90 = latencies[int(0.9 * (len(latencies) - 1))]
        print(f"latency: p50 {statistics.median(latencies):.2f} s, p90 {p90:.2f} s, max {latencies[-1]:.2f} s")
    print(f"feedback posted: {dict(feedback)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
