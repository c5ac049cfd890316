from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from langchain_energyrouter.calibration.outcomes import OutcomeMatrix, OutcomeRow, read_matrix, write_matrix
from langchain_energyrouter.errors import CalibrationError


def _row(prompt_id: str = "p1", model: str = "a", **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "prompt_id": prompt_id,
        "prompt": f"What is {prompt_id}?",
        "model": model,
        "score": 1.0,
        "input_tokens": 12,
        "output_tokens": 3,
        "runtime_s": 0.5,
        "energy_j": 2.0,
        "energy_method": "estimate",
        "task_type": "factual",
    }
    row.update(overrides)
    return row


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    return _write_lines(path, [json.dumps(r) for r in rows])


def test_round_trip_keeps_every_field_and_leaves_out_none(tmp_path: Path) -> None:
    rows = [
        OutcomeRow("p1", "What is 2 + 2?", "a", 1.0, 10, 2, 0.1, 0.4, "rapl", "arithmetic"),
        OutcomeRow("p1", "What is 2 + 2?", "b", 0.25, 11, 7, task_type="arithmetic"),
    ]
    path = tmp_path / "m.jsonl"
    assert write_matrix(path, rows) == 2
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["energy_method"] == "rapl" and first["task_type"] == "arithmetic"
    assert not {"runtime_s", "energy_j", "energy_method"} & set(second)
    matrix = read_matrix(path)
    assert matrix.rows == tuple(rows)
    assert matrix.models == ("a", "b")
    assert matrix.by_prompt("p1")["b"].score == 0.25


def test_gzipped_matrix_round_trips(tmp_path: Path) -> None:
    rows = [OutcomeRow(f"p{i}", f"prompt {i}", m, 0.0, 5, 1, energy_j=1.0) for i in range(3) for m in ("a", "b")]
    path = tmp_path / "m.jsonl.gz"
    write_matrix(path, rows)
    with gzip.open(path, "rt") as handle:
        assert len(handle.read().splitlines()) == 6
    assert read_matrix(path).rows == tuple(rows)


def test_blank_lines_and_unknown_fields_are_ignored(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "m.jsonl", [json.dumps(_row(note="extra")), "", "  ", json.dumps(_row(model="b"))])
    assert len(read_matrix(path)) == 2


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"score": 1.5}, "score = 1.5 is outside [0, 1]"),
        ({"score": -0.1}, "score = -0.1 is outside [0, 1]"),
        ({"score": "1"}, "score = '1' must be a number"),
        ({"score": True}, "score = True must be a number"),
        ({"score": float("nan")}, "score = nan must be a number"),
        ({"input_tokens": 3.5}, "input_tokens = 3.5 must be a non-negative integer"),
        ({"output_tokens": -1}, "output_tokens = -1 must be a non-negative integer"),
        ({"prompt_id": 7}, "prompt_id = 7 must be a non-empty string"),
        ({"model": ""}, "model = '' must be a non-empty string"),
        ({"energy_j": -2.0}, "energy_j = -2.0 must be a non-negative number"),
        ({"runtime_s": "fast"}, "runtime_s = 'fast' must be a non-negative number"),
        ({"energy_method": "guess"}, "energy_method = 'guess' is unknown"),
        ({"task_type": 3}, "task_type = 3 must be a string"),
    ],
)
def test_bad_values_are_rejected_naming_file_line_and_value(
    tmp_path: Path, override: dict[str, Any], expected: str
) -> None:
    path = _write_rows(tmp_path / "bad.jsonl", [_row(), _row(**{"model": "b", **override})])
    with pytest.raises(CalibrationError) as info:
        read_matrix(path)
    message = str(info.value)
    assert f"{path} line 2" in message
    assert expected in message


def test_missing_required_fields_are_listed(tmp_path: Path) -> None:
    row = _row()
    del row["output_tokens"], row["prompt"]  # score may be absent: a length-only row
    path = _write_rows(tmp_path / "bad.jsonl", [_row(model="b"), row])
    with pytest.raises(CalibrationError, match=r"line 2 lacks required field\(s\) \['prompt', 'output_tokens'\]"):
        read_matrix(path)


