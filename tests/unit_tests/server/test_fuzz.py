"""Property-based fuzzing of the routing server's HTTP API from its own OpenAPI schema (schemathesis).

A real uvicorn on loopback serves the tiny offline models; every documented operation gets schema-valid and
schema-violating requests. None may answer 5xx, nor a status, content type or JSON body its schema does not
describe. Bounded: :data:`EXAMPLES` requests per operation and mode (a fixed seed, no example database), each
within :data:`TIMEOUT_S`, all within :data:`BUDGET_S`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from langchain_energyrouter.server import AppSettings, LimitsConfig, create_app  # noqa: E402
from tests.unit_tests.server.test_server import _Served, tiny_prompt_router  # noqa: E402

EXAMPLES = 30
"""Requests per operation and generation mode (valid, then invalid bodies)."""
TIMEOUT_S = 30.0
"""The longest one request may take."""
BUDGET_S = 240.0
"""The whole fuzz: operations not reached by then fail the test rather than run on."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served() -> Iterator[_Served]:
    router = tiny_prompt_router(max_new_tokens=4)
    settings = AppSettings(name="energyrouter", limits=LimitsConfig(max_request_bytes=20_000, max_tokens=8))
    with _Served(create_app(router, settings, close_router=True)) as s:
        yield s


def test_fuzzing_the_openapi_schema_finds_no_5xx_and_nothing_outside_it(served: _Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    chat = schema["/v1/chat/completions"]["POST"].definition.raw["requestBody"]["content"]["application/json"]
    assert {"messages", "model", "routing", "max_tokens", "stream"} <= set(chat["schema"]["properties"])
    assert {op.label for op in operations} >= {"POST /v1/chat/completions", "POST /v1/feedback"}
    deadline = time.monotonic() + BUDGET_S
    statuses: dict[str, dict[int, int]] = {}
    for operation in operations:
        has_body = "requestBody" in operation.definition.raw  # the GETs take nothing that could be invalid
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_body else (GenerationMode.POSITIVE,):
            seen = statuses.setdefault(f"{operation.label} {mode.value}", {})
            _fuzz(operation, mode, served.url, deadline, seen)
    print({label: dict(sorted(codes.items())) for label, codes in statuses.items()})
    # The schema describes the bodies well enough that valid ones get answers, not only refusals.
    assert statuses["POST /v1/chat/completions positive"].get(200, 0) > 0, statuses
    # A fuzzer cannot forge a run's signed feedback_token: 403 means a valid body reached the token check.
    assert statuses["POST /v1/feedback positive"].get(403, 0) > 0, statuses


def _fuzz(operation: Any, mode: GenerationMode, url: str, deadline: float, seen: dict[int, int]) -> None:
    """Up to :data:`EXAMPLES` requests to ``operation`` in ``mode``, every check on each; counts the statuses."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        assert time.monotonic() < deadline, f"the fuzz ran past its {BUDGET_S} s budget"
        response = case.call_and_validate(base_url=url, checks=CHECKS, timeout=TIMEOUT_S)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    fuzz()


# -- what the fuzz found, each pinned by the request that found it (a 5xx before the fix) ---------------------------
def _chat(served: _Served, messages: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return httpx.post(f"{served.url}/v1/chat/completions", json={"messages": messages, **body}, timeout=60)


def test_a_tool_calls_field_on_a_system_message_is_ignored(served: _Served) -> None:
    # LangChain keeps it as an unchecked extra field of the SystemMessage; counting tokens read it as tool calls.
    messages = [{"role": "developer", "content": "Be brief.", "tool_calls": [{}]}, {"role": "user", "content": "Hi"}]
    response = _chat(served, messages)
    assert response.status_code == 200, response.text


def test_text_parts_reach_a_local_pipeline_as_text(served: _Served) -> None:
    system = {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]}
    response = _chat(served, [system, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], model="tiny-a")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("messages", "why"),
    [
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "ends with a user message"),
        ([{"role": "tool", "content": "4", "tool_call_id": "c1"}, {"role": "user", "content": "Hi"}], "not a tool"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "only text content"),
    ],
)
def test_a_conversation_no_candidate_can_read_is_a_400_that_says_why(
    served: _Served, messages: list[dict[str, Any]], why: str
) -> None:
    response = _chat(served, messages)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "no_feasible_model" and why in error["message"], error


def test_malformed_tool_calls_are_a_400(served: _Served) -> None:
    response = _chat(served, [{"role": "assistant", "content": "x", "tool_calls": {"a": {}}}])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages"
