"""``energyrouter report``: exact figures on a hand-written log, and the table and plot of a real router's log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langchain_energyrouter.calibration.decision_report import (
    READABLE_SCHEMA,
    build_report,
    format_report,
    read_decision_log,
)
from langchain_energyrouter.cli import main
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.router.decision_log import SCHEMA_VERSION


def _candidate(tokens: float, runtime_s: float, energy_j: float, accuracy: float) -> dict[str, Any]:
    return {
        "predicted_output_tokens": tokens,
        "predicted_runtime_s": runtime_s,
        "predicted_energy_j": energy_j,
        "accuracy": accuracy,
    }


def _call(t: float, served: str, measured: tuple[int, float, float], *, explored: float | None = None) -> str:
    # "big" is the most accurate and dearest; "small" the cheapest. Predictions: big 10 tok/2 s/20 J, small 4/1/5.
    record = {
        "schema": 1,
        "event": "call",
        "time_unix_s": t,
        "run_id": f"run-{t}",
        "chosen": served,
        "served_by": served,
        "explored": {"from": "small", "expected_extra_energy_j": explored} if explored is not None else None,
        "candidates": {"big": _candidate(10, 2.0, 20.0, 0.8), "small": _candidate(4, 1.0, 5.0, 0.4)},
        "measured": {
            "output_tokens": measured[0],
            "runtime_s": measured[1],
            "energy_j": measured[2],
            "method": "rapl",
            "flags": [],
        },
    }
    return json.dumps(record)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    lines = [
        _call(0.0, "big", (5, 1.0, 10.0)),  # predicted 10/2/20 against 5/1/10: error 100%, bias 2
        _call(60.0, "small", (4, 2.0, 10.0), explored=None),  # 4/1/5 against 4/2/10: 0%, 50%, 50%
        _call(120.0, "big", (20, 4.0, 40.0), explored=15.0),  # 10/2/20 against 20/4/40: 50% each
        _call(180.0, "small", (2, 0.5, 2.5)),  # 4/1/5 against 2/.5/2.5: 100% each
        json.dumps({"schema": 1, "event": "feedback", "run_id": "run-0.0", "score": 1.0}),
        json.dumps({"schema": 1, "event": "feedback", "run_id": "run-60.0", "score": 0.0}),
        json.dumps({"schema": 1, "event": "failed", "time_unix_s": 200.0}),
        json.dumps({"schema": 99, "event": "call"}),
        '{"schema": 1, "event": "call", "time_unix_s": 2',  # cut short by a crash
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_exact_figures(log: Path) -> None:
    data = read_decision_log([log])
    report = build_report(data, bins=2)
    assert (report["calls"], report["failed_calls"], report["skipped_lines"]) == (4, 1, 2)
    assert "schema 99 is newer" in report["skipped"][0] and "not JSON" in report["skipped"][1]
    assert report["models"]["big"] == {"calls": 2, "share": 0.5, "measured_energy_j": 50.0}
    length, runtime, energy = (report["error"][q] for q in ("length", "runtime", "energy"))
    assert length == {"n": 4, "medape": pytest.approx(0.75), "bias": pytest.approx(28 / 31)}
    assert runtime["medape"] == pytest.approx(0.75) and runtime["bias"] == pytest.approx(6 / 7.5)
    assert energy["medape"] == pytest.approx(0.75) and energy["bias"] == pytest.approx(50 / 62.5)
    assert report["energy"] == {
        "measured_j": 62.5,
        "measured_calls": 4,
        "routed_predicted_j": 50.0,
        "always_most_accurate_predicted_j": 80.0,
        "always_cheapest_predicted_j": 20.0,
    }
    assert report["exploration"] == {
        "explored_calls": 1,
        "share": 0.25,
        "expected_extra_energy_j": 15.0,
        "measured_energy_j": 40.0,
    }
    first, second = report["bins"]
    assert (first["calls"], second["calls"]) == (2, 2)
    assert first["share"] == {"big": 0.5, "small": 0.5}
    assert first["error"]["energy"]["bias"] == pytest.approx(25 / 20)
    assert second["error"]["energy"]["bias"] == pytest.approx(25 / 42.5)
    assert report["feedback"] == {
        "big": {"scores": 1, "mean_score": 1.0},
        "small": {"scores": 1, "mean_score": 0.0},
    }
    table = format_report(report)
    assert "always the most accurate, predicted" in table and "routed uses 38% less" in table
    assert "always the cheapest, predicted" in table and "routed uses 150% more" in table


def test_unreadable_logs_say_so(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="Cannot read decision log"):
        read_decision_log([tmp_path / "missing.jsonl"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"schema": 1, "event": "feedback", "run_id": "x", "score": 1}\nnot json\n')
    with pytest.raises(CalibrationError, match=r"No answered call .*1 line\(s\) skipped"):
        read_decision_log([empty])


def test_the_reader_reads_what_the_writer_writes() -> None:
    assert READABLE_SCHEMA == SCHEMA_VERSION


def test_the_command_on_a_real_router_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_energyrouter import EnergyAwareRouter
    from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

    path = tmp_path / "d.jsonl"
    router = EnergyAwareRouter(
        models=tiny_chat_models(max_new_tokens=4),
        energy_profile=tiny_profile(),
        decision_log={"path": path, "max_bytes": 8192, "backups": 5},  # small: the log rotates
        exploration={"share": 1.0, "max_extra_energy_share": 10.0, "seed": 1, "prior_log_sd": 3.0},
    )
    weights = [None, {"energy": 1.0}, {"accuracy": 1.0}]
    for i in range(30):
        router.invoke(f"Question {i}: what is {i} + {i}?", weights=weights[i % 3])
    router.close()
    logs = sorted(tmp_path.glob("d.jsonl*"))
    assert len(logs) > 1
    png = tmp_path / "plots" / "report.png"
    assert main(["report", *map(str, logs), "--plot", str(png), "--bins", "3"]) == 0
    out, err = capsys.readouterr()
    assert "Decision log: 30 answered calls, 0 failed, 0 line(s) skipped" in out
    assert "always the cheapest, predicted" in out and f"wrote {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert main(["report", *map(str, logs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 30 and sum(m["calls"] for m in report["models"].values()) == 30
    assert report["exploration"]["explored_calls"] == router.exploration_stats().explored  # type: ignore[union-attr]
    assert report["energy"]["measured_calls"] == 30 and report["energy_methods"] == {"estimate": 30}


def test_bad_bins_and_missing_files_are_one_line_errors(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(log), "--bins", "0"]) == 1
    assert "--bins 0: give at least 1 time bin" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope.jsonl")]) == 1
    assert "Cannot read decision log" in capsys.readouterr().err
