"""Live load: requests in flight per candidate, counted here and read from serving engines (stdlib only).

The profile's :class:`~langchain_energyrouter.profile.LoadModel` scales a request's cost by the
number of requests in flight on its model. Two sources for that number:

* :class:`InFlightCounter`: what this process has in flight, per candidate (thread-safe;
  ``with counter.track(name): ...`` around a call).
* :class:`EngineLoadReader`: what a serving engine reports on its Prometheus ``/metrics``
  endpoint, which includes other clients' requests: vLLM's ``vllm:num_requests_running`` and
  ``vllm:num_requests_waiting`` (label ``model_name``), TGI's ``tgi_batch_current_size`` and
  ``tgi_queue_size``.

The reader never makes the hot path wait on the network. :meth:`EngineLoadReader.load`
returns the cached value at once; when it is older than ``ttl_s`` (1 s) it starts ONE
background refresh (a short-lived daemon thread with a ``timeout_s`` HTTP timeout) and still
returns the cached value. A value older than ``max_age_s`` (an engine that stopped
answering) is reported as unknown (``None``), so the caller falls back on its own count. Why
not a permanent polling thread: an idle router then polls nothing, and nothing outlives
:meth:`~EngineLoadReader.close`; the price is that the first read after a quiet spell is
up to ``ttl_s`` stale, which is what the TTL already allows.

:func:`load_for_decision` combines both into the ``in_flight`` figure
:meth:`~langchain_energyrouter.decide.scheduler.Scheduler.decide` takes (this request included).
"""

from __future__ import annotations

import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ENGINE_METRICS",
    "EngineLoad",
    "EngineLoadReader",
    "InFlightCounter",
    "MetricSample",
    "load_for_decision",
    "parse_prometheus_text",
]


class InFlightCounter:
    """Requests in flight per candidate in this process; every method is thread-safe.

    Example:
        >>> counter = InFlightCounter()
        >>> with counter.track("phi-3-mini") as n:  # n: in flight, this one included
        ...     ...
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def increment(self, name: str) -> int:
        """Count one more request on ``name``; returns the new count."""
        with self._lock:
            count = self._counts.get(name, 0) + 1
            self._counts[name] = count
            return count

    def decrement(self, name: str) -> int:
        """Count one request fewer on ``name``; returns the new count.

        Raises:
            ValueError: nothing is in flight on ``name`` (an unmatched decrement is a bug).
        """
        with self._lock:
            count = self._counts.get(name, 0)
            if count <= 0:
                raise ValueError(
                    f"No request is in flight on {name!r}; decrement() must follow increment() "
                    "(use `with counter.track(name):`)."
                )
            if count == 1:
                del self._counts[name]
            else:
                self._counts[name] = count - 1
            return count - 1

    def get(self, name: str) -> int:
        """Requests in flight on ``name`` now."""
        return self._counts.get(name, 0)  # a dict read is atomic under the GIL

    def snapshot(self) -> dict[str, int]:
        """Every candidate's count now (candidates with none in flight are absent)."""
        with self._lock:
            return dict(self._counts)

    @contextmanager
    def track(self, name: str) -> Iterator[int]:
        """Count a request on ``name`` for the ``with`` block; yields the count, this one included."""
        count = self.increment(name)
        try:
            yield count
        finally:
            self.decrement(name)


# -- Prometheus text format ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MetricSample:
    """One sample line: ``name{labels} value``."""

    name: str
    labels: Mapping[str, str]
    value: float


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _parse_value(text: str) -> float:
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)  # "NaN" parses


def _parse_labels(text: str) -> dict[str, str]:
    body = text[1:-1].strip()
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        match = _LABEL.match(body, pos)
        if match is None:
            raise ValueError(f"bad label set {text!r}")
        labels[match.group(1)] = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], match.group(2))
        pos = match.end()
    return labels


def parse_prometheus_text(text: str) -> list[MetricSample]:
    """Samples of a Prometheus text exposition (format 0.0.4; OpenMetrics' ``# EOF`` is ignored).

    Comments (``# HELP``, ``# TYPE``) and blank lines are skipped; a line that does not parse
    is skipped too (one odd metric must not hide the ones the router needs).
    """
    samples: list[MetricSample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            labels = _parse_labels(match.group(2)) if match.group(2) else {}
            value = _parse_value(match.group(3))
        except ValueError:
            continue
        samples.append(MetricSample(match.group(1), labels, value))
    return samples


# -- engines ------------------------------------------------------------------------
Engine = Literal["vllm", "tgi"]

ENGINE_METRICS: dict[str, tuple[str, str, str | None]] = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting", "model_name"),
    "tgi": ("tgi_batch_current_size", "tgi_queue_size", None),
}
"""Engine -> (running metric, waiting metric, model label or None)."""


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """An engine's own count of requests, when it was read, and from where."""

    running: float
    """Requests being decoded now."""
    waiting: float
    """Requests queued (admitted once running ones finish)."""
    read_at_s: float
    """``time.monotonic()`` of the read."""
    engine: str

    @property
    def in_flight(self) -> float:
        """Requests the engine holds: running plus waiting (a queued request delays the new one too)."""
        return self.running + self.waiting