def test_null_required_field_counts_as_missing(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "bad.jsonl", [_row(output_tokens=None)])
    with pytest.raises(CalibrationError, match=r"line 1 lacks required field\(s\) \['output_tokens'\]"):
        read_matrix(path)


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "bad.jsonl", [json.dumps(_row()), '{"prompt_id": "p2", "score": 1', "{}"])
    with pytest.raises(CalibrationError, match=r"bad.jsonl line 2 is not valid JSON"):
        read_matrix(path)


def test_a_json_array_line_is_rejected(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "bad.jsonl", ["[1, 2]"])
    with pytest.raises(CalibrationError, match="line 1 is a JSON list, not an object"):
        read_matrix(path)


def test_duplicate_prompt_model_pair_names_both_lines(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "dup.jsonl", [_row(), _row(model="b"), _row(score=0.0)])
    with pytest.raises(CalibrationError, match=r"line 3 repeats prompt 'p1' for model 'a' \(first on line 1\)"):
        read_matrix(path)


def test_one_prompt_id_with_two_texts_is_rejected(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "bad.jsonl", [_row(), _row(model="b", prompt="Something else?")])
    with pytest.raises(CalibrationError, match="line 2: prompt 'p1' has a different text than on line 1"):
        read_matrix(path)


def test_one_prompt_with_two_task_types_is_rejected(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "bad.jsonl", [_row(), _row(model="b", task_type="other")])
    with pytest.raises(CalibrationError, match="line 2: prompt 'p1' has task_type 'other'"):
        read_matrix(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        read_matrix(tmp_path / "nope.jsonl")
    with pytest.raises(CalibrationError, match="has no rows"):
        read_matrix(_write_lines(tmp_path / "empty.jsonl", [""]))


def test_prompts_lacking_a_model_are_counted_not_rejected(tmp_path: Path) -> None:
    rows = [_row("p1"), _row("p1", "b"), _row("p2"), _row("p3", "b"), _row("p4"), _row("p4", "b")]
    matrix = read_matrix(_write_rows(tmp_path / "m.jsonl", rows))
    assert matrix.prompt_ids == ("p1", "p2", "p3", "p4")
    assert matrix.incomplete == {"p2": ("b",), "p3": ("a",)}
    assert matrix.complete_prompt_ids() == ("p1", "p4")
    assert matrix.complete().prompt_ids == ("p1", "p4") and len(matrix.complete()) == 4
    report = matrix.missing_report()
    assert report.startswith("2 of 4 prompts") and "a: 1, b: 1" in report and "left out of the replay" in report
    assert matrix.complete().missing_report() == ""


def test_with_models_selects_rows_and_rejects_unknown_names() -> None:
    matrix = OutcomeMatrix(tuple(OutcomeRow("p1", "x", m, 1.0, 1, 1) for m in ("a", "b", "c")))
    assert matrix.with_models(["a", "c"]).models == ("a", "c")
    with pytest.raises(CalibrationError, match=r"no rows for \['z'\]"):
        matrix.with_models(["z"])


def test_write_validates_like_read(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"score = 2\.0 is outside"):
        write_matrix(tmp_path / "m.jsonl", [_row(score=2.0)])
    with pytest.raises(CalibrationError, match="two rows for model 'a'"):
        write_matrix(tmp_path / "m.jsonl", [_row(), _row()])
    with pytest.raises(CalibrationError, match="prompt 'p1' has two texts"):
        write_matrix(tmp_path / "m.jsonl", [_row(), _row(model="b", prompt="other")])
    with pytest.raises(CalibrationError, match="prompt 'p1' has two task types"):
        write_matrix(tmp_path / "m.jsonl", [_row(), _row(model="b", task_type=None)])
    assert not (tmp_path / "m.jsonl").exists()


def test_rows_are_frozen() -> None:
    row = OutcomeRow("p1", "x", "a", 1.0, 1, 1)
    with pytest.raises(AttributeError):
        row.score = 0.0  # type: ignore[misc]
