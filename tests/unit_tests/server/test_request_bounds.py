"""Limits a client cannot break: output budgets, the operator's constraints, prompt size, and a planning prompt
never stalls the event loop. Real uvicorn on loopback over the tiny offline models."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytest.importorskip("openai")

from langchain_energyrouter import EnergyAwareRouter
from langchain_energyrouter.decide.scoring import Constraints
from langchain_energyrouter.prompt.encoders import HashingEncoder
from langchain_energyrouter.prompt.routing import PromptRouting
from langchain_energyrouter.server import AppSettings, LimitsConfig, create_app
from langchain_energyrouter.testing import TINY_MODEL_SIZES, build_tiny_chat_model, tiny_profile
from tests.unit_tests.server.test_server import _Served

BUDGETS = {"tiny-a": 4, "tiny-b": 8}


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    """tiny-a configured for 4 new tokens, tiny-b for 8 (each always generates exactly its cap)."""
    return {
        name: build_tiny_chat_model(name, max_new_tokens=budget, **TINY_MODEL_SIZES[name])
        for name, budget in BUDGETS.items()
    }


def _completion(url: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "Say something."}])
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def _tokens(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["usage"]["completion_tokens"])


def test_a_request_lowers_a_candidate_budget_never_raises_it(models: dict[str, Any]) -> None:
    router = EnergyAwareRouter(models=models, profile=tiny_profile())
    settings = AppSettings(limits=LimitsConfig(max_tokens=6))
    with _Served(create_app(router, settings)) as s:
        # The smallest of the request's max_tokens, the candidate's budget and limits.max_tokens.
        assert _tokens(_completion(s.url, model="tiny-a", max_tokens=64)) == 4  # its budget
        assert _tokens(_completion(s.url, model="tiny-b", max_tokens=64)) == 6  # the server's limit
        assert _tokens(_completion(s.url, model="tiny-b", max_completion_tokens=64)) == 6
        assert _tokens(_completion(s.url, model="tiny-b", max_tokens=3)) == 3  # the request's
        # limits.max_tokens is a ceiling, not a default that raises a smaller budget.
        assert _tokens(_completion(s.url, model="tiny-a")) == 4
        assert _tokens(_completion(s.url, model="tiny-b")) == 6
        routed = _completion(s.url, model="auto", max_tokens=64)
        assert routed.json()["energyrouter"]["decision"]["max_output_tokens"] == {"tiny-a": 4, "tiny-b": 6}
        assert _tokens(routed) == {"tiny-a": 4, "tiny-b": 6}[routed.json()["model"]]


def test_without_a_server_limit_the_budgets_still_bound_a_request(models: dict[str, Any]) -> None:
    router = EnergyAwareRouter(models=models, profile=tiny_profile())
    with _Served(create_app(router, AppSettings())) as s:
        assert _tokens(_completion(s.url, model="tiny-a", max_tokens=64)) == 4
        assert _tokens(_completion(s.url, model="tiny-b", max_tokens=5)) == 5


def test_client_constraints_tighten_the_operators_never_loosen_them(models: dict[str, Any]) -> None:
    strict = EnergyAwareRouter(models=models, profile=tiny_profile(), constraints={"max_runtime_s": 1e-9})
    with _Served(create_app(strict, AppSettings())) as s:
        for asked in ({}, {"max_runtime_s": 1e6}, {"min_accuracy": 0.0}):
            refused = _completion(s.url, routing={"constraints": asked})
            assert refused.status_code == 400, (asked, refused.text)
            assert refused.json()["error"]["code"] == "no_feasible_model"
            assert "max_runtime_s 1e-09" in refused.json()["error"]["message"]
    open_router = EnergyAwareRouter(models=models, profile=tiny_profile())
    with _Served(create_app(open_router, AppSettings())) as s:
        # 3,000 tokens past the tiny models' 1,024-token window: the operator's check stays on.
        long = [{"role": "user", "content": "x" * 3000}]
        refused = _completion(s.url, messages=long, routing={"constraints": {"fit_context_window": False}})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "no_feasible_model", refused.text
        assert "context window 1024" in refused.json()["error"]["message"]
        forced = _completion(s.url, model="tiny-a", messages=long)  # forcing a model keeps the check too
        assert forced.status_code == 400 and forced.json()["error"]["code"] == "context_length_exceeded", forced.text
        assert "context window of 'tiny-a' (1024 tokens)" in forced.json()["error"]["message"]
        tightened = _completion(s.url, routing={"constraints": {"max_runtime_s": 1e-9}})
        assert tightened.status_code == 400 and tightened.json()["error"]["code"] == "no_feasible_model"
        assert _tokens(_completion(s.url, routing={"constraints": {"max_runtime_s": 1e6}})) in set(BUDGETS.values())


def test_constraints_tightened_keep_the_stricter_of_each_limit() -> None:
    operator = Constraints(max_runtime_s=30.0, min_accuracy=0.5, fit_context_window=True)
    assert operator.tightened({}) == operator
    assert operator.tightened({"max_runtime_s": 60, "min_accuracy": 0.1, "fit_context_window": False}) == operator
    assert operator.tightened({"max_runtime_s": 5, "max_energy_j": 2, "min_accuracy": 0.9}) == Constraints(
        max_runtime_s=5, max_energy_j=2, min_accuracy=0.9
    )
    relaxed = Constraints(fit_context_window=False)
    assert relaxed.tightened({"max_runtime_s": 5}) == Constraints(max_runtime_s=5, fit_context_window=False)
    assert relaxed.tightened({"fit_context_window": True}).fit_context_window
    assert relaxed.tightened(Constraints()).fit_context_window  # a whole Constraints counts every field
    with pytest.raises(ValueError, match="Unknown constraint"):
        operator.tightened({"max_x": 1})


class _GatedEncoder(HashingEncoder):
    """A hashing encoder that, for prompts starting with ``hold``, waits for ``gate`` after releasing ``entered``:
    holds a request in planning for as long as the test needs (no real encoder can be held on demand)."""

    def __init__(self, gate: threading.Event, entered: threading.Semaphore) -> None:
        super().__init__(256)
        self.gate = gate
        self.entered = entered

    def encode(self, text: str) -> Any:
        if text.startswith("hold"):
            self.entered.release()
            self.gate.wait(30)
        return super().encode(text)


def test_a_prompt_being_planned_does_not_stall_the_server(models: dict[str, Any]) -> None:
    gate, entered = threading.Event(), threading.Semaphore(0)
    profile = tiny_profile()
    routing = PromptRouting(
        list(models), None, prior_accuracy={n: profile.models[n].accuracy for n in models},
        encoder=_GatedEncoder(gate, entered),
    )  # fmt: skip
    router = EnergyAwareRouter(models=models, profile=profile, prompt_routing=routing)
    try:
        with _Served(create_app(router, AppSettings())) as s, ThreadPoolExecutor(1) as pool:
            held = pool.submit(_completion, s.url, messages=[{"role": "user", "content": "hold this prompt"}])
            assert entered.acquire(timeout=30)  # the request is being planned (its features encoded)
            health = httpx.get(f"{s.url}/health", timeout=10)  # on the event loop: answers meanwhile
            other = _completion(s.url, model="tiny-a")  # and so does another request
            assert health.status_code == 200 and _tokens(other) == 4
            assert not held.done()
            gate.set()
            assert _tokens(held.result(timeout=60)) in set(BUDGETS.values())
    finally:
        gate.set()


@pytest.fixture(scope="module")
def served(models: dict[str, Any]) -> Iterator[_Served]:
    router = EnergyAwareRouter(models=models, profile=tiny_profile())
    settings = AppSettings(limits=LimitsConfig(max_request_bytes=2_000_000))
    with _Served(create_app(router, settings)) as s:
        yield s


def test_a_prompt_too_large_for_every_context_window_is_refused_by_size(served: _Served) -> None:
    # 32 characters per token of the largest window (1,024 tokens): 32,768 characters.
    response = _completion(served.url, messages=[{"role": "user", "content": "word " * 180_000}])
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "prompt_too_large" and error["param"] == "messages"
    assert "has 900000 characters" in error["message"]
    assert "limit of 32768" in error["message"]
    assert "limits.max_prompt_chars" in error["message"]
    in_parts = [{"role": "user", "content": [{"type": "text", "text": "y" * 20_000}] * 2}]
    assert _completion(served.url, messages=in_parts).status_code == 413
    assert _tokens(_completion(served.url, messages=[{"role": "user", "content": "word " * 10}])) > 0


def test_an_explicit_prompt_limit_applies_whatever_the_windows(models: dict[str, Any]) -> None:
    router = EnergyAwareRouter(models=models, profile=tiny_profile(), constraints={"fit_context_window": False})
    with _Served(create_app(router, AppSettings(limits=LimitsConfig(max_prompt_chars=100)))) as s:
        response = _completion(s.url, messages=[{"role": "user", "content": "z" * 101}])
        assert response.status_code == 413 and "limit of 100 (limits.max_prompt_chars)" in response.text
        assert _tokens(_completion(s.url, messages=[{"role": "user", "content": "z" * 100}])) > 0


def test_deeply_nested_json_is_a_400_not_a_500(served: _Served) -> None:
    body = '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = httpx.post(
        f"{served.url}/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json", response.text
