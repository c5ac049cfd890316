"""Errors reach clients as the error's type and the candidate's name; the error's text stays in the server's log.
And `energyrouter serve` warns when it would bind beyond loopback without a key."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
langchain_openai = pytest.importorskip("langchain_openai")

from langchain_energyrouter import EnergyAwareRouter  # noqa: E402
from langchain_energyrouter.cli import main  # noqa: E402
from langchain_energyrouter.cli.serve import exposure_warning, is_loopback  # noqa: E402
from langchain_energyrouter.server import AppSettings, create_app  # noqa: E402
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile  # noqa: E402
from tests.unit_tests.server.test_server import _Served  # noqa: E402

SECRET = "sk-live-0123456789 at /srv/models/llama/weights"


class _LeakyEngine(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose errors carry a secret: 500 to a plain request; to a stream, one
    token, then an error event (as vLLM and TGI send one when generation fails mid-answer)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        error = json.dumps({"error": {"message": f"engine failed: {SECRET}", "type": "internal"}}).encode()
        if not body.get("stream"):
            self.send_response(500)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        delta = {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}
        token = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"], "choices": [delta]}
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(f"data: {json.dumps(token)}\n\n".encode() + b"data: " + error + b"\n\n")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served() -> Iterator[_Served]:
    engine = ThreadingHTTPServer(("127.0.0.1", 0), _LeakyEngine)
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    leaky = langchain_openai.ChatOpenAI(
        model="tiny-a", base_url=f"http://127.0.0.1:{engine.server_address[1]}/v1", api_key="unused",
        max_retries=0, timeout=10, max_tokens=4,
    )  # fmt: skip
    models = {"tiny-a": leaky, "tiny-b": tiny_chat_models(max_new_tokens=4)["tiny-b"]}
    router = EnergyAwareRouter(models=models, profile=tiny_profile(), weights={"energy": 1.0})
    try:
        with _Served(create_app(router, AppSettings(), close_router=True)) as s:
            yield s
    finally:
        engine.shutdown()
        engine.server_close()


def _post(s: _Served, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{s.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], **body}, timeout=60
    )


def test_a_failure_reaches_the_client_as_its_type_and_the_text_reaches_the_log(
    served: _Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="langchain_energyrouter.server"):
        fell_back = _post(served, model="auto")  # tiny-a (cheapest) fails, tiny-b answers
        forced = _post(served, model="tiny-a")  # nothing to fall back to: 502
    assert fell_back.status_code == 200, fell_back.text
    failures = fell_back.json()["energyrouter"]["failures"]
    assert [f["model"] for f in failures] == ["tiny-a"]
    kind = failures[0]["error_type"]  # the client's error class (langchain-openai's wrapper of a 500)
    assert kind.endswith("Error") and "error" not in failures[0] and failures[0]["runtime_s"] >= 0
    assert forced.status_code == 502
    error = forced.json()["error"]
    assert error["code"] == "upstream_error"
    assert f"tiny-a: {kind}" in error["message"] and "server's log" in error["message"]
    for response in (fell_back, forced):
        assert "sk-live" not in response.text and "/srv/models" not in response.text
    assert caplog.text.count(SECRET) == 2  # each failure's text is logged where the operator reads it


def test_a_stream_failing_after_its_first_token_sends_the_type_not_the_text(
    served: _Served, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"model": "tiny-a", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with caplog.at_level(logging.WARNING, logger="langchain_energyrouter.server"):
        with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, timeout=60) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
    text = "\n".join(lines)
    assert '"content":"Hi"' in text and lines[-1] == "data: [DONE]"
    event = json.loads(lines[-2][len("data: ") :])["error"]
    assert event["code"] == "upstream_error"
    assert re.search(r"tiny-a failed mid-answer \(\w+Error\)", event["message"]), event["message"]
    assert "sk-live" not in text and "/srv/models" not in text
    assert SECRET in caplog.text


def test_binding_beyond_loopback_without_a_key_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.7", "router.internal"))
    assert exposure_warning("127.0.0.1", has_key=False) is None
    assert exposure_warning("0.0.0.0", has_key=True) is None
    assert "0.0.0.0 without an API key" in str(exposure_warning("0.0.0.0", has_key=False))
    # The warning comes before the models load: this config's missing profile then stops the server unbound.
    config = tmp_path / "router.yaml"
    config.write_text("profile: missing.json\ncandidates:\n  - {name: tiny-a, path: nowhere}\n")
    assert main(["serve", "--config", str(config), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "warning: binding 0.0.0.0 without an API key" in err and "api_key_env" in err
    assert main(["serve", "--config", str(config)]) == 1  # the config's 127.0.0.1: no warning
    assert "warning" not in capsys.readouterr().err
