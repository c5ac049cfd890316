"""The OpenAI-compatible routing server: :func:`create_app` builds the FastAPI app over one router.

Endpoints::

    POST /v1/chat/completions   OpenAI chat completions, streaming (SSE) or not; model "auto" (or the
                                server's name) routes, a candidate's name forces it; per-request
                                "routing": {"weights", "constraints", "task_type"} (the OpenAI client's
                                extra_body); the decision and energy come back in "energyrouter" and in
                                the x-energyrouter-model / x-energyrouter-energy-j headers
    POST /v1/feedback           {"run_id", "score", "key"?} -> router.feedback
    GET  /v1/models             "auto", the server's name, and every candidate
    GET  /health                candidates with their requests in flight and limits (no key needed)
    GET  /metrics               Prometheus text format (no key needed)

Bounds: each candidate serves at most its ``max_in_flight`` requests; a routed request is decided once among the
candidates with a free slot (the full ones are excluded, with the reason, in the decision), the router falls
back down that ranking itself under the same limits, and the request is refused with 429 and ``Retry-After``
only when every eligible one is full (a forced one: when it is full). Bodies over ``max_request_bytes`` get
413. Every refusal and every bad input is a 4xx with an OpenAI-style body ``{"error": {"message", "type",
"param", "code"}}``; an unexpected failure is a 500 with the same shape and no traceback (the traceback goes
to the server's log). The router learns from each answer off the request path (``learn_in_background``).

Prompts and answers are logged only with ``log_prompts``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.messages import BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from langchain_energyrouter.errors import (
    CandidatesBusyError,
    NoFeasibleModelError,
    RoutingError,
    UnknownModelError,
    WeightsError,
)
from langchain_energyrouter.scoring import Constraints, Weights
from langchain_energyrouter.server.config import AppSettings
from langchain_energyrouter.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from langchain_energyrouter.server.streaming import first_chunk, prepend, serving, stream_completion
from langchain_energyrouter.server.wire import ApiError, dumps, finish_reason, openai_tool_calls, usage_body

if TYPE_CHECKING:
    from langchain_energyrouter.routed import RoutedCall
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.scheduler import Decision

__all__ = ["KEEP_ALIVE_S", "ApiError", "create_app"]

logger = logging.getLogger("langchain_energyrouter.server")

AUTO = "auto"
"""The model name that asks the server to route."""

KEEP_ALIVE_S = 75
"""Seconds uvicorn keeps an idle connection open. Longer than a client pool's idle expiry (httpx 5 s, openai
5 s, load balancers 60 s): with equal timeouts a client reuses a connection just as the server closes it, and
the request dies with a connection reset (about one in 2,000 under load)."""


# -- request schema --------------------------------------------------------------
class RoutingOptions(BaseModel):
    """The body's ``routing`` object (the OpenAI client's ``extra_body={"routing": {...}}``)."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, Any] | list[float] | None = None
    constraints: dict[str, Any] | None = None
    task_type: str | None = None


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat completion request this server reads (others are accepted and ignored)."""

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
    """``POST /v1/feedback``."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1)
    score: float = Field(ge=0.0, le=1.0)
    key: str | None = None


def _validation_error(err: ValidationError, prefix: str = "") -> ApiError:
    first = err.errors()[0]
    param = prefix + ".".join(str(p) for p in first["loc"])
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors())
    return ApiError(400, f"Invalid request: {problems}.", param=param or None, code="invalid_value")


# -- per-candidate slots ---------------------------------------------------------
class Slots:
    """Requests in flight per candidate, bounded (only touched from the event loop: no lock needed).

    It is the router's :class:`~langchain_energyrouter.routed.Admission`: each attempt takes a slot and
    gives it back when it ends.
    """

    def __init__(self, limits: Mapping[str, int], metrics: ServerMetrics) -> None:
        self.limits = dict(limits)
        self.counts = dict.fromkeys(limits, 0)
        self._metrics = metrics

    def try_acquire(self, name: str) -> bool:
        if self.counts[name] >= self.limits[name]:
            return False
        self.counts[name] += 1
        self._metrics.in_flight.labels(model=name).set(self.counts[name])
        return True

    def release(self, name: str) -> None:
        self.counts[name] -= 1
        self._metrics.in_flight.labels(model=name).set(self.counts[name])

    def full(self) -> dict[str, str]:
        """Candidates without a free slot, and why (the reason the decision shows)."""
        return {
            name: f"at its limit of {limit} requests in flight"
            for name, limit in self.limits.items()
            if self.counts[name] >= limit
        }


