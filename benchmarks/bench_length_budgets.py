"""Answer lengths under a smaller budget than the training run's: bias, error and p90 coverage on held-out prompts.

A deployment caps answers at its own ``max_tokens``, rarely the budget the predictor's training answers were
cut at. A predictor trained on a matrix whose answers were cut at ``B`` tokens is judged on the other half of
the prompts at caps ``B``, ``B/2``, ``B/4`` and ``B/8``: per cap, the summed expected lengths under the cap over
the summed true lengths under it (bias; 1.0: the total is right, what a capacity plan needs), the median and
mean absolute percentage error of that expected length, and the share of answers at or below the predicted
p90 (coverage; 0.90 is right). Next to it, the same distribution's median (what an error per call rewards: it
scores better on MAPE and undercounts the total) and the simplest baseline that knows the cap: per model and
task, the mean of the training answers cut at the cap.

The last column prices every length with a profile's runtime line (``--profile``, default the CPU reference
of the packaged models) and gives the mean absolute percentage error of the predicted runtime against the
runtime at the true length: what a per-call runtime error such as ``make demo``'s can be expected to be on
new prompts, with each point prediction.

Run: ``python benchmarks/bench_length_budgets.py [--matrix calibration/outcomes/packaged-models.jsonl]
[--seeds 5] [--encoder hashing]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections import defaultdict
from typing import Any

from langchain_energyrouter.calibration.baselines import TaskMeanPredictor, split_prompts
from langchain_energyrouter.calibration.length_report import length_errors
from langchain_energyrouter.calibration.outcomes import OutcomeRow, read_matrix
from langchain_energyrouter.profile import EnergyProfile
from langchain_energyrouter.prompt.length_calibration import QUANTILE
from langchain_energyrouter.prompt.predictor import PromptPredictor

Z_UPPER = statistics.NormalDist().inv_cdf(QUANTILE)
"""The standard-normal quantile of the p90 the router's constraints use."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="calibration/outcomes/packaged-models.jsonl")
    parser.add_argument("--seeds", type=int, default=5, help="train/test splits (seeds 0..N-1)")
    parser.add_argument("--encoder", default="hashing", help="the packaged predictor's encoder (default hashing)")
    parser.add_argument("--profile", default="cpu-reference", help="profile whose runtime lines price the lengths")
    args = parser.parse_args()
    matrix = read_matrix(args.matrix)
    profile = EnergyProfile.load_or_reference(args.profile)
    figures: dict[tuple[int, str], list[tuple[float, ...]]] = defaultdict(list)
    budget = None
    for seed in range(args.seeds):
        train, test = split_prompts(matrix.complete_prompt_ids(), 0.5, seed)
        train_rows = [r for p in train for r in matrix.by_prompt(p).values()]
        predictor = PromptPredictor.train(train_rows, encoder=args.encoder)
        budgets = {m: spec.censored_at for m, spec in predictor.spec.lengths.items() if spec.censored_at}
        if not budgets:
            raise SystemExit(f"{args.matrix}: no answer reached a budget; nothing to judge under a smaller cap.")
        budget = max(budgets.values())
        judged: list[tuple[OutcomeRow, Any]] = []  # each test row with its model's predicted distribution
        for prompt_id in test:
            rows = matrix.by_prompt(prompt_id)
            first = next(iter(rows.values()))
            _, lengths = predictor.predict(first.prompt, first.input_tokens, first.task_type)
            judged += [(row, lengths[model]) for model, row in rows.items()]
        for divisor in (1, 2, 4, 8):
            cap = budget // divisor
            means = TaskMeanPredictor.train([_cut(r, cap) for r in train_rows])  # the baseline knows the cap
            true = [float(min(row.output_tokens, cap)) for row, _ in judged]
            pred = [length.mean_tokens(cap) for _, length in judged]
            median = [length.quantile_tokens(0.0, cap) for _, length in judged]
            base = [means.predict(row.prompt, None, row.task_type)[1][row.model] for row, _ in judged]
            covered = sum(
                t <= length.quantile_tokens(Z_UPPER, cap) + 1e-9 for t, (_, length) in zip(true, judged, strict=True)
            )
            rows_only = [row for row, _ in judged]
            for name, points, coverage in (
                ("predictor", pred, covered / len(true)),
                ("its median", median, float("nan")),
                ("model-task mean", base, float("nan")),
            ):
                errors = length_errors(points, true)
                runtime = _runtime_mape(profile, rows_only, points, true)
                figures[cap, name].append((errors.bias or 0.0, errors.median_ape, errors.mape, coverage, runtime))
    print(f"{matrix.source}: {len(matrix.models)} models, training budget {budget} tokens, encoder {args.encoder};")
    print(f"{args.seeds} splits of the prompts in half (figures: median over splits, on the held-out half)")
    print(
        f"{'cap':>5} {'predictor':<16} {'bias':>6} {'medAPE':>7} {'MAPE':>6} {'p90 coverage':>13} {'runtime MAPE':>13}"
    )
    for (cap, name), values in figures.items():
        bias, median_ape, mape, coverage, runtime = (statistics.median(column) for column in zip(*values, strict=True))
        shown = "" if coverage != coverage else f"{coverage:.3f}"
        print(f"{cap:>5} {name:<16} {bias:6.3f} {median_ape:7.3f} {mape:6.3f} {shown:>13} {runtime:13.3f}")


def _cut(row: OutcomeRow, cap: int) -> OutcomeRow:
    """The row with its answer cut at ``cap`` tokens."""
    return dataclasses.replace(row, output_tokens=min(row.output_tokens, cap), output_tokens_samples=None)


def _runtime_mape(profile: EnergyProfile, rows: list[OutcomeRow], lengths: list[float], true: list[float]) -> float:
    """Mean absolute percentage error of the runtime at ``lengths`` against the runtime at the ``true`` lengths."""
    errors = []
    for row, length, truth in zip(rows, lengths, true, strict=True):
        entry = profile.model(row.model)
        at_truth = entry.predict(row.input_tokens, max(truth, 1.0)).runtime_s
        errors.append(abs(entry.predict(row.input_tokens, max(length, 1.0)).runtime_s - at_truth) / at_truth)
    return sum(errors) / len(errors)


if __name__ == "__main__":
    main()
