"""Scoring rules of the labelled suite."""

from __future__ import annotations

import pytest

from langchain_energyrouter.calibration.accuracy import choice_letter, is_correct, score_outputs
from langchain_energyrouter.calibration.design import SuiteItem, load_suite
from langchain_energyrouter.errors import CalibrationError

from .conftest import SUITES


@pytest.mark.parametrize(
    ("output", "answer", "match", "expected"),
    [
        ("Paris.", "Paris", "exact", True),
        ("paris\nIt is a city.", "Paris", "exact", True),
        ("The capital is Paris.", "Paris", "exact", False),
        ("The capital is Paris.", "Paris", "contains", True),
        ("It is 14.", "4", "contains", False),
        ("It is 4!", "4", "contains", True),
        ("B) apple", "B", "choice", True),
        ("(C)", "C", "choice", True),
        ("The answer is A.", "A", "choice", True),
        ("Answer: D", "B", "choice", False),
        ("I do not know", "B", "choice", False),
    ],
)
def test_rules(output: str, answer: str, match: str, expected: bool) -> None:
    assert is_correct(output, SuiteItem("x", "q", (answer,), match)) is expected


def test_choice_letter() -> None:
    assert choice_letter("b. apple") == "B"
    assert choice_letter("nothing here") is None


def test_score_outputs_per_task() -> None:
    items = [
        SuiteItem("a", "q", ("yes",), "exact", "instr"),
        SuiteItem("b", "q", ("4",), "contains", "math"),
        SuiteItem("c", "q", ("5",), "contains", "math"),
        SuiteItem("d", "q"),  # unlabelled: ignored
    ]
    result = score_outputs(items, {"a": "Yes", "b": "4", "c": "six", "d": "whatever"})
    assert result.n == 3 and result.accuracy == pytest.approx(2 / 3)
    assert result.accuracy_by_task == {"instr": 1.0, "math": 0.5}
    with pytest.raises(CalibrationError, match="No labelled"):
        score_outputs(items[3:], {"d": "x"})


def test_packaged_suites_load() -> None:
    qa = load_suite(SUITES / "qa-small.jsonl")
    assert 30 <= len(qa) <= 40 and all(item.labelled and item.task_type for item in qa)
    assert {item.match for item in qa} == {"exact", "contains", "choice"}
    natural = load_suite(SUITES / "natural-chat.jsonl")
    assert natural and not any(item.labelled for item in natural)


def test_bad_suite_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a", "prompt": "q", "match": "fuzzy"}\n')
    with pytest.raises(CalibrationError, match="line 1: match 'fuzzy'"):
        load_suite(path)
