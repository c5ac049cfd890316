"""Small data degrades with a stated fallback instead of failing: `evaluate` on a 40-prompt matrix."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_energyrouter.cli import main

from .conftest import REPO

MATRIX = REPO / "calibration" / "outcomes" / "packaged-models.jsonl"
PROFILE = REPO / "calibration" / "profiles" / "cpu-reference.json"


def _first_prompts(tmp_path: Path, prompts: int) -> Path:
    rows = [json.loads(line) for line in MATRIX.read_text().splitlines()]
    keep = list(dict.fromkeys(r["prompt_id"] for r in rows))[:prompts]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["prompt_id"] in keep))
    return path


def test_evaluate_on_a_small_matrix_falls_back_to_task_means_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = _first_prompts(tmp_path, 40)  # 20 training rows per model, below the default 30
    args = ["evaluate", "--matrix", str(matrix), "--profile", str(PROFILE), "--encoder", "hashing", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert any("per-prompt predictor was not trained" in note and "--min-rows" in note for note in report["notes"])
    assert main([*args, "--min-rows", "10"]) == 0  # trained on fewer rows when asked
    report = json.loads(capsys.readouterr().out)
    assert not any("was not trained" in note for note in report["notes"])


def test_an_output_length_fit_off_by_more_than_100_percent_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Answers of 1 or 200 tokens whatever the prompt: no line through them predicts a length well.
    lines = ["prompt_id,input_tokens,output_tokens,runtime_seconds,energy_joules"]
    for i in range(24):
        tin, tout = 16 + 8 * i, (1 if i % 2 else 200)
        runtime = 0.1 + 0.001 * tin + 0.02 * tout
        lines.append(f"{i},{tin},{tout},{runtime:.4f},{2 * runtime:.4f}")
    raw = tmp_path / "m.csv"
    raw.write_text("\n".join(lines) + "\n")
    out = tmp_path / "p.json"
    assert (
        main(
            [
                "fit",
                "--raw",
                f"m={raw}",
                "--accuracy",
                "m=0.5",
                "--out",
                str(out),
                "--censored-at",
                "none",
                "--energy-method",
                "estimate",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "the output-length fit is off by" in err and "answer lengths are predicted poorly" in err, err


def test_fit_warnings_of_tiny_designs_do_not_leak(tmp_path: Path) -> None:
    # In a fresh process (statsmodels not imported yet): its import used to put an "always" filter in front of
    # the fit's "ignore", so SingularMatrixWarning reached the user's terminal on a replay of a small trace.
    trace = gzip.decompress((REPO / "calibration" / "traces" / "cpu-reference" / "smollm2-135m.csv.gz").read_bytes())
    raw = tmp_path / "m.csv"
    raw.write_text("".join(trace.decode().splitlines(keepends=True)[:9]))  # 8 rows: a 3-row prior
    code = f"from langchain_energyrouter.cli import main; raise SystemExit(main(['replay', '--raw', 'm={raw}']))"
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
