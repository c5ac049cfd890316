"""The Prometheus recording rules (``deploy/prometheus/rules.yml``) and the README's example queries, for real.

``promtool`` checks the rules and tests their arithmetic on known series (``rules_test.yml``). Then a real
Prometheus (Debian's ``prometheus`` package) scrapes a real ``energyrouter serve`` on loopback every second and
evaluates the rules; the server runs two tiny offline models, one of which rejects system messages as Gemma's
chat template does, so routed requests with a system prompt fall back; bursts beyond one request in flight
per candidate and a queue of one get 429. Every recorded series and every README query must return series,
with the values the traffic implies. Both processes are stopped at the end.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("yaml")

import yaml

from langchain_energyrouter.testing import (
    TINY_CHAT_TEMPLATE,
    TINY_MODEL_SIZES,
    answers,
    free_port,
    save_tiny_model,
    stop_process,
    tiny_profile,
)
from tests.unit_tests.servers import ROOT, RouterServer

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
README = ROOT / "README.md"
NO_PROMETHEUS = "Prometheus is not installed (Debian/Ubuntu: `apt-get install prometheus`; `make setup` tries, as root)"
SYSTEM_REJECTING_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    + TINY_CHAT_TEMPLATE
)
"""tiny-a's chat template: like Gemma's, it refuses a system message (a real failure, before any token)."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(NO_PROMETHEUS)
    return path


def recorded_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["record"] for group in groups for rule in group["rules"]]


def readme_queries() -> list[str]:
    """The queries of the README's ``promql`` block (one a line; ``#`` lines say what the next one shows)."""
    blocks = re.findall(r"```promql\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README has no ```promql block of example queries"
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(recorded_names())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "rules_test.yml"], cwd=RULES.parent, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


class Prometheus:
    """``prometheus`` on a free loopback port, scraping ``target`` every second, with the repository's rules."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "energyrouter", "static_configs": [{"targets": [target]}]}],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        command = [
            _tool("prometheus"),
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log.open("ab") as log:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not answers(f"{self.url}/-/ready"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"prometheus did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert response.status_code == 200, (expr, response.text)
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@dataclass
class Stack:
    router: RouterServer
    prometheus: Prometheus


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _tool("prometheus")
    from transformers import AutoTokenizer

    base = tmp_path_factory.mktemp("prometheus")
    tiny_profile().save(base / "profile.json")
    for name, sizes in TINY_MODEL_SIZES.items():
        save_tiny_model(base / name, name, **sizes)
    tokenizer = AutoTokenizer.from_pretrained(base / "tiny-a")
    tokenizer.chat_template = SYSTEM_REJECTING_TEMPLATE
    tokenizer.save_pretrained(base / "tiny-a")
    config = {
        "profile": "profile.json",
        "candidates": [
            {"name": "tiny-a", "path": "tiny-a", "max_new_tokens": 8},
            {"name": "tiny-b", "path": "tiny-b", "max_new_tokens": 16},
        ],
        "weights": {"energy": 1.0},  # tiny-a first, whenever it has a place
        "limits": {"max_in_flight_per_candidate": 1},
    }
    (base / "router.yaml").write_text(yaml.safe_dump(config))
    flags = ("--queue-length", "1", "--max-queue-wait-s", "0.05")
    router = RouterServer(base / "router.yaml", base / "serve.log", flags=flags).launch()
    prometheus = None
    try:
        router.wait_ready()
        prometheus = Prometheus(base, f"127.0.0.1:{router.port}")
        yield Stack(router, prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        router.stop()


def ask(router: RouterServer, *, system: bool = False, model: str = "auto", stream: bool = False) -> int:
    messages = [{"role": "user", "content": "Say something."}]
    if system:
        messages.insert(0, {"role": "system", "content": "Be brief."})
    body = {"model": model, "messages": messages, "stream": stream}
    return httpx.post(f"{router.url}/v1/chat/completions", json=body, timeout=60).status_code


def test_prometheus_scrapes_the_server_and_every_rule_and_readme_query_returns_series(stack: Stack) -> None:
    router, prometheus = stack.router, stack.prometheus
    assert httpx.get(f"{router.url}/health").json()["queue"] == {
        "waiting": 0,
        "queue_length": 1,
        "max_queue_wait_s": 0.05,
    }  # the serve flags, over the config's limits
    # Warm-up: each model's histograms exist before the traffic the rates are read over.
    assert [ask(router, system=True), ask(router, model="tiny-a"), ask(router, model="tiny-b")] == [200] * 3
    deadline = time.monotonic() + 30
    while len(prometheus.query("energyrouter_measured_energy_joules_count")) < 2:
        assert time.monotonic() < deadline, "Prometheus never scraped the server"
        time.sleep(0.2)

    statuses: list[int] = []
    with ThreadPoolExecutor(8) as pool:
        for burst in range(10):  # 8 at once against 2 places and a queue of 1: some get 429
            kinds = [{"system": i % 2 == 0, "stream": i % 4 == 1} for i in range(8)]
            statuses += list(pool.map(lambda kind: ask(router, **kind), kinds))
            if burst >= 2 and 429 in statuses:
                break
    # 502: tiny-a refused the system message and tiny-b, its fallback, was full (no token anywhere).
    assert {200, 429} <= set(statuses) <= {200, 429, 502}, statuses

    # Answers that had the device to themselves (the bursts' readings overlap): joules per answer counts these,
    # and tiny-a's refusals of the system message, alone, are failed joules of its own.
    for _ in range(2):
        assert [ask(router, system=True), ask(router), ask(router, model="tiny-b", stream=True)] == [200] * 3

    deadline = time.monotonic() + 60
    settled = (
        'model_method:energyrouter_failed_energy_joules:rate5m{model="tiny-a"} > 0',
        "sum(energyrouter_rejected_total) > 0",
    )
    while not all(prometheus.query(q) for q in settled):
        assert time.monotonic() < deadline, "Prometheus never evaluated the rules over the traffic"
        time.sleep(0.5)
    time.sleep(2.5)  # two more scrapes and evaluations: every rule has read the last requests
    queries = [*recorded_names(), *readme_queries()]
    missing = [q for q in queries if not prometheus.query(q)]
    assert not missing, f"no series for {missing}"

    def values(expr: str) -> dict[str, float]:
        return {str(r["metric"].get("model", "")): float(r["value"][1]) for r in prometheus.query(expr)}

    per_answer = values("model_method:energyrouter_joules_per_answer:mean5m")
    assert set(per_answer) == {"tiny-a", "tiny-b"} and all(0 < j < math.inf for j in per_answer.values()), per_answer
    assert values("model_method:energyrouter_failed_energy_joules:rate5m")["tiny-a"] > 0  # the refused templates
    assert values('model_target:energyrouter_prediction_error_ratio:mean5m{target="runtime"}')["tiny-b"] > 0
    assert values("energyrouter_fallbacks_per_answer:ratio_rate5m")[""] > 0
    assert 0 < values("energyrouter_busy_rejections:ratio_rate5m")[""] < 1
    fallbacks = prometheus.query("from_model_to_model:energyrouter_fallbacks:rate5m")
    assert {(r["metric"]["from_model"], r["metric"]["to_model"]) for r in fallbacks} == {
        ("tiny-a", "tiny-b"),
        ("tiny-b", "tiny-a"),
    }  # both pairs exist from the start (at 0 until a fallback)
    served, refused = statuses.count(200), statuses.count(429)
    print(f"{len(statuses)} burst requests: {served} served, {refused} refused; joules per answer {per_answer}")
