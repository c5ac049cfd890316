"""An opt-in decision log: one JSON line per routed call, for an operator to look back on.

``EnergyAwareRouter(decision_log="decisions.jsonl")`` (or ``decision_log:`` in ``router.yaml``,
``energyrouter serve --decision-log PATH``) appends one line per call when its answer is final:
the choice and the model that served it, every candidate's predictions (answer length, runtime, energy,
accuracy, cost, requests in flight), the measurement (output tokens, runtime, joules, energy method and
flags), the weights, whether the call explored, and failed attempts. A call on which every candidate
failed gets an ``"event": "failed"`` line, and :meth:`EnergyAwareRouter.feedback` an ``"event": "feedback"``
line (the measured side of accuracy). Prompts and answers are left out unless ``prompts=True``. An answer
replayed from a LangChain cache ran nothing and gets no line.
``energyrouter report LOG`` reads it back (:mod:`langchain_energyrouter.calibration.decision_report`).

A line, shortened::

    {"schema": 1, "event": "call", "time": "2026-12-05T08:30:00.123Z", "time_unix_s": 1796459400.123,
     "run_id": "...", "chosen": "gemma3-270m", "served_by": "gemma3-270m", "forced": false,
     "weights": {"accuracy": 0.6, "energy": 0.3, "time": 0.1}, "normalization": "relative",
     "explored": null, "task_type": null, "max_output_tokens": {"gemma3-270m": 48, ...},
     "profile_energy_method": "estimate",
     "candidates": {"gemma3-270m": {"input_tokens": 21, "predicted_output_tokens": 9.8,
                    "predicted_runtime_s": 0.61, "predicted_energy_j": 3.1, "accuracy": 0.41, "cost": 0.2,
                    "in_flight": 1, "excluded": null, "flags": [], "sources": {...}}, ...},
     "measured": {"output_tokens": 7, "generated_tokens": 8, "runtime_s": 0.55, "energy_j": 2.8,
                  "method": "estimate", "is_estimate": true, "flags": []},
     "failures": [], "busy": {}}

Crash safety: each line is serialised first and then written with one ``os.write`` on a file opened with
``O_APPEND`` (no buffer in this process), so a ``kill -9`` loses at most the line of the call in flight,
never a line already written, and never leaves half a line behind one that follows. ``fsync=True`` also
survives a power cut, at the cost of a disk sync per call on the request path (about 4 ms on the
development machine's disk). Without it a line costs about 30 microseconds and 1.5 kB for two candidates
(``benchmarks/bench_decision_log.py``); there is no thread, as a queue would lose every queued line on a kill.

Bounded: when the file would pass ``max_bytes`` it is rotated to ``PATH.1`` (``PATH.1`` to ``PATH.2``, ... up
to ``backups`` files; ``backups=0`` starts the file over), so the log never holds more than
``(backups + 1) * max_bytes`` bytes. One writer process per file: rotation is not coordinated across
processes (give each replica its own path). A file moved or removed by someone else (``logrotate``, an
operator) is noticed at the next line, which starts a new file at the path.

A failed write (disk full, an unwritable device) is logged as a warning once and counted in
:attr:`DecisionLog.errors`; it never fails the call.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_energyrouter.decide.scheduler import Candidate, Decision
    from langchain_energyrouter.energy.base import EnergyReading

__all__ = ["DEFAULT_BACKUPS", "DEFAULT_MAX_BYTES", "SCHEMA_VERSION", "DecisionLog", "call_record"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Version of a line's layout (the ``schema`` key); a reader refuses lines of a newer one."""
DEFAULT_MAX_BYTES = 64 * 2**20
"""Size at which the log rotates, bytes (64 MiB: about 40 000 calls of two candidates)."""
DEFAULT_BACKUPS = 3
"""Rotated files kept beside the current one."""

