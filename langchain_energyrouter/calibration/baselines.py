"""The baselines a prompt-reading predictor must beat, and the seeded prompt split they are judged on.

:class:`TaskMeanPredictor` is what the router knew before per-prompt prediction: per-model mean
score and answer length per ``task_type``. :func:`split_prompts` splits prompt ids into train and
test parts (seeded, independent of file order), so every judge sees prompts its predictor never saw.
Standard library only.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol

from langchain_energyrouter.calibration.outcomes import OutcomeRow
from langchain_energyrouter.errors import CalibrationError

__all__ = ["Predictor", "TaskMeanPredictor", "split_prompts"]


class Predictor(Protocol):
    """What the router policy needs: per-model expected score and answer length for one prompt."""

    def predict(
        self, prompt: str, input_tokens: int | None, task_type: str | None
    ) -> tuple[dict[str, float], dict[str, float]]: ...


# -- a baseline predictor ---------------------------------------------------------------
class TaskMeanPredictor:
    """Per-model mean score and answer length per ``task_type`` (overall means for unseen tasks).

    This is what the router knew before per-prompt prediction (``accuracy_by_task`` and
    ``output_length.by_task`` in the profile): the baseline a prompt-reading predictor must beat.
    """

    def __init__(
        self,
        by_task: Mapping[str | None, Mapping[str, tuple[float, float]]],
        overall: Mapping[str, tuple[float, float]],
    ) -> None:
        self._by_task = {task: dict(v) for task, v in by_task.items()}
        self._overall = dict(overall)

    @classmethod
    def train(cls, rows: Sequence[OutcomeRow]) -> TaskMeanPredictor:
        """Means over ``rows`` per (task type, model) and per model."""
        if not rows:
            raise CalibrationError("No training rows: give a larger --train-fraction or a larger matrix.")
        sums: dict[str, dict[str, list[float]]] = {}
        overall: dict[str, list[float]] = {}
        for row in rows:
            tables = [overall] if row.task_type is None else [overall, sums.setdefault(row.task_type, {})]
            for table in tables:
                acc = table.setdefault(row.model, [0.0, 0.0, 0.0, 0.0])  # score sum, scored rows, tokens, rows
                if row.score is not None:
                    acc[0] += row.score
                    acc[1] += 1
                acc[2] += row.output_tokens
                acc[3] += 1

        def means(a: list[float]) -> tuple[float, float]:
            return (a[0] / a[1] if a[1] else 0.0), a[2] / a[3]

        by_task: dict[str | None, dict[str, tuple[float, float]]] = {
            t: {m: means(a) for m, a in v.items()} for t, v in sums.items()
        }
        return cls(by_task, {m: means(a) for m, a in overall.items()})

    def predict(
        self, prompt: str, input_tokens: int | None, task_type: str | None
    ) -> tuple[dict[str, float], dict[str, float]]:
        del prompt, input_tokens
        table = {**self._overall, **self._by_task.get(task_type, {})}
        return {m: v[0] for m, v in table.items()}, {m: v[1] for m, v in table.items()}


def split_prompts(prompt_ids: Sequence[str], train_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded split of prompt ids into (train, test); both non-empty.

    Raises:
        CalibrationError: ``train_fraction`` outside (0, 1), or too few prompts to split.
    """
    if not 0.0 < train_fraction < 1.0:
        raise CalibrationError(f"--train-fraction {train_fraction} must be strictly between 0 and 1 (e.g. 0.5).")
    ids = sorted(prompt_ids)
    random.Random(seed).shuffle(ids)
    n_train = min(max(round(len(ids) * train_fraction), 1), len(ids) - 1)
    if len(ids) < 2:
        raise CalibrationError(f"Only {len(ids)} complete prompt(s): a train/test split needs at least 2.")
    return ids[:n_train], ids[n_train:]
