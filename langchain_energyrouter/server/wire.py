"""The OpenAI wire format of the routing server: error bodies, JSON, SSE lines, usage and finish reasons."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage

    from langchain_energyrouter.scheduler import Decision

__all__ = ["ApiError", "dumps", "finish_reason", "openai_tool_calls", "sse", "usage_body"]


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
