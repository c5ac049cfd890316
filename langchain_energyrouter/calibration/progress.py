"""A tiny progress bar with ETA for stderr (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    """``75`` -> ``"1:15"``; ``3700`` -> ``"1:01:40"``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """``[#####-----] 12/24  50%  0:12 elapsed, ETA 0:11  note``, redrawn in place on a terminal.

    Not on a terminal (CI logs), a line is printed at most every ``log_every_s`` seconds and at the end.
    """

    def __init__(
        self, total: int, label: str = "", *, stream: TextIO | None = None, width: int = 24, log_every_s: float = 5.0
    ) -> None:
        self.total = max(0, total)
        self.done = 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.log_every_s = log_every_s
        self._start = time.monotonic()
        self._last_log = -1e9
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n)
        self._draw(note)

    def _draw(self, note: str) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        final = self.done >= self.total
        if not self._tty and not final and now - self._last_log < self.log_every_s:
            return
        self._last_log = now
        frac = self.done / self.total if self.total else 1.0
        filled = round(frac * self.width)
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta_text = format_seconds(eta) if self.done else "?"
        line = (
            f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} {frac:4.0%}"
            f"  {format_seconds(elapsed)} elapsed, ETA {eta_text}  {note}"
        ).rstrip()
        if self._tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, note: str = "") -> None:
        """Finish the line (if the bar was left short, e.g. stopped at a time budget)."""
        if self._tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
