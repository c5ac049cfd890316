"""How well answer lengths are predicted, on prompts the predictor never saw, next to simple baselines.

``energyrouter evaluate`` reports, per model and over every test row, for each length predictor:

``median_ape`` / ``mape``
    median and mean of ``|predicted - true| / max(true, 1)`` (MAPE is dominated by one-to-few-token
    answers; the median is the headline);
``mae_tokens``
    mean absolute error in tokens;
``within_2x``
    share of predictions within a factor of 2 of the true length (both floored at one token);
``spearman``
    rank correlation of predicted and true lengths (does the predictor order prompts right?);
``bias``
    summed predictions over summed true lengths (1.0: the total is right; what a capacity plan needs).

The predictors: ``predictor`` (the point the router decides on: the mean of the predicted length
distribution, under the model's budget when the training rows were censored), ``predictor_median``
(the distribution's median, which scores better on medAPE), ``model_mean`` (each model's mean
training length), ``model_task_mean`` (per model and ``task_type``, the model's mean for unseen
tasks) and, when rows carry ``output_tokens_samples``, ``noise_floor``: the mean of the *other*
samples of the same prompt and model, which no predictor can beat on average. The true length is
``output_tokens``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_energyrouter.calibration.baselines import Predictor, TaskMeanPredictor, split_prompts
from langchain_energyrouter.calibration.outcomes import OutcomeMatrix, OutcomeRow
from langchain_energyrouter.errors import CalibrationError

__all__ = ["LengthErrors", "LengthReport", "evaluate_lengths", "length_errors", "length_report"]


@dataclass(frozen=True)
class LengthErrors:
    """Error figures of one length predictor over a set of rows (see the module docstring)."""

    median_ape: float
    mape: float
    mae_tokens: float
    within_2x: float
    spearman: float | None
    """None when either side is constant (no order to compare)."""
    bias: float | None
    """None when every true length is 0."""
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_ape": self.median_ape,
            "mape": self.mape,
            "mae_tokens": self.mae_tokens,
            "within_2x": self.within_2x,
            "spearman": self.spearman,
            "bias": self.bias,
            "rows": self.rows,
        }


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), 0-based."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    ra, rb = _ranks(a), _ranks(b)
    n = len(ra)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else None


def length_errors(predicted: Sequence[float], true: Sequence[float]) -> LengthErrors:
    """The error figures of ``predicted`` against ``true`` lengths (tokens; same order, same length).

    Raises:
        CalibrationError: the sequences are empty or of different lengths.
    """
    if len(predicted) != len(true) or not true:
        raise CalibrationError(f"Length errors need equal, non-empty sequences ({len(predicted)} vs {len(true)}).")
    ape = sorted(abs(p - t) / max(t, 1.0) for p, t in zip(predicted, true, strict=True))
    n = len(ape)
    median = ape[n // 2] if n % 2 else (ape[n // 2 - 1] + ape[n // 2]) / 2
    within = sum(0.5 <= max(p, 1.0) / max(t, 1.0) <= 2.0 for p, t in zip(predicted, true, strict=True))
    total = sum(true)
    return LengthErrors(
        median_ape=median,
        mape=sum(ape) / n,
        mae_tokens=sum(abs(p - t) for p, t in zip(predicted, true, strict=True)) / n,
        within_2x=within / n,
        spearman=_spearman(predicted, true),
        bias=sum(predicted) / total if total > 0 else None,
        rows=n,
    )


@dataclass
class LengthReport:
    """Per predictor, its errors over every test row and per model."""

    overall: dict[str, LengthErrors]
    by_model: dict[str, dict[str, LengthErrors]]
    predictor: str
    n_train_prompts: int
    n_test_prompts: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``{"lengths": {predictor: errors}, "lengths_by_model": {model: {predictor: errors}}}`` and the split."""
        return {
            "lengths": {name: e.as_dict() for name, e in self.overall.items()},
            "lengths_by_model": {
                model: {name: e.as_dict() for name, e in table.items()} for model, table in self.by_model.items()
            },
            "length_predictor": self.predictor,
            "length_split": {"train_prompts": self.n_train_prompts, "test_prompts": self.n_test_prompts},
        }


def _point(value: Any, cap: int | None, *, median: bool = False) -> float:
    """A predictor's length for one model: a distribution's mean (or median) under ``cap``, or a plain number."""
    if hasattr(value, "mean_tokens"):
        if median:
            return float(value.quantile_tokens(0.0, cap))
        return float(value.mean_tokens(cap))
    return float(value)


