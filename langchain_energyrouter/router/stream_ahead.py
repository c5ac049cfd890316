"""Reading a candidate's stream ahead of its consumer, so its meter window measures the model, not the reader.

A stream's attempt used to stay metered until the consumer read the last chunk: a slow reader (or a
client reading slowly on purpose) stretched an instant model's measured runtime to seconds, and the
learner then predicted seconds. :class:`StreamAhead` pulls the candidate's chunks on a thread of its
own into a buffer and ends the attempt (closing its meter window) the moment the model stops
(its last chunk, or its error). The window also opens on that thread, when it starts pulling, so time
spent waiting for a worker is not metered either.

The buffer holds at most ``max_chunks`` chunks: past that the reader thread waits for the consumer
(and the window goes on), which only a model streaming more chunks than that ahead of its reader meets.
A consumer that stops early (:meth:`StreamAhead.close`, or dropping the iterator) stops the reader at
its next chunk and closes the candidate's stream there (a local pipeline then stops generating).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, Protocol, TypeVar

from langchain_energyrouter.energy.base import EnergyReading

__all__ = ["DEFAULT_MAX_CHUNKS", "StreamAhead"]

DEFAULT_MAX_CHUNKS = 8192
"""Chunks buffered ahead of the consumer before the reader waits for it."""

_T = TypeVar("_T")
_DONE = object()
_POLL_S = 0.05
"""How often a reader blocked on a full buffer checks whether the consumer went away."""


class _Metered(Protocol):
    def start_window(self) -> None: ...

    def end(self) -> EnergyReading: ...


class StreamAhead(Generic[_T]):
    """Pull ``chunks`` on a thread into a bounded buffer; end ``attempt`` when they run out or fail.

    Args:
        chunks: the candidate's blocking chunk iterator (created, not yet started).
        attempt: the attempt to meter: its window opens when the thread starts and ends when
            the model stops (:meth:`~langchain_energyrouter.router.live.Attempt.end`).
        max_chunks: the buffer's size.

    Iterate it (``for chunk in ahead``) or ``async for chunk in ahead.aiter()``; a model error is raised
    there, after the chunks that came before it.
    """

    def __init__(self, chunks: Iterator[_T], attempt: _Metered, *, max_chunks: int = DEFAULT_MAX_CHUNKS) -> None:
        self._chunks = chunks
        self._attempt = attempt
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=max_chunks + 1)  # + the end marker
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="energyrouter-stream-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            self._attempt.start_window()
            for chunk in self._chunks:
                if not self._put(chunk):
                    break
        except BaseException as err:  # the consumer raises it after the chunks before it
            self._error = err
        finally:
            self._attempt.end()  # the model stopped: close the window now, whatever the reader does
            close = getattr(self._chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as err:
                    self._error = self._error or err
            self._put(_DONE)

    def __iter__(self) -> Iterator[_T]:
        try:
            while True:
                item = self._buffer.get()
                if item is _DONE:
                    break
                yield item
        finally:
            self.close()
        if self._error is not None:
            raise self._error

    async def aiter(self) -> AsyncIterator[_T]:
        """The chunks for async code (each wait for the next runs in a worker thread, unmetered)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    item = self._buffer.get_nowait()
                except queue.Empty:
                    item = await loop.run_in_executor(None, self._buffer.get)
                if item is _DONE:
                    break
                yield item
        finally:
            self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop reading (the reader ends the attempt and closes the candidate's stream); idempotent.

        A worker thread still waiting for the next chunk (an :meth:`aiter` cancelled mid-wait, e.g. a client
        that left) gets the end marker: the stopped reader puts nothing more, and it would wait forever.
        """
        self._stop.set()
        while True:  # make room so a reader blocked on a full buffer sees the stop at once
            try:
                self._buffer.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):  # full only if the reader raced a chunk in: the waiter has it
            self._buffer.put_nowait(_DONE)

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the reader thread to finish."""
        self._thread.join(timeout_s)
