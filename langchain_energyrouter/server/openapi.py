"""The server's OpenAPI description: the request bodies its handlers read themselves, and every response.

The handlers read their bodies through :meth:`~langchain_energyrouter.server.context.ServerContext.read_json`
(bounded, with OpenAI-style errors) rather than as FastAPI body parameters, so FastAPI cannot see them: each
route passes its entry of :func:`routes`, which states its request body (the same pydantic models that
validate it, :class:`~langchain_energyrouter.server.wire.ChatRequest` and
:class:`~langchain_energyrouter.server.wire.FeedbackRequest`), its answer and each error status it can send.
A client generator, or a schema-driven fuzzer, then reaches what the server really accepts.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from langchain_energyrouter.server.wire import ChatRequest, FeedbackRequest

__all__ = ["request_body", "routes"]

_TEXT: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
            },
        },
    ]
}
_TOOL_CALL: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
        },
    },
}
MESSAGE_SCHEMA: dict[str, Any] = {
    "description": "An OpenAI chat message. A local pipeline candidate answers only a conversation that ends with "
    "a user message (400 when no candidate can).",
    "oneOf": [
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["system", "developer", "user"]},
                "content": _TEXT,
                "name": {"type": "string"},
            },
        },
        {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {"const": "assistant"},
                "content": {"anyOf": [*_TEXT["anyOf"], {"type": "null"}]},
                "tool_calls": {"type": "array", "items": _TOOL_CALL},
            },
        },
        {
            "type": "object",
            "required": ["role", "content", "tool_call_id"],
            "properties": {"role": {"const": "tool"}, "content": _TEXT, "tool_call_id": {"type": "string"}},
        },
    ],
}
"""``messages[i]`` as the server reads it (LangChain's ``convert_to_messages`` of an OpenAI message)."""

SSE_EVENT: dict[str, Any] = {
    "description": "One Server-Sent Event: ``data`` is a ``chat.completion.chunk`` as JSON (an error object when the "
    "stream fails after its first chunk), and ``[DONE]`` last.",
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}},
}

_WEIGHT = {"type": "number", "minimum": 0}
_LIMIT = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}
ROUTING_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "weights": {
                    "description": "How much accuracy, energy and time matter (at least one above 0).",
                    "anyOf": [
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"accuracy": _WEIGHT, "energy": _WEIGHT, "time": _WEIGHT},
                        },
                        {"type": "array", "items": _WEIGHT, "minItems": 3, "maxItems": 3},
                        {"type": "null"},
                    ],
                },
                "constraints": {
                    "anyOf": [
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "max_runtime_s": _LIMIT,
                                "max_energy_j": _LIMIT,
                                "min_accuracy": _LIMIT,
                                "fit_context_window": {"type": "boolean"},
                            },
                        },
                        {"type": "null"},
                    ]
                },
                "task_type": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        },
        {"type": "null"},
    ],
}
"""The body's ``routing`` object (the OpenAI client's ``extra_body``), as the router reads it."""


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every refusal and error: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape)."""

    error: ErrorDetail


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    tool_calls: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A non-streamed answer (``stream`` false); ``energyrouter`` holds the decision, energy and failures."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    """The candidate that served."""
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None
    energyrouter: dict[str, Any]


class FeedbackAnswer(BaseModel):
    """``POST /v1/feedback``'s answer."""

    object: Literal["feedback"]
    run_id: str
    learned: bool
    outcome: Literal["learned", "unknown_run"]
    """``unknown_run``: this server does not remember the run (another replica served it, or it was forgotten)."""


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``: ``auto``, the server's name and every candidate."""

    object: Literal["list"]
    data: list[ModelCard]


class CandidateSlots(BaseModel):
    in_flight: int
    max_in_flight: int


class Health(BaseModel):
    """``GET /health``: each candidate's requests in flight and its limit."""

    status: Literal["ok"]
    candidates: dict[str, CandidateSlots]


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its ``#/$defs/...`` references replaced by the definitions (no recursive models here)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline(value, defs) for value in schema]
    return schema


def request_body(body: type[BaseModel], **properties: Any) -> dict[str, Any]:
    """An operation's ``requestBody``: ``body``'s JSON schema (self-contained), ``properties`` overriding its
    fields' schemas where validation is looser than what the server goes on to read."""
    schema = body.model_json_schema()
    schema = _inline(schema, schema.get("$defs", {}))
    schema["properties"].update(properties)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    why = {
        400: "Invalid JSON, parameters or routing options; or no candidate can serve the request.",
        401: "Missing or wrong bearer API key (when the server has one).",
        403: "The feedback_token is not the one this run's answer carried.",
        404: "Unknown model.",
        409: "The run was scored already: each run learns from its first score only.",
        413: "Request body over limits.max_request_bytes.",
        429: "Every eligible candidate is at its limit of requests in flight (see Retry-After).",
        502: "Every candidate tried failed.",
        503: "The score could not be stored (the state store failed); send it again.",
    }
    return {status: {"model": ErrorBody, "description": why[status]} for status in statuses}


def routes(models: list[str]) -> dict[str, dict[str, Any]]:
    """Keywords of each route's decorator (``@app.post(path, **routes(names)["chat"])``); ``models``: the names a
    request's ``model`` may take (any other is refused with 404)."""
    model = {"type": "string", "enum": list(dict.fromkeys(models)), "default": models[0]}
    messages = {"type": "array", "minItems": 1, "items": MESSAGE_SCHEMA}
    return {
        "chat": {
            "openapi_extra": request_body(ChatRequest, model=model, messages=messages, routing=ROUTING_SCHEMA),
            "responses": {
                200: {
                    "model": ChatCompletion,
                    "description": "The answer: JSON, or with ``stream`` true Server-Sent Events of chunks.",
                    "content": {"text/event-stream": {"schema": SSE_EVENT}},
                },
                **_errors(400, 401, 404, 413, 429, 502),
            },
        },
        "feedback": {
            "openapi_extra": request_body(FeedbackRequest),
            "responses": {200: {"model": FeedbackAnswer}, **_errors(400, 401, 403, 409, 413, 503)},
        },
        "models": {"responses": {200: {"model": ModelList}, **_errors(401)}},
        "health": {"responses": {200: {"model": Health}}},
        "metrics": {
            "response_class": PlainTextResponse,
            "responses": {200: {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
        },
    }