_CANDIDATE_KEYS = (
    "input_tokens",
    "predicted_output_tokens",
    "output_tokens_median",
    "output_tokens_upper",
    "predicted_runtime_s",
    "predicted_energy_j",
    "accuracy",
    "cost",
    "in_flight",
    "excluded",
)


class DecisionLog:
    """Appends decision records to a JSONL file, one ``os.write`` per line (see the module doc).

    Thread-safe; a context manager. Lines written after :meth:`close` (a call that was in flight when the
    router's settings changed) still land: the file is opened for that line and closed again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        prompts: bool = False,
        fsync: bool = False,
    ) -> None:
        """Open (create) the log for appending.

        Args:
            path: the JSONL file; its directory is created if missing.
            max_bytes: rotate when a line would take the file past this size (at least 4096).
            backups: rotated files to keep (``PATH.1`` newest); 0 starts the file over.
            prompts: also log each call's prompt (its last user turn) and answer text.
            fsync: sync each line to disk (survives a power cut, not only a killed process; milliseconds a call).

        Raises:
            ValueError: ``max_bytes`` below 4096 or ``backups`` negative.
            OSError: the file cannot be opened for appending.
        """
        if not isinstance(max_bytes, int) or max_bytes < 4096:
            raise ValueError(f"decision log max_bytes={max_bytes!r} must be an integer of at least 4096 bytes.")
        if not isinstance(backups, int) or backups < 0:
            raise ValueError(f"decision log backups={backups!r} must be a non-negative integer (0: no rotated files).")
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        self.backups = backups
        self.prompts = prompts
        self.fsync = fsync
        self.errors = 0
        """Lines that could not be written."""
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._closed = False
        self._fd: int | None = self._open()

    @classmethod
    def coerce(cls, value: Any) -> DecisionLog | None:
        """A log from the router's ``decision_log`` setting: None, a path, a dict of options (``path``
        and the keywords of the constructor) or a :class:`DecisionLog`.

        Raises:
            TypeError: anything else.
        """
        if value is None or isinstance(value, DecisionLog):
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls(value)
        if isinstance(value, Mapping) and "path" in value:
            options = dict(value)
            return cls(options.pop("path"), **options)
        raise TypeError(
            f"decision_log takes a path, a dict with 'path' (and max_bytes, backups, prompts, fsync) or a "
            f"DecisionLog, got {value!r}."
        )

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- records -------------------------------------------------------------------
    def answered(
        self,
        decision: Decision,
        served_by: str,
        reading: EnergyReading,
        usage: Mapping[str, Any],
        generated_tokens: int | None,
        *,
        run_id: str | None,
        failures: Sequence[Mapping[str, Any]] = (),
        busy: Mapping[str, str] | None = None,
        prompt: str | None = None,
        answer: str | None = None,
    ) -> None:
        """Log an answered call (see :func:`call_record`)."""
        record = call_record(decision, served_by, reading, usage, generated_tokens, run_id, failures, busy)
        if self.prompts:
            record["prompt"] = prompt
            record["answer"] = answer
        self.write(record)

    def failed(
        self,
        decision: Decision,
        *,
        run_id: str | None,
        failures: Sequence[Mapping[str, Any]],
        busy: Mapping[str, str] | None = None,
        prompt: str | None = None,
    ) -> None:
        """Log a call on which no candidate answered (each failed attempt with its reading)."""
        record = call_record(decision, None, None, None, None, run_id, failures, busy)
        record["event"] = "failed"
        if self.prompts:
            record["prompt"] = prompt
        self.write(record)

    def feedback(self, run_id: str, score: float, *, key: str | None, learned: bool) -> None:
        """Log a feedback score for run ``run_id`` (0 wrong to 1 right)."""
        self.write(
            {**_stamp("feedback"), "run_id": run_id, "score": float(score), "key": key, "learned": bool(learned)}
        )

    # -- writing -------------------------------------------------------------------
    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line (rotating first when the line would pass ``max_bytes``)."""
        line = (json.dumps(record, separators=(",", ":"), default=_jsonable) + "\n").encode()
        with self._lock:
            try:
                self._append(line)
            except OSError as err:
                self.errors += 1
                if self.errors == 1:
                    logger.warning("decision log %s: cannot write (%s); calls go on unlogged", self.path, err)

    def _append(self, line: bytes) -> None:
        keep = not self._closed
        fd = self._fd if keep and self._fd is not None else self._open()
        if keep:
            self._fd = fd
        try:
            stat = os.fstat(fd)
            if not self._is_current(stat):  # moved or removed by someone else (logrotate): write at the path
                fd = self._reopen(fd, keep, rotate=False)
                stat = os.fstat(fd)
            if stat.st_size and stat.st_size + len(line) > self.max_bytes:
                fd = self._reopen(fd, keep, rotate=True)
            os.write(fd, line)
            if self.fsync:
                os.fsync(fd)
        finally:
            if not keep:  # closed: opened for this line only
                os.close(fd)

    def _is_current(self, stat: os.stat_result) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == (stat.st_dev, stat.st_ino)

    def _reopen(self, fd: int, keep: bool, *, rotate: bool) -> int:
        os.close(fd)
        if keep:
            self._fd = None  # should what follows fail, the next line opens the file again
        if rotate:
            if self.backups == 0:
                self.path.unlink(missing_ok=True)
            else:
                for index in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{index}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        fd = self._open()
        if keep:
            self._fd = fd
        return fd

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DecisionLog({str(self.path)!r}, max_bytes={self.max_bytes}, backups={self.backups})"


