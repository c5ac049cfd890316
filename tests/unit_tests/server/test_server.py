"""The routing server, end to end: a real uvicorn on loopback, the official OpenAI client and httpx.

The candidates are the tiny offline transformers models (``langchain_energyrouter.testing``). The bounds
tests use a gated ``BaseChatModel`` instead, whose answer waits on an event: no installable model can be
held mid-answer on demand, and "held" is what a per-candidate limit of 1 needs.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
openai = pytest.importorskip("openai")

import uvicorn  # noqa: E402

from langchain_energyrouter import EnergyAwareRouter  # noqa: E402
from langchain_energyrouter.cli import main  # noqa: E402
from langchain_energyrouter.prompt.encoders import HashingEncoder  # noqa: E402
from langchain_energyrouter.prompt.routing import PromptRouting  # noqa: E402
from langchain_energyrouter.server import AppSettings, ConfigError, LimitsConfig, create_app, load_config  # noqa: E402
from langchain_energyrouter.state import MemoryStateStore  # noqa: E402
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile  # noqa: E402
from tests.unit_tests.doubles import GatedChatModel  # noqa: E402

KEY = "test-key-123"


class _Served:
    """A uvicorn server in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            self.thread.join(0.02)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def tiny_prompt_router(max_new_tokens: int) -> EnergyAwareRouter:
    """The tiny models behind a router with per-prompt routing (hashing features) over an in-memory store."""
    models = tiny_chat_models(max_new_tokens=max_new_tokens)
    profile = tiny_profile()
    store = MemoryStateStore()
    routing = PromptRouting(
        list(models), None, store, prior_accuracy={n: profile.models[n].accuracy for n in models},
        encoder=HashingEncoder(256),
    )  # fmt: skip
    return EnergyAwareRouter(models=models, profile=profile, state_store=store, prompt_routing=routing)


@pytest.fixture(scope="module")
def served() -> Iterator[_Served]:
    router = tiny_prompt_router(max_new_tokens=6)
    settings = AppSettings(name="energyrouter", api_key=KEY, limits=LimitsConfig(max_request_bytes=20_000))
    with _Served(create_app(router, settings, close_router=True)) as s:
        yield s


def _client(s: _Served) -> Any:
    return openai.OpenAI(base_url=f"{s.url}/v1", api_key=KEY, max_retries=0)


def test_openai_client_non_streaming_routes_and_reports_energy(served: _Served) -> None:
    raw = _client(served).chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}],
        extra_body={"routing": {"weights": {"energy": 1.0}}},
    )
    completion = raw.parse()
    ext = completion.model_extra["energyrouter"]
    assert completion.model == "tiny-a" == ext["served_by"]  # energy-only weights: the cheap one
    assert raw.headers["x-energyrouter-model"] == "tiny-a"
    assert float(raw.headers["x-energyrouter-energy-j"]) == pytest.approx(ext["energy"]["energy_j"], rel=1e-5)
    assert ext["energy"]["energy_j"] > 0 and ext["energy"]["predicted_energy_j"] > 0
    assert ext["decision"]["weights"]["energy"] == 1.0 and ext["routed"] is True
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason in {"stop", "length"}

    accurate = _client(served).chat.completions.create(
        model="energyrouter",
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        extra_body={"routing": {"weights": {"accuracy": 1.0}}},
    )
    assert accurate.model == "tiny-b"


