"""Score models on a labelled suite: exact, contains, multiple-choice letter; per task type.

Matching rules (after normalising case, punctuation and whitespace):

``exact``
    The first non-empty line of the answer equals an accepted answer (or the whole output does).
``contains``
    An accepted answer occurs in the output as whole words (``"4"`` is not found in ``"14"``).
``choice``
    The first option letter the model commits to (``"B"``, ``"(B)"``, ``"B."``,
    ``"Answer: B"``) equals the accepted letter.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.calibration.design import SuiteItem
from langchain_energyrouter.errors import CalibrationError

if TYPE_CHECKING:
    from langchain_energyrouter.calibration.outcomes import OutcomeRow

DEFAULT_MAX_NEW_TOKENS = 256
"""Answer budget: long enough that no packaged model's qa-small answer is cut (SmolLM2-135M's longest is 224)."""

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_CHOICE_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*\(?([A-Ea-e])\b\)?", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-Ea-e])\s*(?:[).:\]]|$|\s)"),
    re.compile(r"\(([A-E])\)"),
    re.compile(r"\b([A-E])\b"),
)


def normalize(text: str) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def choice_letter(text: str) -> str | None:
    """The option letter a model's answer commits to, or None."""
    for pattern in _CHOICE_PATTERNS:
        found = pattern.search(text.strip())
        if found:
            return found.group(1).upper()
    return None


def is_correct(output: str, item: SuiteItem) -> bool:
    """Whether ``output`` answers ``item`` under its match rule."""
    if not item.labelled:
        raise CalibrationError(f"Suite item {item.id!r} has no answer; it cannot be scored.")
    if item.match == "choice":
        letter = choice_letter(output)
        return letter is not None and letter in {a.strip().upper() for a in item.answer}
    answers = [normalize(a) for a in item.answer]
    text = normalize(output)
    if item.match == "exact":
        first = next((normalize(line) for line in output.splitlines() if normalize(line)), "")
        return first in answers or text in answers
    padded = f" {text} "
    return any(a and f" {a} " in padded for a in answers)


@dataclass
class AccuracyResult:
    """A model's score on a suite."""

    accuracy: float
    accuracy_by_task: dict[str, float]
    n: int
    correct: dict[str, bool] = field(default_factory=dict)
    """Item id -> whether it was answered correctly."""
    output_tokens_by_task: dict[str, float] = field(default_factory=dict)
    """Mean generated tokens per task type (answers capped at the run's max_new_tokens)."""
    measurements: dict[str, ItemMeasurement] = field(default_factory=dict)
    """Item id -> tokens, runtime and energy of its generation (filled by :func:`score_model`)."""


@dataclass(frozen=True)
class ItemMeasurement:
    """What one suite item's generation cost (a row of an outcome matrix, with the score)."""

    input_tokens: int
    output_tokens: int
    runtime_s: float
    energy_j: float | None = None
    """Joules from the meter given to :func:`score_model` (None without one, or method ``none``)."""
    energy_method: str | None = None


def score_outputs(
    items: Sequence[SuiteItem], outputs: Mapping[str, str], output_tokens: Mapping[str, int] | None = None
) -> AccuracyResult:
    """Score recorded outputs (item id -> text) of the labelled items that have one.

    ``output_tokens`` (item id -> generated tokens), when given, yields the mean
    answer length per task type.

    Raises:
        CalibrationError: no labelled item has an output.
    """
    labelled = [item for item in items if item.labelled and item.id in outputs]
    if not labelled:
        raise CalibrationError("No labelled suite item has an output to score; give a suite with 'answer' fields.")
    correct = {item.id: is_correct(outputs[item.id], item) for item in labelled}
    by_task: dict[str, list[bool]] = {}
    for item in labelled:
        if item.task_type:
            by_task.setdefault(item.task_type, []).append(correct[item.id])
    lengths: dict[str, list[int]] = {}
    for item in labelled:
        if item.task_type and output_tokens is not None and item.id in output_tokens:
            lengths.setdefault(item.task_type, []).append(output_tokens[item.id])
    return AccuracyResult(
        accuracy=sum(correct.values()) / len(correct),
        accuracy_by_task={task: sum(v) / len(v) for task, v in sorted(by_task.items())},
        n=len(correct),
        correct=correct,
        output_tokens_by_task={task: sum(v) / len(v) for task, v in sorted(lengths.items())},
    )


def score_model(
    model: Any,
    tokenizer: Any,
    items: Sequence[SuiteItem],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    on_item: Callable[[SuiteItem, str, bool], None] | None = None,
    meter: Any = None,
) -> tuple[AccuracyResult, dict[str, str]]:
    """Generate greedily for every labelled item and score the answers.

    Every generation is timed, and metered with ``meter`` (``begin()`` / ``end(handle)``)
    when one is given: :attr:`AccuracyResult.measurements`.

    Returns:
        The result and the raw outputs (item id -> text).
    """

    from langchain_energyrouter.calibration.runner import encode_prompt, generate

    labelled = [item for item in items if item.labelled]
    if not labelled:
        raise CalibrationError("The suite has no labelled items (no 'answer' fields); nothing to score.")
    outputs: dict[str, str] = {}
    output_tokens: dict[str, int] = {}
    measurements: dict[str, ItemMeasurement] = {}
    for item in labelled:
        ids = encode_prompt(tokenizer, item.prompt)
        handle = meter.begin() if meter is not None else None
        start_s = time.perf_counter()
        new_ids, n_out = generate(model, tokenizer, ids, max_new_tokens, forced=False)
        runtime_s = time.perf_counter() - start_s
        reading = meter.end(handle) if meter is not None else None
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        outputs[item.id] = text
        output_tokens[item.id] = n_out
        measurements[item.id] = ItemMeasurement(
            input_tokens=len(ids),
            output_tokens=n_out,
            runtime_s=reading.runtime_s if reading is not None else runtime_s,
            energy_j=reading.energy_j if reading is not None else None,
            energy_method=reading.method if reading is not None else None,
        )
        if on_item is not None:
            on_item(item, text, is_correct(text, item))
    result = score_outputs(labelled, outputs, output_tokens)
    result.measurements = measurements
    return result, outputs


def outcome_rows(model_name: str, items: Sequence[SuiteItem], result: AccuracyResult) -> list[OutcomeRow]:
    """One outcome-matrix row per scored item that has a measurement (score 1 right, 0 wrong)."""
    from langchain_energyrouter.calibration.outcomes import OutcomeRow

    rows = []
    for item in items:
        measured = result.measurements.get(item.id)
        if measured is None or item.id not in result.correct:
            continue
        rows.append(
            OutcomeRow(
                prompt_id=item.id,
                prompt=item.prompt,
                model=model_name,
                score=1.0 if result.correct[item.id] else 0.0,
                input_tokens=measured.input_tokens,
                output_tokens=measured.output_tokens,
                runtime_s=measured.runtime_s,
                energy_j=measured.energy_j,
                energy_method=measured.energy_method if measured.energy_j is not None else None,
                task_type=item.task_type,
            )
        )
    return rows


def print_result(name: str, result: AccuracyResult, stream: Any = None) -> None:
    out = stream if stream is not None else sys.stdout
    tasks = ", ".join(f"{t} {v:.2f}" for t, v in result.accuracy_by_task.items())
    print(f"{name}: accuracy {result.accuracy:.3f} on {result.n} items" + (f" ({tasks})" if tasks else ""), file=out)
