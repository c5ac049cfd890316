"""Raw measurement CSVs: the row format, a crash-safe appender, reading, validation, repair.

One CSV per model, in the original project's format plus four columns::

    prompt_id,input_tokens,output_tokens,runtime_seconds,energy_joules,energy_method,timestamp,design_cell,in_flight

``in_flight`` is the number of requests running on the model during the row's
request, this one included (``calibrate --concurrency``); files written before it
existed, and the original's traces (only the first five columns), mean 1.
:func:`read_raw` accepts all of them (and ``.csv.gz``). :class:`RawWriter` writes each row with one ``write``,
then flushes and fsyncs, so a crash or Ctrl-C loses at most the row in flight; a
partial trailing line left by such a crash is found by :func:`repair_trailing_line`
and truncated away (with a message), never parsed.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.errors import CalibrationError

if TYPE_CHECKING:
    import pandas as pd

BASE_COLUMNS: tuple[str, ...] = ("prompt_id", "input_tokens", "output_tokens", "runtime_seconds", "energy_joules")
"""The original project's columns, in order."""
LEGACY_COLUMNS: tuple[str, ...] = (*BASE_COLUMNS, "energy_method", "timestamp", "design_cell")
"""The columns written before ``in_flight`` existed (rows there mean one request in flight)."""
COLUMNS: tuple[str, ...] = (*LEGACY_COLUMNS, "in_flight")
"""The columns this package writes, in order."""
_CELL = LEGACY_COLUMNS.index("design_cell")
NUMERIC_COLUMNS: tuple[str, ...] = ("input_tokens", "output_tokens", "runtime_seconds", "energy_joules")
"""Columns every raw file must have (``prompt_id`` is optional when reading)."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """One measured generation."""

    prompt_id: int
    input_tokens: int
    output_tokens: int
    runtime_seconds: float
    energy_joules: float
    energy_method: str
    timestamp: str
    design_cell: str
    in_flight: int = 1
    """Requests running on the model during this one, this one included."""

    def as_line(self, legacy: bool = False) -> str:
        """The CSV line; ``legacy`` omits ``in_flight`` (for files with :data:`LEGACY_COLUMNS`)."""
        buffer = io.StringIO()
        fields: list[object] = [
            self.prompt_id,
            self.input_tokens,
            self.output_tokens,
            f"{self.runtime_seconds:.6f}",
            f"{self.energy_joules:.6f}",
            self.energy_method,
            self.timestamp,
            self.design_cell,
        ]
        if not legacy:
            fields.append(self.in_flight)
        csv.writer(buffer, lineterminator="\n").writerow(fields)
        return buffer.getvalue()


def repair_trailing_line(path: Path, warn: Callable[[str], None]) -> int:
    """Truncate a partial or unparsable last line of a raw CSV we wrote; return bytes removed.

    A line is complete when it ends in a newline and has as many fields as the header.
    Only the *last* line is ever repaired: damage further up raises, since that is
    not what an interrupted append leaves behind.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    data = path.read_bytes()
    cut = len(data)
    reason = ""
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        reason = "it has no line end (a write was interrupted)"
    else:
        start = data.rfind(b"\n", 0, len(data) - 1) + 1
        if start > 0:  # not the header
            header = data[: data.find(b"\n")].decode("utf-8", "replace")
            last = data[start:].decode("utf-8", "replace")
            try:
                fields = next(csv.reader([last.rstrip("\n")]))
            except (csv.Error, StopIteration):
                fields = []
            if len(fields) != len(header.split(",")):
                cut, reason = start, f"it has {len(fields)} fields, expected {len(header.split(','))}"
    if cut == len(data):
        return 0
    removed = len(data) - cut
    with open(path, "r+b") as handle:
        handle.truncate(cut)
        handle.flush()
        os.fsync(handle.fileno())
    warn(f"Repaired {path}: removed its corrupt last line ({removed} bytes; {reason}); that cell will be re-run.")
    return removed


