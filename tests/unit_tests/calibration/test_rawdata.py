"""Raw CSVs: durable appends, resume bookkeeping, trailing-line repair, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_energyrouter.calibration.rawdata import COLUMNS, RawRow, RawWriter, read_raw, repair_trailing_line
from langchain_energyrouter.errors import CalibrationError


def _row(i: int, cell: str) -> RawRow:
    return RawRow(i, 16, 4, 0.5, 2.0, "estimate", "2026-01-01T00:00:00+00:00", cell)


def test_writer_appends_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    with RawWriter(path, print) as writer:
        writer.append(_row(1, "grid:in=16,out=4,rep=1"))
        writer.append(_row(2, "natural:a"))
    with RawWriter(path, print) as writer:
        assert set(writer.done_cells) == {"grid:in=16,out=4,rep=1", "natural:a"}
        assert writer.next_prompt_id == 3
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 3
    assert '"grid:in=16,out=4,rep=1"' in lines[1]


def test_partial_trailing_line_is_truncated_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    with RawWriter(path, print) as writer:
        writer.append(_row(1, "natural:a"))
    good = path.read_bytes()
    path.write_bytes(good + b"2,16,4,0.5,2.0,estim")
    messages: list[str] = []
    removed = repair_trailing_line(path, messages.append)
    assert removed == len(b"2,16,4,0.5,2.0,estim")
    assert path.read_bytes() == good
    assert "corrupt last line" in messages[0]


def test_complete_line_with_wrong_field_count_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    with RawWriter(path, print) as writer:
        writer.append(_row(1, "natural:a"))
    good = path.read_bytes()
    path.write_bytes(good + b"2,16\n")
    messages: list[str] = []
    with RawWriter(path, messages.append) as writer:
        assert list(writer.done_cells) == ["natural:a"]
    assert path.read_bytes() == good and messages


def test_read_raw_counts_dropped_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "prompt_id,input_tokens,output_tokens,runtime_seconds,energy_joules\n"
        "1,10,20,1.0,100\n2,10,20,0,100\n3,10,,1.0,100\n4,10,20,-1,100\n5,11,21,1.1,110\n"
    )
    raw = read_raw(path)
    assert len(raw.frame) == 2 and raw.rows_dropped == 3 and raw.rows_total == 5
    assert raw.drop_reasons == {"non-numeric or NaN": 1, "runtime <= 0": 2}


def test_read_raw_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("prompt_id,input_tokens,output_tokens,runtime_s,energy_joules\n1,1,1,1,1\n")
    with pytest.raises(CalibrationError, match="no column 'runtime_seconds'"):
        read_raw(path)


def test_read_original_trace_gz() -> None:
    root = Path(__file__).resolve().parents[3] / "calibration" / "traces" / "original"
    raw = read_raw(root / "mistral-7B-instruct-v0.2.csv.gz")
    assert raw.rows_total == 48521 and raw.rows_dropped == 0
