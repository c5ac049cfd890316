"""Watching the client's connection: work that waits (a place in the queue, a stream's first token) is given up
when the client leaves first, so no model runs, or keeps running, for no one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from fastapi import Request

__all__ = ["before_client_leaves", "client_left"]


async def client_left(request: Request) -> None:
    """Returns when the client has closed the connection (call it once the body is read: it reads what is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def before_client_leaves(work: asyncio.Future[Any], left: Awaitable[None]) -> bool:
    """Wait for ``work`` or for ``left`` (the client leaving), whichever comes first; True when ``work`` is done.

    When the client left first, ``work`` is still running: the caller cancels it. When the caller itself is
    cancelled (shutdown), ``work`` is cancelled too.
    """
    watch = asyncio.ensure_future(left)
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        work.cancel()
        raise
    finally:
        watch.cancel()
    return work.done()