class RawWriter:
    """Appends rows to one model's raw CSV; each row is flushed and fsync'd as written.

    Opening an existing file repairs a partial trailing line and checks the header;
    :attr:`done_cells` and :attr:`next_prompt_id` let a rerun resume where it stopped.
    """

    def __init__(self, path: str | os.PathLike[str], warn: Callable[[str], None]) -> None:
        self.path = Path(path)
        if self.path.suffix == ".gz":
            raise CalibrationError(
                f"Raw output {self.path} is gzip; calibrate writes plain .csv (compress afterwards)."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_trailing_line(self.path, warn)
        self.done_cells: dict[str, int] = {}
        self.next_prompt_id = 1
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.legacy = False
        """The file predates ``in_flight``: rows are appended without it (one request in flight only)."""
        if not fresh:
            with open(self.path, encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader, [])
                self.legacy = tuple(header) == LEGACY_COLUMNS
                if tuple(header) != COLUMNS and not self.legacy:
                    raise CalibrationError(
                        f"Raw file {self.path} has columns {header}, expected {list(COLUMNS)}. "
                        "Point --raw-dir elsewhere or move the file away."
                    )
                for lineno, fields in enumerate(reader, start=2):
                    if len(fields) != len(header):
                        raise CalibrationError(
                            f"Raw file {self.path} line {lineno} has {len(fields)} fields, expected {len(header)}; "
                            "fix or remove that line."
                        )
                    cell = fields[_CELL]
                    self.done_cells[cell] = self.done_cells.get(cell, 0) + 1
                    try:
                        self.next_prompt_id = max(self.next_prompt_id, int(fields[0]) + 1)
                    except ValueError:
                        pass
        self._handle = open(self.path, "a", encoding="utf-8", newline="")
        if fresh:
            self._write(",".join(COLUMNS) + "\n")

    def _write(self, text: str) -> None:
        self._handle.write(text)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def append(self, row: RawRow) -> None:
        """Write one row durably."""
        if self.legacy and row.in_flight != 1:
            raise CalibrationError(
                f"Raw file {self.path} predates the in_flight column, so it cannot hold a row measured with "
                f"{row.in_flight} requests in flight. Measure other --concurrency levels into another --raw-dir."
            )
        self._write(row.as_line(legacy=self.legacy))
        self.done_cells[row.design_cell] = self.done_cells.get(row.design_cell, 0) + 1
        self.next_prompt_id = max(self.next_prompt_id, row.prompt_id + 1)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> RawWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RawData:
    """A validated raw table and what was dropped from it."""

    frame: pd.DataFrame
    """Usable rows: numeric, finite, runtime > 0, energy > 0, tokens >= 0."""
    rows_total: int
    rows_dropped: int
    drop_reasons: dict[str, int]
    path: str


def parse_name_path(spec: str, what: str = "--raw") -> tuple[str, str]:
    """Split ``NAME=VALUE``; raise :class:`CalibrationError` showing the value when malformed."""
    name, sep, value = spec.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise CalibrationError(f"{what} {spec!r} is not NAME=VALUE (e.g. {what} phi-3-mini=traces/phi3.csv.gz).")
    return name.strip(), value.strip()


def read_raw(path: str | os.PathLike[str], warn: Callable[[str], None] | None = None) -> RawData:
    """Read a raw CSV (or .csv.gz), validate columns, and drop unusable rows, counting why.

    Raises:
        CalibrationError: missing file, unreadable CSV, a required column missing.
    """
    import pandas as pd

    file = Path(path)
    if not file.exists():
        raise CalibrationError(f"Raw file {file} does not exist; pass the path of a CSV written by calibrate.")
    if warn is not None and file.suffix != ".gz":
        repair_trailing_line(file, warn)
    try:
        opener: Any = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8", newline="") as handle:
            frame = pd.read_csv(handle)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CalibrationError(f"Raw file {file} cannot be read as CSV: {err}".replace("\n", " ")) from err
    missing = [c for c in NUMERIC_COLUMNS if c not in frame.columns]
    if missing:
        raise CalibrationError(
            f"Raw file {file} has no column {missing[0]!r} (columns: {list(frame.columns)}); "
            f"expected {list(BASE_COLUMNS)}."
        )
    total = len(frame)
    reasons: dict[str, int] = {}
    numeric = frame[list(NUMERIC_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad_nan = numeric.isna().any(axis=1) | ~numeric.apply(lambda c: c.abs() < float("inf")).all(axis=1)
    reasons["non-numeric or NaN"] = int(bad_nan.sum())
    bad_runtime = ~bad_nan & (numeric["runtime_seconds"] <= 0)
    reasons["runtime <= 0"] = int(bad_runtime.sum())
    bad_energy = ~bad_nan & ~bad_runtime & (numeric["energy_joules"] <= 0)
    reasons["energy <= 0"] = int(bad_energy.sum())
    bad_tokens = (
        ~bad_nan & ~bad_runtime & ~bad_energy & ((numeric["input_tokens"] < 0) | (numeric["output_tokens"] < 0))
    )
    reasons["negative token count"] = int(bad_tokens.sum())
    keep = ~(bad_nan | bad_runtime | bad_energy | bad_tokens)
    out = frame.loc[keep].copy()
    for column in NUMERIC_COLUMNS:
        out[column] = numeric.loc[keep, column].astype(float)
    if "design_cell" not in out.columns:
        out["design_cell"] = ""
    # files written before the in_flight column (and the original traces) ran one request at a time
    in_flight = pd.to_numeric(out["in_flight"], errors="coerce") if "in_flight" in out.columns else None
    out["in_flight"] = 1 if in_flight is None else in_flight.fillna(1).astype(int)
    out["design_cell"] = out["design_cell"].fillna("").astype(str)
    dropped = total - len(out)
    return RawData(
        frame=out.reset_index(drop=True),
        rows_total=total,
        rows_dropped=dropped,
        drop_reasons={k: v for k, v in reasons.items() if v},
        path=str(file),
    )
