"""`energyrouter replay`: a slice of a real trace through the online learner, static vs online."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from langchain_energyrouter.calibration.rawdata import read_raw
from langchain_energyrouter.calibration.replay import replay_trace
from langchain_energyrouter.cli import main

from .conftest import TRACES

SLICE_ROWS = 2500


def _slice(tmp_path: Path, file: str, rows: int = SLICE_ROWS, method: str | None = None) -> Path:
    """The first ``rows`` rows of a packaged trace (optionally with an energy_method column)."""
    with gzip.open(TRACES / file, "rt", encoding="utf-8") as handle:
        lines = [next(handle).rstrip("\n") for _ in range(rows + 1)]
    if method is not None:
        lines = [lines[0] + ",energy_method", *(line + f",{method}" for line in lines[1:])]
    path = tmp_path / f"{rows}-{file.removesuffix('.gz')}"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_json_shape_on_a_real_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    phi = _slice(tmp_path, "phi-3-mini-4k-instruct.csv.gz")
    mistral = _slice(tmp_path, "mistral-7B-instruct-v0.2.csv.gz", rows=1500)
    code = main(["replay", "--raw", f"phi-3-mini={phi}", "--raw", f"mistral-7b={mistral}", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(out) == {"models"}
    assert set(out["models"]) == {"phi-3-mini", "mistral-7b"}
    for name, rows in (("phi-3-mini", SLICE_ROWS), ("mistral-7b", 1500)):
        model = out["models"][name]
        assert model["rows_prior"] == int(0.2 * rows)
        assert model["rows_replayed"] == rows - int(0.2 * rows)
        for target in ("runtime", "energy"):
            assert set(model[target]) == {"static", "online"}
            for kind in ("static", "online"):
                assert set(model[target][kind]) == {"mape", "bias"}
                assert all(math.isfinite(v) and v > 0 for v in model[target][kind].values())
            # Learning from every call beats the frozen prior on average, and stays unbiased.
            assert model[target]["online"]["mape"] < model[target]["static"]["mape"]
            assert model[target]["online"]["bias"] == pytest.approx(1.0, abs=0.05)


def test_replay_table_and_prior_fraction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    falcon = _slice(tmp_path, "falcon-7b-instruct.csv.gz", rows=800)
    assert main(["replay", "--raw", f"falcon-7b={falcon}", "--prior-fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "online MAPE" in out and "static bias" in out
    assert out.count("falcon-7b  ") == 2  # runtime and energy rows
    assert "400/400" in out


def test_replay_rows_of_another_method_do_not_train_energy(tmp_path: Path) -> None:
    path = _slice(tmp_path, "phi-3-mini-4k-instruct.csv.gz", rows=600, method="nvml_poll")
    lines = path.read_text().splitlines()
    # The last 100 rows were "estimated" (e.g. the GPU meter failed): their joules must not train energy.
    lines[-100:] = [line.replace(",nvml_poll", ",estimate") for line in lines[-100:]]
    path.write_text("\n".join(lines) + "\n")
    result = replay_trace("phi-3-mini", read_raw(path))
    assert result.rows_replayed == 480
    assert result.energy_rows_learned == 380


@pytest.mark.parametrize(
    ("rows", "args", "needle"),
    [
        (200, ["--prior-fraction", "1.5"], "--prior-fraction 1.5"),
        (3, ["--prior-fraction", "0.5"], "at least 3 needed"),  # 3 rows: a prior and nothing to replay
    ],
)
def test_replay_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: int, args: list[str], needle: str
) -> None:
    path = _slice(tmp_path, "phi-3-mini-4k-instruct.csv.gz", rows=rows)
    code = main(["replay", "--raw", f"phi={path}", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize(("rows", "prior_rows"), [(20, 4), (8, 3)])
def test_a_small_trace_replays_with_a_stated_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: int, prior_rows: int
) -> None:
    # A README-sized calibration: 20 rows give the prior 4 (too few to cross-validate), 8 rows give it 1.
    path = _slice(tmp_path, "phi-3-mini-4k-instruct.csv.gz", rows=rows)
    assert main(["replay", "--raw", f"phi={path}"]) == 0
    out = capsys.readouterr().out
    assert f"{prior_rows}/{rows - prior_rows}" in out
    assert "fell back to least squares without the interaction term" in out and "in-sample" in out
    assert ("it got the first 3" in out) == (rows == 8)
