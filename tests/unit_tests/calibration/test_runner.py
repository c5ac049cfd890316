"""The profiling loop resumes after a crash and never measures a cell twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from langchain_energyrouter.calibration.design import SuiteItem, grid_cells
from langchain_energyrouter.calibration.rawdata import read_raw
from langchain_energyrouter.calibration.runner import RunSettings, read_outputs, run_model
from langchain_energyrouter.energy import EstimateMeter

SUITE = [SuiteItem("a", "Say hi."), SuiteItem("b", "What is two plus two?", ("4",), "contains", "arithmetic")]


class _Crash(Exception):
    pass


def _settings() -> RunSettings:
    return RunSettings(input_lengths=(8, 24), output_lengths=(2, 5), repetitions=2, warmup=1, natural_max_new_tokens=6)


def test_exception_after_k_rows_then_rerun_completes_only_missing(tmp_path: Path) -> None:
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    path = tmp_path / "tiny.csv"

    def crash(rows: int) -> None:
        if rows == 3:
            raise _Crash

    with EstimateMeter() as meter, pytest.raises(_Crash):
        run_model("tiny", model, tokenizer, meter, path, _settings(), SUITE, after_row=crash)
    assert len(read_raw(path).frame) == 3
    with EstimateMeter() as meter:
        result = run_model("tiny", model, tokenizer, meter, path, _settings(), SUITE)
    total = len(grid_cells((8, 24), (2, 5), 2, 1024)[0]) + len(SUITE)
    assert result.skipped == 3 and result.measured == total - 3
    frame = read_raw(path).frame
    assert len(frame) == total and frame["design_cell"].is_unique
    grid = frame[frame["design_cell"].str.startswith("grid:")]
    assert (grid["output_tokens"] == grid["design_cell"].str.extract(r"out=(\d+)")[0].astype(int)).all()
    assert (grid["input_tokens"] == grid["design_cell"].str.extract(r"in=(\d+)")[0].astype(int)).all()
    assert set(read_outputs(result.outputs_path)) == {"a", "b"}
    assert frame["prompt_id"].is_unique


def test_sigkill_mid_run_loses_at_most_the_row_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    script = textwrap.dedent(f"""
        import time
        from langchain_energyrouter.calibration.runner import RunSettings, run_model
        from langchain_energyrouter.energy import EstimateMeter
        from langchain_energyrouter.testing import build_tiny_model_and_tokenizer
        model, tokenizer = build_tiny_model_and_tokenizer()
        settings = RunSettings(input_lengths=(8, 24), output_lengths=(2, 5), repetitions=3, warmup=0)
        run_model("tiny", model, tokenizer, EstimateMeter(), {str(path)!r}, settings,
                  after_row=lambda n: time.sleep(0.3))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_raw(path, warn=lambda m: None).frame)
    assert done_before >= 3
    with EstimateMeter() as meter:
        from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

        model, tokenizer = build_tiny_model_and_tokenizer()
        settings = RunSettings(input_lengths=(8, 24), output_lengths=(2, 5), repetitions=3, warmup=0)
        result = run_model("tiny", model, tokenizer, meter, path, settings, warn=lambda m: None)
    assert result.skipped == done_before and result.measured == 12 - done_before
    frame = read_raw(path).frame
    assert len(frame) == 12 and frame["design_cell"].is_unique


def test_time_budget_stops_and_says_so(tmp_path: Path) -> None:
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    settings = _settings()
    settings.budget_s = 0.0
    messages: list[str] = []
    with EstimateMeter() as meter:
        result = run_model("tiny", model, tokenizer, meter, tmp_path / "t.csv", settings, SUITE, warn=messages.append)
    assert result.measured == 0 and result.not_run > 0
    assert any("budget" in m for m in messages)
