"""Live load: the in-flight counter, the Prometheus parser, and the engine reader over real HTTP.

A real vLLM or TGI cannot run here (no GPU, no network), so the engine is played by a
stdlib ``http.server`` on loopback serving metrics text in the engines' own format (metric
names and labels as vLLM 0.6+ and TGI 2.x expose them). The HTTP client, timeouts, TTL
cache and background refresh are all real.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from langchain_energyrouter.router.inflight import (
    EngineLoad,
    EngineLoadReader,
    InFlightCounter,
    load_for_decision,
    parse_prometheus_text,
)

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}} {running}
vllm:num_requests_running{{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"}} 2.0
vllm:num_requests_running{{engine="0",model_name="other/model"}} 50.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}} {waiting}
vllm:num_requests_waiting{{engine="0",model_name="other/model"}} 9.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage.
vllm:gpu_cache_usage_perc{{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}} 0.41
vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"}} 17
"""

TGI_METRICS = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 3
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 12
tgi_request_duration_bucket{le="0.5"} 4
"""


def test_counter_counts_per_candidate_and_track_releases_on_error() -> None:
    counter = InFlightCounter()
    with counter.track("a") as first:
        assert first == 1
        with counter.track("a") as second, counter.track("b") as other:
            assert (second, other) == (2, 1)
            assert counter.snapshot() == {"a": 2, "b": 1}
        assert counter.get("a") == 1 and counter.get("b") == 0
    with pytest.raises(RuntimeError), counter.track("a"):
        raise RuntimeError("the model failed")
    assert counter.snapshot() == {}
    with pytest.raises(ValueError, match=r"No request is in flight on 'a'.*track"):
        counter.decrement("a")


def test_counter_is_exact_under_threads() -> None:
    counter = InFlightCounter()
    peak: list[int] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(2000):
            with counter.track("m") as n:
                peak.append(n)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.get("m") == 0 and counter.snapshot() == {}
    assert 1 <= max(peak) <= 8


def test_parser_reads_labels_escapes_and_special_values() -> None:
    text = (
        '# HELP x help text with "quotes"\n'
        'x{path="C:\\\\dir",msg="say \\"hi\\"\\n",empty=""} +Inf 1700000000000\n'
        "y NaN\n"
        'z{a="1",} -3.5e-1\n'
        "not a metric line at all {\n"
        "# EOF\n"
    )
    samples = {s.name: s for s in parse_prometheus_text(text)}
    assert samples["x"].labels == {"path": "C:\\dir", "msg": 'say "hi"\n', "empty": ""}
    assert samples["x"].value == float("inf")
    assert samples["y"].value != samples["y"].value  # NaN
    assert samples["z"].labels == {"a": "1"} and samples["z"].value == -0.35
    assert set(samples) == {"x", "y", "z"}


@dataclass
class _Engine:
    """A loopback HTTP server playing an engine's /metrics."""

    body: str
    release: threading.Event = field(default_factory=threading.Event)
    """Each request is answered only once this is set (or after 10 s)."""
    status: int = 200
    hits: list[float] = field(default_factory=list)


@pytest.fixture
def engine() -> Iterator[tuple[_Engine, str]]:
    state = _Engine(VLLM_METRICS.format(running=5.0, waiting=1.0))
    state.release.set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(time.monotonic())
            state.release.wait(10.0)
            body = state.body.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_vllm_reader_sums_replicas_of_its_model_only(engine: tuple[_Engine, str]) -> None:
    _state, url = engine
    with EngineLoadReader(url, model="meta-llama/Llama-3.1-8B-Instruct") as reader:
        value = reader.refresh()
    assert value is not None and value.engine == "vllm"
    assert (value.running, value.waiting, value.in_flight) == (7.0, 1.0, 8.0)  # 5 + 2 running, 1 waiting
    with EngineLoadReader(url, model="not/served") as reader:
        assert reader.refresh() is None
        assert reader.last_error is not None and "not/served" in reader.last_error


def test_tgi_metrics_are_read(engine: tuple[_Engine, str]) -> None:
    state, url = engine
    state.body = TGI_METRICS
    with EngineLoadReader(url) as reader:
        value = reader.refresh()
    assert value is not None and value.engine == "tgi"
    assert (value.running, value.waiting) == (12.0, 3.0)


def test_hot_path_never_waits_on_a_slow_engine_and_refreshes_after_ttl(engine: tuple[_Engine, str]) -> None:
    state, url = engine
    state.release.clear()  # the engine answers only when the test lets it
    model = "meta-llama/Llama-3.1-8B-Instruct"
    with EngineLoadReader(url, model=model, ttl_s=0.2, max_age_s=5.0, timeout_s=20.0) as reader:
        first = reader.load()  # nothing cached yet: unknown, and a refresh starts in the background
        assert first is None  # had load() waited for the engine, it would hold a value
        assert not state.release.is_set()
        assert reader.load() is None  # still answering from the (empty) cache, no second request
        state.release.set()
        reader.wait_for_refresh(15.0)
        cached = reader.load()
        assert cached is not None and cached.running == 7.0
        assert len(state.hits) == 1  # fresh: no second request
        state.body = VLLM_METRICS.format(running=30.0, waiting=4.0)
        time.sleep(0.25)  # past the TTL
        stale = reader.load()  # the old value now, a refresh behind it
        assert stale is not None and stale.running == 7.0
        reader.wait_for_refresh(5.0)
        new = reader.load()
        assert new is not None and (new.running, new.waiting) == (32.0, 4.0)
        assert len(state.hits) == 2


def test_a_dead_engine_becomes_unknown_after_max_age(engine: tuple[_Engine, str]) -> None:
    state, url = engine
    now = [100.0]
    with EngineLoadReader(url, ttl_s=1.0, max_age_s=3.0, timeout_s=1.0, clock=lambda: now[0]) as reader:
        assert reader.refresh() is not None
        state.status = 503
        now[0] += 2.0
        assert reader.load() is not None  # stale but within max_age: still used
        reader.wait_for_refresh(5.0)
        assert reader.last_error is not None and "503" in reader.last_error
        now[0] += 2.0  # 4 s since the last good read
        assert reader.load() is None


def test_connection_refused_is_recorded_not_raised() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with EngineLoadReader(f"http://127.0.0.1:{port}/metrics", timeout_s=1.0) as reader:
        assert reader.refresh() is None
        assert reader.last_error is not None and "refused" in reader.last_error.lower()


def test_load_for_decision_counts_this_request_and_the_larger_source() -> None:
    assert load_for_decision(0) == 1.0
    assert load_for_decision(3) == 4.0
    engine_view = EngineLoad(running=6.0, waiting=2.0, read_at_s=0.0, engine="vllm")
    assert load_for_decision(3, engine_view) == 9.0
    assert load_for_decision(12, engine_view) == 13.0  # the engine lags behind our own count


def test_reader_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="engine 'sglang' is unknown"):
        EngineLoadReader("http://x/metrics", engine="sglang")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl_s"):
        EngineLoadReader("http://x/metrics", ttl_s=5.0, max_age_s=1.0)


def test_load_module_imports_only_the_standard_library() -> None:
    import ast
    from pathlib import Path

    import langchain_energyrouter.router.inflight as module

    tree = ast.parse(Path(module.__file__).read_text())
    roots = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert roots - {"__future__"} <= set(sys.stdlib_module_names), roots - set(sys.stdlib_module_names)
    code = (
        "import sys, langchain_energyrouter.router.inflight; "
        "bad = {'pandas', 'numpy', 'statsmodels', 'torch', 'transformers'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
