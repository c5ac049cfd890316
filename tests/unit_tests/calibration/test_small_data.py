"""Small data degrades with a stated fallback instead of failing: `evaluate` on a 40-prompt matrix."""

from __future__ import annotations

import json
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
