"""Streamed completions of the routing server: SSE chunks of one routed call, with its headers held back
until the first chunk (fallbacks happen only before it) and a watch for the client leaving meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Request
from langchain_core.messages import AIMessageChunk, BaseMessage

from langchain_energyrouter.errors import CandidatesBusyError
from langchain_energyrouter.server.connection import client_left
from langchain_energyrouter.server.wire import ApiError, finish_reason, sse, usage_body

if TYPE_CHECKING:
    from langchain_energyrouter.router.call import RoutedCall
    from langchain_energyrouter.server.context import ServerContext

__all__ = ["first_chunk", "prepend", "serving", "stream_completion"]

logger = logging.getLogger("langchain_energyrouter.server")


def serving(call: RoutedCall) -> str:
    """The candidate of the attempt under way (the last one begun), else the planned one."""
    return next(reversed(call.attempts), call.model)


async def first_chunk(request: Request, chunks: AsyncGenerator[bytes, None]) -> bytes | None:
    """The stream's first chunk, or None (the stream closed, its slot freed) when the client leaves first.

    Nothing else watches the connection until the response starts, so the wait races a disconnect.
    An :class:`ApiError` from the stream (a failure before any token) propagates.
    """
    peek = asyncio.ensure_future(anext(chunks))
    left = asyncio.ensure_future(client_left(request))
    try:
        await asyncio.wait({peek, left}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself was cancelled (shutdown): stop the stream too
        peek.cancel()
        raise
    finally:
        left.cancel()
    if peek.done():
        return peek.result()
    peek.cancel()
    with contextlib.suppress(BaseException):
        await peek
    await chunks.aclose()
    return None


async def prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for part in rest:
            yield part
    finally:
        await rest.aclose()  # at once, not when the collector finds it: the stream's slot is freed here


async def stream_completion(
    server: ServerContext,
    rid: str,
    messages: list[BaseMessage],
    call: RoutedCall,
    include_usage: bool,
    started: float,
) -> AsyncGenerator[bytes, None]:
    """SSE chunks of one streamed completion: the router runs ``call``, falling back before the first token.

    A failure before the first chunk raises :class:`ApiError` (the handler answers it with its status); one
    after it ends the stream with an error event.
    """
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": serving(call),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return sse(payload)

    sent = False
    text_parts: list[str] = []
    final: AIMessageChunk | None = None
    tool_calls = False
    try:
        try:
            async for piece in server.router.astream(messages, routed=call):
                if piece.response_metadata.get("routing"):
                    final = piece
                text = piece.text if isinstance(piece.text, str) else ""
                delta: dict[str, Any] = {}
                if text:
                    delta["content"] = text
                    text_parts.append(text)
                if piece.tool_call_chunks:
                    tool_calls = True
                    delta["tool_calls"] = [
                        {
                            "index": c.get("index") or 0,
                            **({"id": c["id"], "type": "function"} if c.get("id") else {}),
                            "function": {
                                **({"name": c["name"]} if c.get("name") else {}),
                                "arguments": c.get("args") or "",
                            },
                        }
                        for c in piece.tool_call_chunks
                    ]
                if delta:
                    if not sent:
                        delta = {"role": "assistant", **delta}
                    sent = True
                    yield chunk(delta)
        except Exception as err:
            server.count_failures(rid, call, None, stream=True)
            if isinstance(err, CandidatesBusyError):
                error = server.busy(call.order)
            elif not sent:
                error = server.upstream_error(call)
            else:
                name = serving(call)
                if not any(f["model"] == name for f in call.failures):  # not the model's: count_failures missed it
                    logger.warning("%s candidate %s stream failed: %s: %s", rid, name, type(err).__name__, err)
                error = ApiError(
                    502, f"Candidate {name} failed mid-answer ({type(err).__name__}); the server's log has the error.",
                    type="server_error", code="upstream_error",
                )  # fmt: skip
            if not sent:
                raise error from None
            yield sse(error.body())
            yield b"data: [DONE]\n\n"
            return
    finally:
        call.close()  # the client went away (or the server is shutting down) mid-answer: free the slot now
    metadata = final.response_metadata if final is not None else {}
    name = (metadata.get("routing") or {}).get("served_by") or serving(call)
    server.count_failures(rid, call, name, stream=True)
    own_usage = final.usage_metadata if final is not None else None
    usage = usage_body(own_usage)  # type: ignore[arg-type]
    server.metrics.observe_answer(name, metadata, own_usage)  # type: ignore[arg-type]
    server.metrics.requests.labels(model=name, stream="true", outcome="ok").inc()
    server.metrics.request_seconds.labels(model=name).observe(time.perf_counter() - started)
    server.log_answer(rid, name, metadata, messages, "".join(text_parts))
    extension = server.extension(call.decision, name, metadata)
    finish = finish_reason(tool_calls, usage, call.decision, name)
    yield chunk({} if sent else {"role": "assistant", "content": ""}, finish, energyrouter=extension)
    if include_usage:
        yield sse(
            {"id": rid, "object": "chat.completion.chunk", "created": created, "model": name, "choices": [],
             "usage": usage},
        )  # fmt: skip
    yield b"data: [DONE]\n\n"