def engine_load_from_samples(
    samples: list[MetricSample], engine: Engine | Literal["auto"] = "auto", model: str | None = None, *, now_s: float
) -> EngineLoad | None:
    """The load in ``samples``, summed over an engine's replicas (``engine`` labels); None if absent.

    Args:
        samples: parsed ``/metrics``.
        engine: ``"vllm"``, ``"tgi"`` or ``"auto"`` (whichever metrics are present).
        model: keep only samples whose model label equals this (vLLM's ``model_name``);
            None keeps all.
        now_s: the read's time stamp.
    """
    names = {s.name for s in samples}
    engines = [engine] if engine != "auto" else [e for e, (run, _w, _l) in ENGINE_METRICS.items() if run in names]
    for candidate in engines:
        running_name, waiting_name, label = ENGINE_METRICS[candidate]
        if running_name not in names:
            continue

        def total(metric: str, label: str | None = label) -> float:
            return sum(
                s.value
                for s in samples
                if s.name == metric
                and (model is None or label is None or s.labels.get(label) == model)
                and math.isfinite(s.value)
            )

        if model is not None and label is not None:
            if not any(s.name == running_name and s.labels.get(label) == model for s in samples):
                return None  # the engine serves other models only
        return EngineLoad(total(running_name), total(waiting_name), now_s, candidate)
    return None


class EngineLoadReader:
    """Reads a serving engine's load from its ``/metrics`` without ever blocking the caller.

    Args:
        url: the metrics URL, e.g. ``"http://localhost:8000/metrics"`` (vLLM serves it on its
            API port; TGI on its port too).
        engine: ``"vllm"``, ``"tgi"`` or ``"auto"``.
        model: the served model name to count (vLLM's ``model_name`` label); None counts all.
        ttl_s: a cached value younger than this is fresh: no refresh is started.
        max_age_s: a value older than this is unknown (``None``): the engine stopped answering.
        timeout_s: HTTP timeout of one refresh (it runs in the background).
        clock: monotonic clock in seconds (tests).
        fetch: ``url, timeout_s -> text`` (default: :mod:`urllib`); tests use the real one.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        engine: Engine | Literal["auto"] = "auto",
        model: str | None = None,
        ttl_s: float = 1.0,
        max_age_s: float = 10.0,
        timeout_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[str, float], str] | None = None,
    ) -> None:
        if engine not in ("auto", *ENGINE_METRICS):
            raise ValueError(f"engine {engine!r} is unknown; use 'auto' or one of {list(ENGINE_METRICS)}.")
        if not (0 < ttl_s <= max_age_s):
            raise ValueError(f"need 0 < ttl_s <= max_age_s, got ttl_s={ttl_s}, max_age_s={max_age_s}.")
        self.url = url
        self.engine: Engine | Literal["auto"] = engine
        self.model = model
        self.ttl_s = ttl_s
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._fetch = fetch or _http_get
        self._lock = threading.Lock()
        self._value: EngineLoad | None = None
        self._attempt_s = -math.inf
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last_error: str | None = None
        """Why the last refresh failed (None after a success)."""

    # -- hot path ---------------------------------------------------------------
    def load(self) -> EngineLoad | None:
        """The cached engine load, at once; starts a background refresh when it is stale.

        Returns None until a first refresh succeeded, and when the last good value is older
        than ``max_age_s``.
        """
        now = self._clock()
        value = self._value
        if now - self._attempt_s >= self.ttl_s and (value is None or now - value.read_at_s >= self.ttl_s):
            self._start_refresh(now)
        if value is None or now - value.read_at_s > self.max_age_s:
            return None
        return value

    def _start_refresh(self, now: float) -> None:
        with self._lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            if now - self._attempt_s < self.ttl_s:  # another caller just started one
                return
            self._attempt_s = now
            self._thread = threading.Thread(target=self.refresh, name=f"engine-load {self.url}", daemon=True)
            self._thread.start()

    # -- cold path --------------------------------------------------------------
    def refresh(self) -> EngineLoad | None:
        """Read ``/metrics`` now (blocking, up to ``timeout_s``); returns the new value or None.

        Failures (connection refused, timeout, HTTP error, metrics absent) keep the previous
        value and set :attr:`last_error`; nothing is raised.
        """
        try:
            text = self._fetch(self.url, self.timeout_s)
        except (OSError, ValueError, urllib.error.URLError) as err:
            self.last_error = f"{type(err).__name__}: {err}"
            return None
        value = engine_load_from_samples(parse_prometheus_text(text), self.engine, self.model, now_s=self._clock())
        if value is None:
            wanted = (
                ENGINE_METRICS[self.engine][0]
                if self.engine != "auto"
                else " or ".join(m[0] for m in ENGINE_METRICS.values())
            )
            model = f" for model {self.model!r}" if self.model is not None else ""
            self.last_error = f"{self.url} has no {wanted}{model}"
            return None
        self._value = value
        self.last_error = None
        return value

    def wait_for_refresh(self, timeout_s: float | None = None) -> None:
        """Wait for a background refresh in progress (tests, start-up)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def close(self) -> None:
        """Stop starting refreshes and wait for the one in progress (at most ``timeout_s``)."""
        with self._lock:
            self._closed = True
        self.wait_for_refresh(self.timeout_s + 1.0)

    def __enter__(self) -> EngineLoadReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _http_get(url: str, timeout_s: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain; version=0.0.4"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode("utf-8", "replace")


def load_for_decision(own_in_flight: int, engine: EngineLoad | None = None) -> float:
    """Requests in flight for the scheduler's ``in_flight`` (this new request included).

    ``own_in_flight`` counts this process's requests already running on the candidate
    (:meth:`InFlightCounter.get` before :meth:`~InFlightCounter.track`); the engine's figure
    includes them once they reached it, plus other clients', so the larger one is used.
    """
    seen = float(own_in_flight) if engine is None else max(float(own_in_flight), engine.in_flight)
    return seen + 1.0
