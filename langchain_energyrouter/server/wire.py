"""The OpenAI wire format of the routing server: request and error bodies, JSON, SSE lines, usage and finish
reasons."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage

    from langchain_energyrouter.decide.scheduler import Decision

__all__ = [
    "AUTO",
    "ApiError",
    "ChatRequest",
    "FeedbackRequest",
    "RoutingOptions",
    "dumps",
    "finish_reason",
    "joined_text_parts",
    "openai_tool_calls",
    "sse",
    "usage_body",
    "validation_error",
]

AUTO = "auto"
"""The model name that asks the server to route."""


class ApiError(Exception):
    """An error answered as an OpenAI-style JSON body with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def dumps(payload: Any) -> str:
    """Compact JSON of ``payload``; non-finite floats (JSON has none) become null, at a cost only when present."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):  # inf/nan, or a value json does not know (written as its str)
        return json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False, default=str)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def openai_tool_calls(message: AIMessage) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call.get("args") or {})},
        }
        for call in message.tool_calls
    ]


def usage_body(usage: Mapping[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(has_tool_calls: bool, usage: Mapping[str, Any], decision: Decision, name: str) -> str:
    if has_tool_calls:
        return "tool_calls"
    cap = decision.max_output_tokens
    limit = cap.get(name) if isinstance(cap, Mapping) else cap
    return "length" if limit is not None and int(usage.get("completion_tokens") or 0) >= limit else "stop"


def sse(payload: Mapping[str, Any]) -> bytes:
    return f"data: {dumps(payload)}\n\n".encode()


# -- request bodies --------------------------------------------------------------
class RoutingOptions(BaseModel):
    """The body's ``routing`` object (the OpenAI client's ``extra_body={"routing": {...}}``)."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, Any] | list[float] | None = None
    constraints: dict[str, Any] | None = None
    task_type: str | None = None


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat completion request this server reads (others: ignored or refused)."""

    model_config = ConfigDict(extra="allow")

    model: str = AUTO
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    routing: RoutingOptions | None = None


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: every string is bounded, so a body cannot make the server keep much."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    run_id: str = Field(min_length=1, max_length=128)
    """The answer's ``energyrouter.run_id`` (the ``x-energyrouter-run-id`` header)."""
    feedback_token: str = Field(min_length=1, max_length=128)
    """The answer's ``energyrouter.feedback_token`` (the ``x-energyrouter-feedback-token`` header)."""
    score: float = Field(ge=0.0, le=1.0)
    """0 (wrong) to 1 (right)."""
    key: str | None = Field(default=None, max_length=256)
    """The feedback's name (e.g. ``"correctness"``), kept in the feedback log."""


def joined_text_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each content that is a list of text parts only (OpenAI's ``[{"type": "text", "text":
    ...}]``) joined into one string, as the model reads it: a local pipeline's chat template takes text."""
    joined = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
        ):
            message = {**message, "content": "".join(p["text"] for p in content)}
        joined.append(message)
    return joined


def validation_error(err: ValidationError, prefix: str = "") -> ApiError:
    first = err.errors()[0]
    param = prefix + ".".join(str(p) for p in first["loc"])
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors())
    return ApiError(400, f"Invalid request: {problems}.", param=param or None, code="invalid_value")
