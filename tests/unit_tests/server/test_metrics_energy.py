"""The server's energy series against the energy callback, under concurrent requests (issue 17 item 1).

A real uvicorn on loopback, the tiny offline models and a candidate that burns CPU then raises (so every
request falls back after spending joules). Six requests at once overlap on the CPU meter (a seventh follows
alone): the overlapped readings must land in their own series, never in
``energyrouter_energy_joules_total``, and the failed attempts' joules must reach the metrics.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

from langchain_energyrouter import EnergyAwareRouter  # noqa: E402
from langchain_energyrouter.callbacks import EnergyCallbackHandler  # noqa: E402
from langchain_energyrouter.server import AppSettings, create_app  # noqa: E402
from langchain_energyrouter.testing import tiny_chat_models  # noqa: E402
from tests.unit_tests.server.test_server import _Served  # noqa: E402
from tests.unit_tests.test_router_metering import Burns, entry, profile_of  # noqa: E402


def _totals(exposition: str, family: str) -> dict[str, float]:
    """Method -> the counter ``family`` summed over models."""
    out: dict[str, float] = {}
    for metric in prometheus_parser.text_string_to_metric_families(exposition):
        if metric.name == family:
            for sample in metric.samples:
                if sample.name == f"{family}_total":
                    method = sample.labels["method"]
                    out[method] = out.get(method, 0.0) + sample.value
    return out


def test_concurrent_requests_count_each_joule_once_and_failed_attempts_too() -> None:
    handler = EnergyCallbackHandler()
    models = {"burns": Burns(iterations=1_000_000), **tiny_chat_models(max_new_tokens=6)}
    profile = profile_of(burns=entry(accuracy=0.99), **{"tiny-a": entry(accuracy=0.1), "tiny-b": entry(accuracy=0.2)})
    router = EnergyAwareRouter(models=models, profile=profile, learn=False, callbacks=[handler])
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "routing": {"weights": {"accuracy": 1.0}},
    }
    with _Served(create_app(router, AppSettings(name="energyrouter"), close_router=True)) as s:
        with ThreadPoolExecutor(6) as pool:
            responses = list(
                pool.map(lambda _: httpx.post(f"{s.url}/v1/chat/completions", json=body, timeout=120), range(6))
            )
        responses.append(httpx.post(f"{s.url}/v1/chat/completions", json=body, timeout=120))  # alone: not overlapped
        exposition = httpx.get(f"{s.url}/metrics").text
    assert [r.status_code for r in responses] == [200] * 7
    assert all(r.json()["energyrouter"]["failures"][0]["model"] == "burns" for r in responses)

    counted = _totals(exposition, "energyrouter_energy_joules")
    overlapped = _totals(exposition, "energyrouter_overlapped_energy_joules")
    failed = _totals(exposition, "energyrouter_failed_energy_joules")
    assert handler.overlapped_energy_j_by_method, "six requests at once on two cores must overlap"
    assert handler.failed_energy_j_by_method, "the request sent alone failed over without overlapping"
    print(f"counted {counted}, overlapped {overlapped}, failed {failed}")
    assert counted == pytest.approx(handler.energy_j_by_method)
    assert overlapped == pytest.approx(handler.overlapped_energy_j_by_method)
    assert failed == pytest.approx(handler.failed_energy_j_by_method)
    assert sum(handler.calls_by_method.values()) == 14  # seven answers, seven failed attempts