def _noise_floor(row: OutcomeRow) -> float | None:
    """Mean of the row's other samples (one occurrence of ``output_tokens`` left out), or None."""
    samples = list(row.output_tokens_samples or ())
    if row.output_tokens in samples:
        samples.remove(row.output_tokens)
    elif samples:
        samples = samples[1:]  # the first sample is the answer when output_tokens is not among them
    return sum(samples) / len(samples) if samples else None


def _caps(predictor: Any) -> Mapping[str, int | None]:
    """Per model, the budget the predictor's training rows were censored at (None: uncensored)."""
    spec = getattr(predictor, "spec", None)
    lengths = getattr(spec, "lengths", None) or {}
    return {m: getattr(v, "censored_at", None) for m, v in lengths.items()}


def length_report(
    predictor: Predictor, train_rows: Sequence[OutcomeRow], test_rows: Sequence[OutcomeRow], *, predictor_name: str
) -> LengthReport:
    """Judge ``predictor`` (trained on ``train_rows``) and the baselines on ``test_rows``.

    One prediction per test prompt (as the router makes one per request), with the input length of
    the prompt's first row.

    Raises:
        CalibrationError: no training or no test rows.
    """
    if not train_rows or not test_rows:
        raise CalibrationError("The length report needs training and test rows; give a larger matrix.")
    means = TaskMeanPredictor.train(train_rows)
    caps = _caps(predictor)
    by_prompt: dict[str, list[OutcomeRow]] = {}
    for row in test_rows:
        by_prompt.setdefault(row.prompt_id, []).append(row)
    names = ("predictor", "predictor_median", "model_mean", "model_task_mean", "noise_floor")
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {n: {} for n in names}

    def add(name: str, model: str, predicted: float, true: float) -> None:
        pair = series[name].setdefault(model, ([], []))
        pair[0].append(predicted)
        pair[1].append(true)

    skipped: dict[str, int] = {}
    for rows in by_prompt.values():
        first = rows[0]
        _, lengths = predictor.predict(first.prompt, first.input_tokens, first.task_type)
        _, overall = means.predict(first.prompt, None, None)
        _, by_task = means.predict(first.prompt, None, first.task_type)
        for row in rows:
            if row.model not in lengths or row.model not in overall:
                skipped[row.model] = skipped.get(row.model, 0) + 1
                continue
            true = float(row.output_tokens)
            cap = caps.get(row.model)
            add("predictor", row.model, _point(lengths[row.model], cap), true)
            add("predictor_median", row.model, _point(lengths[row.model], cap, median=True), true)
            add("model_mean", row.model, overall[row.model], true)
            add("model_task_mean", row.model, by_task[row.model], true)
            floor = _noise_floor(row)
            if floor is not None:
                add("noise_floor", row.model, floor, true)
    overall_errors: dict[str, LengthErrors] = {}
    by_model: dict[str, dict[str, LengthErrors]] = {}
    for name, table in series.items():
        if not table:
            continue
        all_p = [v for p, _ in table.values() for v in p]
        all_t = [v for _, t in table.values() for v in t]
        overall_errors[name] = length_errors(all_p, all_t)
        for model, (p, t) in sorted(table.items()):
            by_model.setdefault(model, {})[name] = length_errors(p, t)
    if not overall_errors:
        raise CalibrationError("No test row has a model the predictor knows; train on the same models.")
    notes = [
        f"{n} test rows of {m} have no length prediction (too few training rows) and are left out"
        for m, n in sorted(skipped.items())
    ]
    train_prompts = {r.prompt_id for r in train_rows}
    return LengthReport(overall_errors, by_model, predictor_name, len(train_prompts), len(by_prompt), notes)


def evaluate_lengths(
    matrix: OutcomeMatrix,
    *,
    train_fraction: float,
    seed: int,
    predictor_factory: Callable[[Sequence[OutcomeRow]], Predictor] | None = None,
    predictor_name: str | None = None,
) -> LengthReport:
    """Split the matrix's prompts (all of them: lengths need no complete prompts), train, judge lengths.

    Raises:
        CalibrationError: too few prompts to split, or nothing to judge.
    """
    train, test = split_prompts(matrix.prompt_ids, train_fraction, seed)
    train_ids, test_ids = set(train), set(test)
    train_rows = [r for r in matrix.rows if r.prompt_id in train_ids]
    test_rows = [r for r in matrix.rows if r.prompt_id in test_ids]
    if predictor_factory is None:
        return length_report(TaskMeanPredictor.train(train_rows), train_rows, test_rows, predictor_name="task-mean")
    return length_report(
        predictor_factory(train_rows), train_rows, test_rows, predictor_name=predictor_name or "learned"
    )
