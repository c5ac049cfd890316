"""The OpenAI-compatible routing server: :func:`create_app` builds the FastAPI app over one router.

Endpoints::

    POST /v1/chat/completions   OpenAI chat completions, streaming (SSE) or not; model "auto" (or the
                                server's name) routes, a candidate's name forces it; per-request
                                "routing": {"weights", "constraints", "task_type"} (the OpenAI client's
                                extra_body); the decision and energy come back in "energyrouter" and in
                                the x-energyrouter-model / x-energyrouter-energy-j headers
    POST /v1/feedback           {"run_id", "feedback_token", "score", "key"?} -> router.feedback: the run's
                                signed token required, one score per run (see server/feedback.py)
    GET  /v1/models             "auto", the server's name, and every candidate
    GET  /health                candidates with their requests in flight and limits (no key needed)
    GET  /metrics               Prometheus text format (no key needed)

Bounds: each candidate serves at most its ``max_in_flight`` requests; a routed request is decided once among the
candidates with a free slot (the full ones are excluded, with the reason, in the decision), the router falls
back down that ranking itself under the same limits. When every eligible one is full (a forced one: when it is
full) the request waits for a place in a bounded queue (``limits.queue_length``, off by default, each wait at
most ``limits.max_queue_wait_s``) or is refused with 429 and ``Retry-After``. Bodies over ``max_request_bytes`` get
413. Every refusal and every bad input is a 4xx with an OpenAI-style body ``{"error": {"message", "type",
"param", "code"}}``; an unexpected failure is a 500 with the same shape and no traceback (the traceback goes
to the server's log). The router learns from each answer off the request path (``learn_in_background``).

Prompts and answers are logged only with ``log_prompts``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from langchain_energyrouter.errors import CandidatesBusyError
from langchain_energyrouter.server.config import AppSettings
from langchain_energyrouter.server.connection import client_left
from langchain_energyrouter.server.context import ServerContext
from langchain_energyrouter.server.feedback import post_feedback
from langchain_energyrouter.server.metrics import CONTENT_TYPE_LATEST
from langchain_energyrouter.server.openapi import routes
from langchain_energyrouter.server.streaming import first_chunk, prepend, serving, stream_completion
from langchain_energyrouter.server.wire import (
    AUTO,
    ApiError,
    dumps,
    finish_reason,
    openai_tool_calls,
    usage_body,
)

if TYPE_CHECKING:
    from langchain_energyrouter.router import EnergyAwareRouter

__all__ = ["KEEP_ALIVE_S", "ApiError", "create_app"]

logger = logging.getLogger("langchain_energyrouter.server")

KEEP_ALIVE_S = 75
"""Seconds uvicorn keeps an idle connection open. Longer than a client pool's idle expiry (httpx 5 s, openai
5 s, load balancers 60 s): with equal timeouts a client reuses a connection just as the server closes it, and
the request dies with a connection reset (about one in 2,000 under load)."""


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
    server = ServerContext(router, settings or AppSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(server.close)
        if close_router:
            router.close()  # applies the queued measurements first
        else:
            await asyncio.to_thread(router.flush_learning)

    app = FastAPI(title="langchain-energyrouter", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    described = routes([AUTO, server.settings.name, *server.candidates])

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

    @app.get("/health", **described["health"])
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "candidates": {
                name: {"in_flight": server.slots.counts[name], "max_in_flight": server.slots.limits[name]}
                for name in server.candidates
            },
            "queue": {
                "waiting": server.slots.queued,
                "queue_length": server.slots.queue_length,
                "max_queue_wait_s": server.slots.max_wait_s,
            },
        }

    @app.get("/metrics", **described["metrics"])
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", **described["models"])
    async def models(request: Request) -> dict[str, Any]:
        server.authorize(request)
        names = [AUTO, server.settings.name, *server.candidates]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "energyrouter"} for n in names],
        }

    @app.post("/v1/feedback", **described["feedback"])
    async def feedback(request: Request) -> dict[str, Any]:
        return await post_feedback(server, request)

    @app.post("/v1/chat/completions", **described["chat"])
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        server.authorize(request)
        req, messages, options, forced = server.parse_chat(await server.read_json(request))
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        call = await server.plan(messages, options, forced, stop, client_left=functools.partial(client_left, request))
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            chunks = stream_completion(server, rid, messages, call, include_usage, started)
            # Run to the first chunk before answering: fallbacks happen only before it, so the header names the
            # candidate that serves, and a stream that fails before any token is an HTTP error, not a 200.
            first = await first_chunk(request, chunks)
            if first is None:  # the client left before the first token: its place is free again
                call.close()  # (a place held from the queue too, had the stream not started)
                return Response(status_code=499)
            headers = {"x-energyrouter-model": serving(call), "cache-control": "no-cache"}
            if call.run_id:
                headers["x-energyrouter-run-id"] = call.run_id
                headers["x-energyrouter-feedback-token"] = server.feedback_tokens.sign(call.run_id)
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
            headers["x-energyrouter-feedback-token"] = body["energyrouter"]["feedback_token"]
        return Response(dumps(body), media_type="application/json", headers=headers)

    return app