# -- the app ---------------------------------------------------------------------
class _Server:
    """The handlers' shared state: router, settings, slots, metrics."""

    def __init__(self, router: EnergyAwareRouter, settings: AppSettings) -> None:
        self.router = router
        self.settings = settings
        self.candidates = list(router.candidates)
        unknown = sorted(set(settings.max_in_flight) - set(self.candidates))
        if unknown:
            raise ValueError(f"max_in_flight names {unknown}, which are not candidates ({self.candidates}).")
        default = settings.limits.max_in_flight_per_candidate
        limits = {name: settings.max_in_flight.get(name, default) for name in self.candidates}
        self.metrics = ServerMetrics(self.candidates)
        self.slots = Slots(limits, self.metrics)

    # -- request plumbing -------------------------------------------------------
    def authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            self.metrics.rejected.labels(reason="unauthorized").inc()
            raise ApiError(
                401,
                "Missing bearer API key: send the header 'Authorization: Bearer <key>' (the OpenAI client's api_key).",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(token.strip().encode(), key.encode()):
            self.metrics.rejected.labels(reason="unauthorized").inc()
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        limit = self.settings.limits.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise self._too_large(int(declared))
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise self._too_large(len(body))
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ApiError(
                400, f"The request body is not valid JSON ({err}). Send a JSON object.", code="invalid_json"
            ) from None

    def _too_large(self, size: int) -> ApiError:
        self.metrics.rejected.labels(reason="too_large").inc()
        limit = self.settings.limits.max_request_bytes
        return ApiError(
            413,
            f"Request body of {size} bytes exceeds this server's limit of {limit} bytes "
            "(limits.max_request_bytes); shorten the prompt.",
            code="request_too_large",
        )

    def busy(self, names: list[str]) -> ApiError:
        self.metrics.rejected.labels(reason="busy").inc()
        detail = ", ".join(f"{n} {self.slots.counts[n]}/{self.slots.limits[n]}" for n in names)
        retry = self.settings.limits.retry_after_s
        return ApiError(
            429,
            f"Every eligible candidate is at its limit of requests in flight ({detail}); retry in {retry} s.",
            type="rate_limit_error",
            code="candidates_busy",
            headers={"Retry-After": str(retry)},
        )

    # -- chat completions -------------------------------------------------------
    def parse_chat(self, data: Any) -> tuple[ChatRequest, list[BaseMessage], dict[str, Any], str | None]:
        """The request, its messages, the router keywords and the forced candidate (None = route)."""
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.", code="invalid_value")
        try:
            req = ChatRequest.model_validate(data)
        except ValidationError as err:
            raise _validation_error(err) from None
        try:
            messages = convert_to_messages(req.messages)
        except (ValueError, TypeError, KeyError, NotImplementedError) as err:
            raise ApiError(400, f"Cannot read messages: {err}", param="messages", code="invalid_value") from None
        options: dict[str, Any] = {}
        routing = req.routing or RoutingOptions()
        if routing.weights is not None:
            try:
                options["weights"] = Weights.coerce(routing.weights)  # type: ignore[arg-type]
            except (WeightsError, TypeError, ValueError) as err:
                raise ApiError(
                    400, f"Invalid routing weights: {err}", param="routing.weights", code="invalid_value"
                ) from None
        if routing.constraints is not None:
            try:
                options["constraints"] = Constraints.coerce(routing.constraints, Constraints())
            except (TypeError, ValueError) as err:
                raise ApiError(
                    400, f"Invalid routing constraints: {err}", param="routing.constraints", code="invalid_value"
                ) from None
        if routing.task_type is not None:
            options["task_type"] = routing.task_type
        cap = req.max_completion_tokens or req.max_tokens
        ceiling = self.settings.limits.max_tokens
        if ceiling is not None:
            cap = min(cap or ceiling, ceiling)
        if cap is not None:
            options["max_tokens"] = cap
        if req.tools:
            options["tools"] = req.tools
            if req.tool_choice is not None:
                options["tool_choice"] = req.tool_choice
        if req.model in (AUTO, self.settings.name):
            forced = None
        elif req.model in self.slots.limits:
            forced = req.model
        else:
            raise ApiError(
                404,
                f"The model {req.model!r} does not exist here; use {AUTO!r} or {self.settings.name!r} to route, "
                f"or one of {self.candidates} to force a candidate.",
                param="model",
                code="model_not_found",
            )
        return req, messages, options, forced

    def plan(
        self, messages: list[BaseMessage], options: dict[str, Any], forced: str | None, stop: list[str] | None
    ) -> RoutedCall:
        """Decide once, among the candidates with a free slot (a forced one must have one); 429 when none has."""
        full = self.slots.full()
        if forced is not None and forced in full:
            raise self.busy([forced])
        if forced is None and len(full) == len(self.candidates):
            raise self.busy(self.candidates)
        exclude = full if forced is None else {}
        start = time.perf_counter()
        try:
            call = self.router.plan(
                messages, stop=stop, model=forced, exclude=exclude or None, admission=self.slots, **options
            )
        except NoFeasibleModelError as err:
            if exclude.keys() & err.reasons.keys():  # the feasible ones are full: a later retry may succeed
                raise self.busy(self.candidates) from None
            raise ApiError(
                400, f"No candidate can serve this request: {err}", param="routing", code="no_feasible_model"
            ) from None
        except UnknownModelError as err:
            raise ApiError(404, str(err), param="model", code="model_not_found") from None
        except (WeightsError, ValueError, TypeError) as err:
            raise ApiError(400, f"Invalid routing options: {err}", param="routing", code="invalid_value") from None
        self.metrics.decision.observe(time.perf_counter() - start)
        return call

    def count_failures(self, rid: str, call: RoutedCall, served: str | None, stream: bool) -> None:
        """Metrics and log lines of the attempts that failed, and the fallbacks they caused."""
        label = "true" if stream else "false"
        for index, failure in enumerate(call.failures):
            name = failure["model"]
            self.metrics.requests.labels(model=name, stream=label, outcome="error").inc()
            logger.warning("%s candidate %s failed: %s: %s", rid, name, failure["error_type"], failure["error"])
            following = call.failures[index + 1]["model"] if index + 1 < len(call.failures) else served
            if following is not None:
                self.metrics.fallbacks.labels(from_model=name, to_model=following).inc()

    def upstream_error(self, call: RoutedCall) -> ApiError:
        if not call.failures:
            return self.busy(call.order)
        detail = "; ".join(f"{f['model']}: {f['error_type']}: {f['error']}" for f in call.failures)
        return ApiError(502, f"Every candidate tried failed: {detail}", type="server_error", code="upstream_error")

    def extension(self, decision: Decision, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        routing = metadata.get("routing") or {}
        return {
            "served_by": name,
            "run_id": routing.get("run_id"),
            "routed": not decision.forced,
            "decision": decision.as_dict(),
            "failures": list(routing.get("failures") or []),
            "generated_tokens": routing.get("generated_tokens"),
            "energy": metadata.get("energy"),
        }

    def log_answer(
        self, rid: str, name: str, metadata: Mapping[str, Any], messages: list[BaseMessage], text: str
    ) -> None:
        energy = metadata.get("energy") or {}
        logger.info(
            "%s served_by=%s energy_j=%s method=%s runtime_s=%s",
            rid, name, energy.get("energy_j"), energy.get("method"), energy.get("runtime_s"),
        )  # fmt: skip
        if self.settings.log_prompts:
            logger.info("%s prompt=%r answer=%r", rid, [m.content for m in messages], text)


def create_app(
    router: EnergyAwareRouter,
    settings: AppSettings | None = None,
    *,
    close_router: bool = False,
    learn_in_background: bool = True,
) -> FastAPI:
    """The FastAPI app serving ``router``.

    Args:
        router: the router to serve (its candidates, profile, weights and state store).
        settings: name, limits, bearer key, prompt logging (default: :class:`AppSettings` defaults).
        close_router: close the router (its meters and store) when the app shuts down.
        learn_in_background: switch the router to ``learn_in_background`` (its store writes leave the
            request path; feedback still waits for them, and shutdown applies what is queued).

    Raises:
        ValueError: ``settings.max_in_flight`` names a model the router does not have.
    """
    if learn_in_background and router.learn and not router.learn_in_background:
        router.learn_in_background = True
    server = _Server(router, settings or AppSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_router:
            router.close()  # applies the queued measurements first
        else:
            await asyncio.to_thread(router.flush_learning)

    app = FastAPI(title="langchain-energyrouter", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return ApiError(err.status_code, str(err.detail), code=code).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        return ApiError(400, f"Invalid request: {err.errors()}", code="invalid_value").response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return ApiError(
            500, f"Internal error ({type(err).__name__}); see the server log.", type="server_error"
        ).response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "candidates": {
                name: {"in_flight": server.slots.counts[name], "max_in_flight": server.slots.limits[name]}
                for name in server.candidates
            },
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        server.authorize(request)
        names = [AUTO, server.settings.name, *server.candidates]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "energyrouter"} for n in names],
        }

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        server.authorize(request)
        data = await server.read_json(request)
        try:
            req = FeedbackRequest.model_validate(data)
        except ValidationError as err:
            raise _validation_error(err) from None
        try:
            learned = await asyncio.to_thread(router.feedback, req.run_id, req.score, key=req.key)
        except RoutingError as err:
            raise ApiError(400, str(err), param="run_id", code="feedback_unavailable") from None
        except ValueError as err:
            raise ApiError(400, str(err), param="score", code="invalid_value") from None
        server.metrics.feedback.labels(outcome="learned" if learned else "unknown_run").inc()
        return {"object": "feedback", "run_id": req.run_id, "learned": learned}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        server.authorize(request)
        req, messages, options, forced = server.parse_chat(await server.read_json(request))
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        call = server.plan(messages, options, forced, stop)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            chunks = stream_completion(server, rid, messages, call, include_usage, started)
            # Run to the first chunk before answering: fallbacks happen only before it, so the header names the
            # candidate that serves, and a stream that fails before any token is an HTTP error, not a 200.
            first = await first_chunk(request, chunks)
            if first is None:  # the client left before the first token: its slot is free again
                return Response(status_code=499)
            headers = {"x-energyrouter-model": serving(call), "cache-control": "no-cache"}
            if call.run_id:
                headers["x-energyrouter-run-id"] = call.run_id
            return StreamingResponse(prepend(first, chunks), media_type="text/event-stream", headers=headers)
        try:
            message = await router.ainvoke(messages, routed=call)
        except CandidatesBusyError:
            raise server.busy(call.order) from None
        except Exception:
            server.count_failures(rid, call, None, stream=False)
            raise server.upstream_error(call) from None
        finally:
            call.close()
        name = message.response_metadata["routing"]["served_by"]
        server.count_failures(rid, call, name, stream=False)
        decision = call.decision
        metadata = message.response_metadata
        usage = usage_body(message.usage_metadata)  # type: ignore[arg-type]
        server.metrics.observe_answer(name, metadata, message.usage_metadata)  # type: ignore[arg-type]
        server.metrics.requests.labels(model=name, stream="false", outcome="ok").inc()
        server.metrics.request_seconds.labels(model=name).observe(time.perf_counter() - started)
        text = message.text if isinstance(message.text, str) else str(message.text)
        server.log_answer(rid, name, metadata, messages, text)
        tool_calls = openai_tool_calls(message)
        reply: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            reply["tool_calls"] = tool_calls
        body = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": reply,
                    "finish_reason": finish_reason(bool(tool_calls), usage, decision, name),
                    "logprobs": None,
                }
            ],
            "usage": usage,
            "system_fingerprint": None,
            "energyrouter": server.extension(decision, name, metadata),
        }
        energy_j = (metadata.get("energy") or {}).get("energy_j")
        headers = {"x-energyrouter-model": name}
        if isinstance(energy_j, (int, float)) and math.isfinite(energy_j):
            headers["x-energyrouter-energy-j"] = f"{energy_j:.6g}"
        run_id = (metadata.get("routing") or {}).get("run_id")
        if run_id:
            headers["x-energyrouter-run-id"] = str(run_id)
        return Response(dumps(body), media_type="application/json", headers=headers)

    return app
