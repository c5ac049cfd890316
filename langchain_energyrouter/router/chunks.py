"""Stream-chunk bookkeeping for the router: what a candidate streams, minus what must arrive once.

When chunks merge, LangChain adds usage numbers and concatenates strings, so
usage and ``model_name`` must appear exactly once per stream. The router
strips them from the candidate's chunks (:class:`StreamTracker`) and emits
them on one final chunk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_usage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_energyrouter.router.tokens import message_text

__all__ = ["StreamTracker", "to_chunk"]


def to_chunk(message: BaseMessage) -> AIMessageChunk:
    """An AIMessage as one AIMessageChunk (for candidates that cannot stream)."""
    calls = getattr(message, "tool_calls", None) or []
    return AIMessageChunk(
        content=message.content,
        additional_kwargs=dict(message.additional_kwargs),
        response_metadata=dict(message.response_metadata),
        usage_metadata=getattr(message, "usage_metadata", None),
        tool_call_chunks=[
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i)
            for i, c in enumerate(calls)
        ],
        id=message.id,
    )


def _add_usage(total: dict[str, Any] | None, usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return total
    if total is None:
        return dict(usage)
    return dict(add_usage(total, usage))  # type: ignore[arg-type]


def _chunk_is_empty(chunk: ChatGenerationChunk) -> bool:
    message = chunk.message
    return (
        not message.content
        and not getattr(message, "tool_call_chunks", None)
        and not message.additional_kwargs
        and not message.response_metadata
        and not chunk.generation_info
    )


class StreamTracker:
    """Strips usage and model names from a candidate's chunks, keeping them for the final chunk.

    Attributes:
        started: a chunk with content reached the caller (no fallback is possible any more).
        usage: the candidate's own usage, summed over its chunks, or None.
        model_name: the provider's model name, if a chunk carried one.
    """

    __slots__ = ("model_name", "parts", "started", "usage")

    def __init__(self) -> None:
        self.started = False
        self.usage: dict[str, Any] | None = None
        self.model_name: str | None = None
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        """The text (and tool-call names and arguments) streamed so far."""
        return "".join(self.parts)

    def clean(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk | None:
        """The chunk to pass on (None when nothing is left of it)."""
        message = chunk.message
        usage = getattr(message, "usage_metadata", None)
        info = chunk.generation_info
        if usage or "model_name" in message.response_metadata or (info and "model_name" in info):
            self.usage = _add_usage(self.usage, usage)
            name = message.response_metadata.get("model_name") or (info or {}).get("model_name")
            if isinstance(name, str) and name and self.model_name is None:
                self.model_name = name
            update: dict[str, Any] = {
                "response_metadata": {k: v for k, v in message.response_metadata.items() if k != "model_name"}
            }
            if usage:
                update["usage_metadata"] = None
            message = message.model_copy(update=update)
            info = {k: v for k, v in info.items() if k != "model_name"} if info else None
            chunk = ChatGenerationChunk(message=message, generation_info=info or None)
        if _chunk_is_empty(chunk):
            return None
        self.started = True
        self.parts.append(message_text(message) if not isinstance(message.content, str) else message.content)
        for call in getattr(message, "tool_call_chunks", None) or []:
            self.parts.append((call.get("name") or "") + (call.get("args") or ""))
        return chunk
