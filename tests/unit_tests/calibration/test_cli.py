"""The `energyrouter` command through main([...]): errors are one line, exit 1, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_energyrouter.cli import main
from langchain_energyrouter.profile import EnergyProfile

from .conftest import PROFILES


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, needle: str) -> str:
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert needle in lines[0]
    return lines[0]


def test_fit_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(
        ["fit", "--raw", f"m={tmp_path / 'nope.csv'}", "--accuracy", "m=0.5", "--out", str(tmp_path / "p.json")]
    )
    _one_line_error(capsys, code, "does not exist")


def test_fit_bad_name_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["fit", "--raw", "just-a-path.csv", "--out", str(tmp_path / "p.json")])
    _one_line_error(capsys, code, "NAME=VALUE")


def test_fit_unknown_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,tin,tout,seconds,joules\n1,2,3,4,5\n")
    code = main(["fit", "--raw", f"m={bad}", "--accuracy", "m=0.5", "--out", str(tmp_path / "p.json")])
    _one_line_error(capsys, code, "no column")


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, main(["fit", "--no-such-option"]), "error")


def test_calibrate_unloadable_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["calibrate", str(tmp_path / "no-such-model-dir"), "--out", str(tmp_path / "p.json")])
    _one_line_error(capsys, code, "no-such-model-dir")


def test_explain_missing_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _one_line_error(capsys, main(["explain", "--profile", str(tmp_path / "x.json"), "hi"]), "does not exist")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        main(["fit", "--debug", "--raw", f"m={tmp_path / 'nope.csv'}", "--accuracy", "m=0.5", "--out", "x.json"])


def test_fit_writes_a_valid_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path, small_raw_csv: Path) -> None:
    out = tmp_path / "p.json"
    code = main(
        [
            "fit",
            "--raw",
            f"m={small_raw_csv}",
            "--accuracy",
            "m=0.6",
            "--context-window",
            "m=2048",
            "--energy-method",
            "nvml_counter",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    profile = EnergyProfile.load(out)
    mp = profile.models["m"]
    assert mp.accuracy == 0.6 and mp.context_window == 2048 and mp.output_length.source == "fitted"
    assert mp.runtime.fit is not None and mp.runtime.fit.n == 60 and mp.runtime.fit.mape_holdout < 0.1
    assert "m" in capsys.readouterr().out


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "explain",
            "--profile",
            str(PROFILES / "original-3-models.json"),
            "--weights",
            "energy-first",
            "--approx-tokens",
            "--json",
            "What is the capital of France?",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] in {"phi-3-mini", "mistral-7b", "falcon-7b"}
    assert data["approximate_token_counts"] is True
    assert set(data["candidates"]) == {"phi-3-mini", "mistral-7b", "falcon-7b"}
    assert data["weights"]["energy"] == pytest.approx(0.8)


def test_explain_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "explain",
            "--profile",
            str(PROFILES / "original-3-models.json"),
            "--weights",
            "1,0,0",
            "--approx-tokens",
            "hello there",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "chosen: mistral-7b" in out and "chars/4" in out


def test_demo_command_delegates_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_energyrouter.cli import demo

    seen: list[list[str]] = []
    monkeypatch.setattr(demo, "main", lambda argv: seen.append(list(argv)) or 0)
    assert main(["demo", "--help", "--x", "1"]) == 0
    assert seen == [["--help", "--x", "1"]]


def test_help_is_fast_and_light() -> None:
    code = (
        "import sys; from langchain_energyrouter.cli import main; "
        "bad = {'pandas', 'statsmodels', 'torch', 'transformers', 'matplotlib'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_calibrate_tiny_model_end_to_end_and_resume(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        "\n".join(
            json.dumps(
                {"id": f"q{i}", "prompt": "word " * (3 + 4 * i), "answer": "x", "match": "contains", "task_type": "t"}
            )
            for i in range(6)
        )
        + "\n"
    )
    out = tmp_path / "p.json"
    argv = [
        "calibrate",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--input-lengths",
        "8,32",
        "--output-lengths",
        "2,6",
        "--repetitions",
        "2",
        "--warmup",
        "1",
        "--suite",
        str(suite),
        "--natural-max-new-tokens",
        "5",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    profile = EnergyProfile.load(out)
    assert profile.energy_method in {"estimate", "rapl", "nvml_counter", "nvml_poll"}
    mp = profile.models["tiny-a"]
    assert mp.output_length.source == "fitted" and mp.accuracy == 0.0  # random weights never say "x"
    raw = tmp_path / "p-raw" / "tiny-a.csv"
    rows = raw.read_text().count("\n")
    assert rows == 1 + 8 + 6
    capsys.readouterr()
    assert main(argv) == 0
    assert raw.read_text().count("\n") == rows
    assert "resuming" in capsys.readouterr().err


def test_accuracy_writes_scores_and_answer_lengths_per_task(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    suite = tmp_path / "suite.jsonl"
    items = [
        {"id": "f1", "prompt": "Capital of France?", "answer": "Paris", "match": "contains", "task_type": "factual"},
        {"id": "f2", "prompt": "Capital of Peru?", "answer": "Lima", "match": "contains", "task_type": "factual"},
        {"id": "m1", "prompt": "Pick A or B.", "answer": "A", "match": "choice", "task_type": "choice"},
    ]
    suite.write_text("\n".join(json.dumps(item) for item in items) + "\n")
    profile = tmp_path / "p.json"
    argv = ["calibrate", str(tiny_model_dir), "--out", str(profile), "--input-lengths", "8,16"]
    argv += ["--output-lengths", "2,4", "--repetitions", "1", "--warmup", "0", "--suite", str(suite)]
    assert main([*argv, "--natural-max-new-tokens", "4", "--device", "cpu"]) == 0
    code = main(["accuracy", "--profile", str(profile), "--suite", str(suite), "--max-new-tokens", "5", "tiny-a"])
    assert code == 0, capsys.readouterr().err
    mp = EnergyProfile.load(profile).models["tiny-a"]
    assert set(mp.accuracy_by_task) == {"factual", "choice"}
    # the tiny models never stop early: every answer is exactly --max-new-tokens long
    assert mp.output_length.by_task == {"choice": 5.0, "factual": 5.0}
    assert mp.predict_output_tokens(30, None, "factual") == 5.0


def test_demo_error_figures_carry_bias() -> None:
    from langchain_energyrouter.cli.demo import _errors

    # One call predicted at twice its runtime, one right: MAPE 50%, median 50%, totals 3 s against 2 s.
    assert _errors([(2.0, 1.0), (1.0, 1.0)]) == "50% (MAPE; median 50%; bias 1.50)"
    assert _errors([(0.5, 1.0), (3.0, 3.0)]) == "25% (MAPE; median 25%; bias 0.88)"
