"""Reading shared state off the request path: one short-lived background read at a time, at most every ``every_s``.

A router adopts what other processes learned by re-reading the store now and then. Done inline, a decision
would wait on the store (a slow disk, a distant Redis) and on the lock its own writers hold while they write.
:class:`BackgroundRefresh` takes that read off the caller: :meth:`~BackgroundRefresh.poll` returns at once and,
when a refresh is due and none is running, starts one on a daemon thread. The reader installs what it read as
new immutable snapshots, so a decision sees either the old ones or the new ones and never waits for either.
Like the engine load reader, no thread outlives a refresh: an idle router reads nothing, and the first
decision after a quiet spell uses what was read before it (at most one refresh behind).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["BackgroundRefresh", "RefreshesInBackground"]

logger = logging.getLogger(__name__)


class BackgroundRefresh:
    """Runs ``refresh`` on a daemon thread when :meth:`poll` finds it due: one at a time, at most every ``every_s``.

    Args:
        refresh: the blocking read (it must catch what it can recover from; anything else is logged).
        every_s: seconds between the starts of two refreshes (0: whenever none is running).
        name: the thread's name, for logs and debuggers.
    """

    def __init__(self, refresh: Callable[[], None], every_s: float, name: str) -> None:
        self._refresh = refresh
        self.every_s = float(every_s)
        self.name = name
        self._lock = threading.Lock()  # held for microseconds: never around the refresh itself
        self._started_s = time.monotonic()  # the owner read the store when it was built
        self._thread: threading.Thread | None = None
        self._closed = False

    def poll(self) -> None:
        """Start a refresh in the background when one is due and none is running; returns at once."""
        now = time.monotonic()
        if now < self._started_s + self.every_s:
            return
        with self._lock:
            if self._closed or now < self._started_s + self.every_s:
                return
            if self._thread is not None and self._thread.is_alive():
                return  # one at a time: a slow store gets no pile of readers
            self._started_s = now
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._refresh()
        except Exception:  # a background read must not die silently, nor take the router down
            logger.exception("Background refresh %s failed; decisions go on with the state they have.", self.name)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the refresh in progress, if any (tests, shutdown); False when it is still running."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def close(self, timeout_s: float | None = 5.0) -> bool:
        """Start no more refreshes and wait (at most ``timeout_s``) for the one in progress."""
        with self._lock:
            self._closed = True
        return self.wait(timeout_s)


class RefreshesInBackground:
    """What a holder of shared state offers over its :class:`BackgroundRefresh` (kept in ``_background``)."""

    _background: BackgroundRefresh

    @property
    def refresh_s(self) -> float:
        """Seconds, at least, between the starts of two background reads of other processes' updates."""
        return self._background.every_s

    @refresh_s.setter
    def refresh_s(self, value: float) -> None:
        self._background.every_s = float(value)

    def wait_for_refresh(self, timeout_s: float | None = None) -> bool:
        """Wait for a background read in progress (tests); False when it is still running."""
        return self._background.wait(timeout_s)

    def close(self, timeout_s: float | None = 5.0) -> bool:
        """Start no more background reads and wait (at most ``timeout_s``) for the one in progress."""
        return self._background.close(timeout_s)