def test_openai_client_streams_sse_with_usage_and_a_forced_model(served: _Served) -> None:
    stream = _client(served).chat.completions.create(
        model="tiny-b",
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"routing": {"weights": {"energy": 1.0}}},  # forcing wins over weights
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    ext = finals[0].model_extra["energyrouter"]
    assert ext["served_by"] == "tiny-b" and ext["routed"] is False
    assert ext["energy"]["energy_j"] > 0
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert text  # the tiny model always emits its 6 tokens

    with httpx.stream(
        "POST", f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-energyrouter-model"] in {"tiny-a", "tiny-b"}
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


def _post_feedback(s: _Served, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{s.url}/v1/feedback", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def _feedback_count(s: _Served, outcome: str) -> float:
    metric = f'energyrouter_feedback_total{{outcome="{outcome}"}} '
    lines = [line for line in httpx.get(f"{s.url}/metrics").text.splitlines() if line.startswith(metric)]
    return float(lines[0].split()[1]) if lines else 0.0


def test_feedback_reaches_the_router_once_per_run_with_its_token(served: _Served) -> None:
    raw = _client(served).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Hi"}]
    )
    ext = raw.parse().model_extra["energyrouter"]
    run_id, token = ext["run_id"], ext["feedback_token"]
    assert raw.headers["x-energyrouter-run-id"] == run_id and raw.headers["x-energyrouter-feedback-token"] == token
    learned_before = _feedback_count(served, "learned")
    ok = _post_feedback(served, {"run_id": run_id, "feedback_token": token, "score": 1.0, "key": "correctness"})
    assert ok.status_code == 200 and ok.json()["learned"] is True and ok.json()["outcome"] == "learned", ok.text
    again = _post_feedback(served, {"run_id": run_id, "feedback_token": token, "score": 0.0})
    assert again.status_code == 409, again.text
    assert (
        again.json()["error"]["code"] == "feedback_already_given" and "first score" in again.json()["error"]["message"]
    )
    assert _feedback_count(served, "learned") == learned_before + 1
    assert _feedback_count(served, "already_scored") >= 1

    other = _client(served).chat.completions.create(model="auto", messages=[{"role": "user", "content": "Yo"}])
    other_token = other.model_extra["energyrouter"]["feedback_token"]
    stolen = _post_feedback(served, {"run_id": run_id, "feedback_token": other_token, "score": 0.0})
    assert stolen.status_code == 403 and stolen.json()["error"]["code"] == "invalid_feedback_token", stolen.text
    missing = _post_feedback(served, {"run_id": run_id, "score": 0.0})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "feedback_token"
    unknown = {"run_id": "never-seen", "feedback_token": token, "score": 0.0}
    assert _post_feedback(served, unknown).status_code == 403  # a token signs one run id only
    bad = _post_feedback(served, {"run_id": run_id, "feedback_token": token, "score": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "score"


def test_feedback_strings_are_bounded_and_the_error_names_the_limit(served: _Served) -> None:
    body = {"run_id": "r", "feedback_token": "t", "score": 1.0, "key": "k" * 257}
    response = _post_feedback(served, body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "key"
    assert "at most 256 characters" in response.json()["error"]["message"]
    response = _post_feedback(served, {**body, "key": None, "run_id": "r" * 129})
    assert response.status_code == 400 and "at most 128 characters" in response.json()["error"]["message"]
    assert _post_feedback(served, {**body, "key": None, "run_id": "r" * 128}).status_code == 403  # in bounds


def test_replayed_feedback_over_http_moves_no_other_prompt(served: _Served) -> None:
    """The issue's figure over HTTP: many score-0 posts on one run moved a different prompt's estimate."""

    def tiny_b_accuracy(prompt: str) -> float:
        ext = (
            _client(served)
            .chat.completions.create(model="auto", messages=[{"role": "user", "content": prompt}])
            .model_extra["energyrouter"]
        )
        candidate = ext["decision"]["candidates"]["tiny-b"]
        assert candidate["sources"]["accuracy"] == "prompt"
        return float(candidate["accuracy"])

    ext = (
        _client(served)
        .chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "Say hello to Anna."}])
        .model_extra["energyrouter"]
    )
    body = {"run_id": ext["run_id"], "feedback_token": ext["feedback_token"], "score": 0.0}
    assert _post_feedback(served, body).status_code == 200
    once = tiny_b_accuracy("What is 12 plus 30?")
    statuses = [_post_feedback(served, body).status_code for _ in range(50)]
    assert set(statuses) == {409}
    assert tiny_b_accuracy("What is 12 plus 30?") == pytest.approx(once, abs=1e-12)


def test_streamed_answers_carry_their_feedback_token(served: _Served) -> None:
    with httpx.stream(
        "POST", f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]}, timeout=30,
    ) as response:  # fmt: skip
        lines = [line for line in response.iter_lines() if line]
    final = next(json.loads(line[6:]) for line in lines if '"finish_reason":"' in line)["energyrouter"]
    assert final["feedback_token"] == response.headers["x-energyrouter-feedback-token"]
    body = {"run_id": final["run_id"], "feedback_token": final["feedback_token"], "score": 1.0}
    assert _post_feedback(served, body).json()["learned"] is True


