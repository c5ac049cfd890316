"""Progress bars for calibration: a thin :class:`Progress` over ``tqdm``, plus :func:`format_seconds`."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


def format_seconds(seconds: float) -> str:
    """``75`` -> ``"1:15"``; ``3700`` -> ``"1:01:40"``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A ``tqdm`` bar with elapsed time, ETA and a note, redrawn in place on a terminal.

    Not on a terminal (CI logs), it redraws at most every ``log_every_s`` seconds and at the end.
    The bar closes itself when ``done`` reaches ``total``; call :meth:`close` when stopping short.

    Args:
        total: number of steps.
        label: text before the bar (e.g. the model name).
        stream: where the bar goes (default: stderr).
        width: width of the bar itself, in characters.
        log_every_s: seconds between redraws when ``stream`` is not a terminal.
    """

    def __init__(
        self, total: int, label: str = "", *, stream: TextIO | None = None, width: int = 24, log_every_s: float = 5.0
    ) -> None:
        self.total = max(0, total)
        self.done = 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = tqdm(
            total=self.total,
            desc=label or None,
            file=self.stream,
            mininterval=0.1 if tty else log_every_s,
            bar_format="{desc} |{bar:" + str(width) + "}| {n_fmt}/{total_fmt} {percentage:3.0f}%"
            "  {elapsed} elapsed, ETA {remaining}{postfix}",
            dynamic_ncols=tty,
            leave=True,
            disable=self.total == 0,  # nothing to show; as before, no empty bar
        )

    def update(self, n: int = 1, note: str = "") -> None:
        """Advance by ``n`` steps (never past ``total``) and show ``note`` after the bar."""
        step = max(0, min(self.total - self.done, n))
        self.done += step
        if note:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(step)
        if self.done >= self.total:
            self._bar.close()

    def close(self, note: str = "") -> None:
        """Finish the bar (if it was left short, e.g. stopped at a time budget); idempotent."""
        if note:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.close()