def call_record(
    decision: Decision,
    served_by: str | None,
    reading: EnergyReading | None,
    usage: Mapping[str, Any] | None,
    generated_tokens: int | None,
    run_id: str | None,
    failures: Sequence[Mapping[str, Any]] = (),
    busy: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One call's line: the decision, every candidate's predictions, and the measurement of ``served_by``."""
    measured = None
    if reading is not None:
        output_tokens = (usage or {}).get("output_tokens")
        measured = {
            "output_tokens": output_tokens if isinstance(output_tokens, int) else None,
            "generated_tokens": generated_tokens,
            "runtime_s": reading.runtime_s,
            "energy_j": reading.energy_j,
            "method": reading.method,
            "is_estimate": reading.is_estimate,
            "flags": list(reading.flags),
        }
    caps = decision.max_output_tokens
    return {
        **_stamp("call"),
        "run_id": run_id,
        "chosen": decision.model,
        "served_by": served_by,
        "forced": decision.forced,
        "weights": decision.weights.as_dict(),
        "normalization": decision.normalization,
        "explored": dict(decision.explored) if decision.explored is not None else None,
        "task_type": decision.task_type,
        "max_output_tokens": dict(caps) if isinstance(caps, Mapping) else caps,
        "profile_energy_method": decision.energy_method,
        "note": decision.note,
        "ranking": list(decision.ranking),
        "candidates": {name: _candidate(c) for name, c in decision.candidates.items()},
        "measured": measured,
        "failures": [
            {key: f.get(key) for key in ("model", "error_type", "runtime_s", "energy_j", "method")} for f in failures
        ],
        "busy": dict(busy or {}),
    }


def _candidate(candidate: Candidate) -> dict[str, Any]:
    out = {key: getattr(candidate, key) for key in _CANDIDATE_KEYS}
    out["flags"] = list(candidate.flags)
    out["sources"] = dict(candidate.sources)
    return out


def _stamp(event: str) -> dict[str, Any]:
    now = time.time()
    iso = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"schema": SCHEMA_VERSION, "event": event, "time": iso, "time_unix_s": round(now, 3)}


def _jsonable(value: Any) -> Any:
    """Numbers numpy hands out, tuples in options: whatever ``json`` cannot write is written as text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)
