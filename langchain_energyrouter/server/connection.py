"""Watching the client's connection: what waits for the client (a place in the queue, a stream's first token)
is given up when the client leaves first, so no model runs, or keeps running, for no one."""

from __future__ import annotations

from fastapi import Request

__all__ = ["client_left"]


async def client_left(request: Request) -> None:
    """Returns when the client has closed the connection (call it once the body is read: it reads what is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