def test_the_openapi_schema_describes_the_feedback_body(served: _Served) -> None:
    post = httpx.get(f"{served.url}/openapi.json").json()["paths"]["/v1/feedback"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert sorted(schema["required"]) == ["feedback_token", "run_id", "score"]
    assert schema["properties"]["key"]["anyOf"][0]["maxLength"] == 256


def test_a_shared_feedback_secret_signs_alike_and_a_short_one_is_refused() -> None:
    from langchain_energyrouter.server.feedback import FeedbackTokens

    secret = "s" * 32
    assert FeedbackTokens(secret).sign("run-1") == FeedbackTokens(secret).sign("run-1")  # replicas agree
    assert FeedbackTokens(secret).verify("run-1", FeedbackTokens(secret).sign("run-1"))
    assert not FeedbackTokens(secret).verify("run-2", FeedbackTokens(secret).sign("run-1"))
    assert FeedbackTokens().sign("run-1") != FeedbackTokens().sign("run-1")  # unset: a secret per process
    with pytest.raises(ValueError, match="has 9 characters; use at least 32"):
        FeedbackTokens("too-short")


def test_models_health_and_metrics(served: _Served) -> None:
    _client(served).chat.completions.create(model="auto", messages=[{"role": "user", "content": "Name a colour."}])
    models = [m.id for m in _client(served).models.list()]
    assert models == ["auto", "energyrouter", "tiny-a", "tiny-b"]
    health = httpx.get(f"{served.url}/health").json()
    assert health["candidates"]["tiny-a"] == {"in_flight": 0, "max_in_flight": 8}
    text = httpx.get(f"{served.url}/metrics").text
    energy = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("energyrouter_energy_joules_total{")
    }
    assert energy and all(value > 0 for value in energy.values()), energy
    assert all('method="' in series for series in energy)
    assert "energyrouter_decision_seconds_count" in text
    assert 'energyrouter_in_flight{model="tiny-a"} 0.0' in text
    assert "energyrouter_prediction_error_ratio_count{model=" in text
    assert "energyrouter_feedback_total" in text


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "param"),
    [
        (b"{not json", {}, 400, "invalid_json", None),
        (b"[1, 2]", {}, 400, "invalid_value", None),
        (json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}), {}, 404, "model_not_found",
         "model"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"weights": {"energy": -1}}}), {},
         400, "invalid_value", "routing.weights"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"weights": {"speed": 1}}}), {},
         400, "invalid_value", "routing.weights"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"constraints": {"max_x": 1}}}), {},
         400, "invalid_value", "routing.constraints"),
        (json.dumps({"messages": []}), {}, 400, "invalid_value", "messages"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
         {}, 400, "unsupported_parameter", "response_format"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "logprobs": True}), {}, 400,
         "unsupported_parameter", "logprobs"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}), {}, 400,
         "unsupported_parameter", "top_logprobs"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}), {}, 400, "invalid_value", "messages"),
        (json.dumps({"messages": [{"role": "user", "content": "x" * 30_000}]}), {}, 413, "request_too_large", None),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}), {"Authorization": ""}, 401,
         "invalid_api_key", None),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}), {"Authorization": "Bearer wrong"}, 401,
         "invalid_api_key", None),
    ],
)  # fmt: skip
def test_bad_input_gets_an_openai_style_4xx(
    served: _Served, body: Any, headers: dict[str, str], status: int, code: str, param: str | None
) -> None:
    sent = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **headers}
    if not sent["Authorization"]:
        del sent["Authorization"]
    response = httpx.post(f"{served.url}/v1/chat/completions", content=body, headers=sent)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["param"] == param
    assert "Traceback" not in response.text


def test_unknown_route_is_an_openai_style_404(served: _Served) -> None:
    response = httpx.get(f"{served.url}/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_per_candidate_limit_spills_over_then_answers_429() -> None:
    gate, entered = threading.Event(), threading.Semaphore(0)
    models = {n: GatedChatModel(gate=gate, entered=entered, model_id=n) for n in ("tiny-a", "tiny-b")}
    router = EnergyAwareRouter(models=models, profile=tiny_profile(), weights={"energy": 1.0})
    settings = AppSettings(limits=LimitsConfig(max_in_flight_per_candidate=1, retry_after_s=3))
    body = {"model": "auto", "messages": [{"role": "user", "content": "hold"}]}
    with _Served(create_app(router, settings)) as s, ThreadPoolExecutor(2) as pool:
        url = f"{s.url}/v1/chat/completions"
        first = pool.submit(httpx.post, url, json=body, timeout=30)
        assert entered.acquire(timeout=30)
        second = pool.submit(httpx.post, url, json=body, timeout=30)  # tiny-a is full: tiny-b takes it
        assert entered.acquire(timeout=30)
        assert httpx.get(f"{s.url}/health").json()["candidates"]["tiny-b"]["in_flight"] == 1
        refused = httpx.post(url, json=body)
        forced = httpx.post(url, json={**body, "model": "tiny-b"})
        gate.set()
        assert [first.result().json()["model"], second.result().json()["model"]] == ["tiny-a", "tiny-b"]
        metrics = httpx.get(f"{s.url}/metrics").text
    for response in (refused, forced):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert response.json()["error"]["code"] == "candidates_busy"
    assert 'energyrouter_rejected_total{reason="busy"} 2.0' in metrics


def test_a_stream_whose_client_leaves_before_the_first_token_frees_its_slot() -> None:
    import time

    gate, entered = threading.Event(), threading.Semaphore(0)
    models = {n: GatedChatModel(gate=gate, entered=entered, model_id=n) for n in ("tiny-a", "tiny-b")}
    router = EnergyAwareRouter(models=models, profile=tiny_profile(), weights={"energy": 1.0})
    settings = AppSettings(limits=LimitsConfig(max_in_flight_per_candidate=1))
    body = json.dumps({"model": "tiny-a", "stream": True, "messages": [{"role": "user", "content": "hold"}]})
    try:
        with _Served(create_app(router, settings)) as s:
            client = socket.create_connection(("127.0.0.1", s.port))
            head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            client.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode())
            assert entered.acquire(timeout=30)  # the candidate holds the request: no token yet
            assert httpx.get(f"{s.url}/health").json()["candidates"]["tiny-a"]["in_flight"] == 1
            client.close()  # the client leaves before the first token
            deadline = time.monotonic() + 10
            while httpx.get(f"{s.url}/health").json()["candidates"]["tiny-a"]["in_flight"] and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            assert httpx.get(f"{s.url}/health").json()["candidates"]["tiny-a"]["in_flight"] == 0
            gate.set()
    finally:
        gate.set()  # the candidate's thread, still waiting, may end


