"""``energyrouter report LOG``: what a decision log says about a deployment, over time.

Reads the JSONL a router writes with ``decision_log=`` (:mod:`langchain_energyrouter.router.decision_log`)
and computes, over the whole log and per time bin:

- **share per model**: which candidate served the calls;
- **prediction error** of the model that served each call, for answer length (output tokens), runtime and
  energy: ``medape`` (median of ``|predicted - measured| / measured``) and ``bias`` (summed predictions over
  summed measurements: above 1 the router expects more than it gets);
- **energy against counterfactuals**: the joules measured, the joules predicted for the router's choices, and
  the joules predicted had every call gone to the most accurate candidate (by that call's predicted accuracy)
  or to the cheapest (least predicted joules). Counterfactuals are *predictions* (nobody ran them), so the
  like-for-like comparison is with the routed calls' predicted joules;
- **exploration spent**: calls routed away from the best-scored candidate, the extra joules expected then,
  and the joules those calls measured;
- **feedback**: the scores given (the measured side of accuracy), per model.

A line that is not JSON (the last one of a log cut by a crash) is skipped and counted; the figures say how
many calls they rest on. :mod:`~langchain_energyrouter.calibration.decision_plot` draws the same figures.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

from langchain_energyrouter.errors import CalibrationError

__all__ = ["CallRow", "DecisionLogData", "build_report", "format_report", "read_decision_log"]

READABLE_SCHEMA = 1
"""The newest line layout this reader understands (``schema`` of :mod:`langchain_energyrouter.router.decision_log`)."""

QUANTITIES = ("length", "runtime", "energy")
"""What the error figures are computed for: output tokens, seconds, joules."""


@dataclass(frozen=True, slots=True)
class CallRow:
    """One answered call of the log, reduced to what the report uses."""

    time_unix_s: float
    run_id: str | None
    served_by: str
    chosen: str
    explored: bool
    expected_extra_energy_j: float
    method: str
    flags: tuple[str, ...]
    predicted: Mapping[str, float | None]
    """Predictions for the model that served: ``{"length", "runtime", "energy"}``."""
    measured: Mapping[str, float | None]
    """Its measurement (energy None when not measured locally)."""
    most_accurate_energy_j: float | None
    """Predicted joules of the candidate with the highest predicted accuracy for this call."""
    cheapest_energy_j: float | None
    """The least predicted joules among the candidates."""


@dataclass
class DecisionLogData:
    """What a log holds: answered calls (by time), failed calls, feedback, and lines that could not be read."""

    calls: list[CallRow] = field(default_factory=list)
    failed: int = 0
    feedback: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """``file:line: why`` of each line skipped."""


def read_decision_log(paths: Sequence[str | os.PathLike[str]]) -> DecisionLogData:
    """Read one or more decision logs (a log and its rotated files, in any order; calls are sorted by time).

    Raises:
        CalibrationError: a file is missing, or no line of any file is a call.
    """
    data = DecisionLogData()
    for path in paths:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise CalibrationError(f"Cannot read decision log {file}: {err}. Pass the file the router wrote.") from err
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                _read_line(data, line, f"{file}:{number}")
    data.calls.sort(key=lambda row: row.time_unix_s)
    if not data.calls:
        skipped = f" ({len(data.skipped)} line(s) skipped, first: {data.skipped[0]})" if data.skipped else ""
        raise CalibrationError(
            f"No answered call in {', '.join(str(p) for p in paths)}{skipped}. Is it the file given to "
            "decision_log= / --decision-log, and has the router served a call since?"
        )
    return data


def _read_line(data: DecisionLogData, line: str, where: str) -> None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        data.skipped.append(f"{where}: not JSON (a line cut short by a crash?)")
        return
    if not isinstance(record, dict) or not isinstance(record.get("schema"), int):
        data.skipped.append(f"{where}: not a decision-log record")
        return
    if record["schema"] > READABLE_SCHEMA:
        data.skipped.append(f"{where}: schema {record['schema']} is newer than this reader's {READABLE_SCHEMA}")
        return
    event = record.get("event")
    if event == "feedback":
        data.feedback.append(record)
    elif event == "failed":
        data.failed += 1
    elif event == "call":
        try:
            data.calls.append(_row(record))
        except (KeyError, TypeError, ValueError) as err:
            data.skipped.append(f"{where}: call record lacks {err}")
    else:
        data.skipped.append(f"{where}: unknown event {event!r}")


def _row(record: Mapping[str, Any]) -> CallRow:
    candidates: Mapping[str, Mapping[str, Any]] = record["candidates"]
    served = record["served_by"]
    own = candidates[served]
    measured = record["measured"]
    length = measured.get("output_tokens")
    if length is None:
        length = measured.get("generated_tokens")
    explored = record.get("explored") or None
    best = max(candidates.values(), key=lambda c: (c["accuracy"], -c["predicted_energy_j"]))
    return CallRow(
        time_unix_s=float(record["time_unix_s"]),
        run_id=record.get("run_id"),
        served_by=served,
        chosen=record["chosen"],
        explored=explored is not None,
        expected_extra_energy_j=float((explored or {}).get("expected_extra_energy_j") or 0.0),
        method=str(measured.get("method")),
        flags=tuple(measured.get("flags") or ()),
        predicted={
            "length": own["predicted_output_tokens"],
            "runtime": own["predicted_runtime_s"],
            "energy": own["predicted_energy_j"],
        },
        measured={"length": length, "runtime": measured.get("runtime_s"), "energy": measured.get("energy_j")},
        most_accurate_energy_j=best["predicted_energy_j"],
        cheapest_energy_j=min(c["predicted_energy_j"] for c in candidates.values()),
    )


# -- figures --------------------------------------------------------------------------
def prediction_error(rows: Iterable[CallRow], quantity: str) -> dict[str, Any]:
    """``{"n", "medape", "bias"}`` of the served model's predictions of ``quantity`` (pairs with a positive
    measurement only; None where there is none)."""
    pairs = [
        (float(row.predicted[quantity]), float(m))  # type: ignore[arg-type]
        for row in rows
        if row.predicted[quantity] is not None and (m := row.measured[quantity]) is not None and m > 0
    ]
    if not pairs:
        return {"n": 0, "medape": None, "bias": None}
    return {
        "n": len(pairs),
        "medape": median(abs(p - m) / m for p, m in pairs),
        "bias": sum(p for p, _ in pairs) / sum(m for _, m in pairs),
    }


def _bins(calls: Sequence[CallRow], count: int) -> list[list[CallRow]]:
    """``count`` equal spans of time from the first call to the last (empty spans dropped)."""
    start, end = calls[0].time_unix_s, calls[-1].time_unix_s
    width = (end - start) / count if end > start else 1.0
    bins: list[list[CallRow]] = [[] for _ in range(count)]
    for row in calls:
        bins[min(int((row.time_unix_s - start) / width), count - 1)].append(row)
    return [b for b in bins if b]


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def build_report(data: DecisionLogData, *, bins: int | None = None) -> dict[str, Any]:
    """Every figure of the report as a JSON-able dict (what ``--json`` prints and the plot draws).

    Args:
        data: from :func:`read_decision_log`.
        bins: time bins (None: one per 25 calls, 1 to 12).
    """
    calls = data.calls
    count = bins if bins is not None else max(1, min(12, len(calls) // 25))
    if count < 1:
        raise CalibrationError(f"--bins {count}: give at least 1 time bin.")
    start = calls[0].time_unix_s
    models = sorted({row.served_by for row in calls} | {row.chosen for row in calls})
    measured_j = [row.measured["energy"] for row in calls]
    routed_predicted = sum(float(row.predicted["energy"] or 0.0) for row in calls)
    explored = [row for row in calls if row.explored]
    per_bin = []
    for rows in _bins(calls, count):
        served = Counter(row.served_by for row in rows)
        per_bin.append(
            {
                "start_min": (rows[0].time_unix_s - start) / 60,
                "end_min": (rows[-1].time_unix_s - start) / 60,
                "calls": len(rows),
                "share": {name: served[name] / len(rows) for name in models},
                "error": {q: prediction_error(rows, q) for q in QUANTITIES},
                "explored": sum(row.explored for row in rows),
            }
        )
    served_all = Counter(row.served_by for row in calls)
    served_run = {row.run_id: row.served_by for row in calls}
    scores: dict[str, list[float]] = {}
    for record in data.feedback:  # the measured side of accuracy, by the model that answered the run
        name = served_run.get(record.get("run_id"), "(run not in this log)")
        scores.setdefault(name, []).append(float(record.get("score", math.nan)))
    return {
        "calls": len(calls),
        "failed_calls": data.failed,
        "skipped_lines": len(data.skipped),
        "skipped": data.skipped[:10],
        "first_time": _iso(start),
        "last_time": _iso(calls[-1].time_unix_s),
        "duration_min": (calls[-1].time_unix_s - start) / 60,
        "energy_methods": dict(Counter(row.method for row in calls)),
        "flags": dict(Counter(flag for row in calls for flag in row.flags)),
        "models": {
            name: {
                "calls": served_all[name],
                "share": served_all[name] / len(calls),
                "measured_energy_j": _sum(row.measured["energy"] for row in calls if row.served_by == name),
            }
            for name in models
        },
        "error": {q: prediction_error(calls, q) for q in QUANTITIES},
        "energy": {
            "measured_j": _sum(measured_j),
            "measured_calls": sum(v is not None for v in measured_j),
            "routed_predicted_j": routed_predicted,
            "always_most_accurate_predicted_j": sum(float(row.most_accurate_energy_j or 0.0) for row in calls),
            "always_cheapest_predicted_j": sum(float(row.cheapest_energy_j or 0.0) for row in calls),
        },
        "exploration": {
            "explored_calls": len(explored),
            "share": len(explored) / len(calls),
            "expected_extra_energy_j": sum(row.expected_extra_energy_j for row in explored),
            "measured_energy_j": _sum(row.measured["energy"] for row in explored),
        },
        "feedback": {
            name: {"scores": len(values), "mean_score": sum(values) / len(values)}
            for name, values in sorted(scores.items())
        },
        "bins": per_bin,
    }


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- the table --------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _joules(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} J"


def format_report(report: Mapping[str, Any]) -> str:
    """The report as the table ``energyrouter report`` prints."""
    lines = [
        f"Decision log: {report['calls']} answered calls, {report['failed_calls']} failed, "
        f"{report['skipped_lines']} line(s) skipped; {report['first_time']} to {report['last_time']} "
        f"({report['duration_min']:.1f} min)",
        "Energy method: "
        + ", ".join(f"{m} ({n})" for m, n in report["energy_methods"].items())
        + ("; flags: " + ", ".join(f"{f} ({n})" for f, n in report["flags"].items()) if report["flags"] else ""),
        "",
        "Share of calls per model",
        f"  {'model':<22}{'calls':>7}{'share':>8}{'measured':>14}",
    ]
    for name, row in report["models"].items():
        lines.append(f"  {name:<22}{row['calls']:>7}{_pct(row['share']):>8}{_joules(row['measured_energy_j']):>14}")
    lines += [
        "",
        "Prediction error of the model that served (medAPE: median |predicted - measured| / measured;",
        "bias: summed predictions / summed measurements, above 1 = predicted more than measured)",
        f"  {'minutes':<14}{'calls':>6}" + "".join(f"{q + ' medAPE':>16}{'bias':>6}" for q in QUANTITIES),
    ]
    rows = [("all", report["calls"], report["error"])]
    rows += [(f"{b['start_min']:.1f}-{b['end_min']:.1f}", b["calls"], b["error"]) for b in report["bins"]]
    for label, calls, error in rows:
        cells = "".join(f"{_pct(error[q]['medape']):>16}{_ratio(error[q]['bias']):>6}" for q in QUANTITIES)
        lines.append(f"  {label:<14}{calls:>6}{cells}")
    energy = report["energy"]
    routed = energy["routed_predicted_j"]
    lines += [
        "",
        "Energy against counterfactuals (counterfactuals are predicted from the logged predictions: nobody ran them)",
        f"  {'routed, measured':<36}{_joules(energy['measured_j']):>14}  ({energy['measured_calls']} calls measured)",
        f"  {'routed, predicted':<36}{_joules(routed):>14}",
    ]
    for key, label in (
        ("always_most_accurate_predicted_j", "always the most accurate, predicted"),
        ("always_cheapest_predicted_j", "always the cheapest, predicted"),
    ):
        other = energy[key]
        change = ""
        if other:
            ratio = 100 * (routed - other) / other
            change = f"routed uses {abs(ratio):.0f}% {'less' if ratio < 0 else 'more'} (predicted vs predicted)"
        lines.append(f"  {label:<36}{_joules(other):>14}  {change}")
    overlapped = report["flags"].get("overlapped", 0)
    if overlapped:
        lines.append(
            f"  ({overlapped} call(s) shared their device with another: each counts the shared joules, so the "
            "measured total is an upper bound)"
        )
    exploration = report["exploration"]
    lines += [
        "",
        f"Exploration: {exploration['explored_calls']} call(s) ({_pct(exploration['share'])}) routed away from the "
        f"best-scored model; expected extra {_joules(exploration['expected_extra_energy_j'])} (predicted), "
        f"those calls measured {_joules(exploration['measured_energy_j'])}",
    ]
    if report["feedback"]:
        lines.append(
            "Feedback (measured accuracy): "
            + "; ".join(
                f"{name}: {row['scores']} score(s), mean {row['mean_score']:.2f}"
                for name, row in report["feedback"].items()
            )
        )
    return "\n".join(lines)