def test_config_file_and_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("candidates: []\nprofile: x.json\n")
    with pytest.raises(ConfigError, match="candidates"):
        load_config(tmp_path / "bad.yaml")
    example = Path(__file__).parents[3] / "examples" / "router.yaml"
    config, base = load_config(example)
    assert [c.name for c in config.candidates] == ["smollm2-135m", "gemma3-270m"]
    assert config.host == "127.0.0.1" and not config.log_prompts
    from langchain_energyrouter.profile import reference_profile_names
    from langchain_energyrouter.server.config import _predictor

    # Shipped names, found in a clone and in an installed package alike.
    assert config.profile in reference_profile_names()
    assert Path(_predictor(base, str(config.prompt_routing))).is_file()
    remote = tmp_path / "remote.yaml"
    remote.write_text("profile: cpu-reference\ncandidates:\n  - {name: vllm, base_url: 'http://127.0.0.1:9/v1'}\n")
    try:
        import langchain_openai  # noqa: F401
    except ImportError:
        assert main(["serve", "--config", str(remote)]) == 1
        assert "langchain-openai" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "Cannot read server config" in capsys.readouterr().err


def test_a_stream_names_the_candidate_that_serves_and_fails_with_a_status_before_any_token() -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_energyrouter.testing.engine import free_port

    # tiny-a is a real OpenAI-compatible client of a port nobody listens on: its endpoint is down.
    down = langchain_openai.ChatOpenAI(
        model="tiny-a",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key="unused",
        max_retries=0,
        timeout=5,
        max_tokens=4,
    )
    models = {"tiny-a": down, "tiny-b": tiny_chat_models(max_new_tokens=4)["tiny-b"]}
    router = EnergyAwareRouter(models=models, profile=tiny_profile(), weights={"energy": 1.0})
    with _Served(create_app(router, AppSettings(), close_router=True)) as s:
        body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", f"{s.url}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["x-energyrouter-model"] == "tiny-b"  # the fallback that served, not tiny-a
            lines = [line for line in response.iter_lines() if line]
        final = next(json.loads(line[6:]) for line in lines if '"finish_reason":"' in line)
        assert final["energyrouter"]["decision"]["model"] == "tiny-a"  # planned first: the cheapest
        assert final["energyrouter"]["served_by"] == "tiny-b"
        assert final["energyrouter"]["run_id"] == response.headers["x-energyrouter-run-id"]  # for /v1/feedback
        assert [f["model"] for f in final["energyrouter"]["failures"]] == ["tiny-a"]

        forced = httpx.post(f"{s.url}/v1/chat/completions", json={**body, "model": "tiny-a"}, timeout=30)
        assert forced.status_code == 502  # no token was sent: an HTTP error, not a 200 stream
        assert forced.headers["content-type"].startswith("application/json")
        error = forced.json()["error"]
        assert error["code"] == "upstream_error" and "tiny-a" in error["message"]
        metrics = httpx.get(f"{s.url}/metrics").text
        assert 'energyrouter_fallbacks_total{from_model="tiny-a",to_model="tiny-b"} 1.0' in metrics


def test_json_bodies_write_non_finite_numbers_as_null() -> None:
    from types import MappingProxyType

    from langchain_energyrouter.server.wire import dumps as _dumps

    assert _dumps({"a": 1.5, "b": [2, 3]}) == '{"a":1.5,"b":[2,3]}'
    assert json.loads(_dumps({"x": float("nan"), "y": (float("inf"), 1.0)})) == {"x": None, "y": [None, 1.0]}
    assert json.loads(_dumps({"m": MappingProxyType({"k": 1})})) == {"m": {"k": 1}}  # not a dict: still JSON


def test_unsupported_parameters_at_their_defaults_pass(served: _Served) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "logprobs": False,
            "response_format": {"type": "text"}, "logit_bias": {}}  # fmt: skip
    response = httpx.post(
        f"{served.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"
