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
import statistics
from collections import defaultdict

from langchain_energyrouter.calibration.baselines import split_prompts
from langchain_energyrouter.calibration.outcomes import read_matrix
from langchain_energyrouter.profile import EnergyProfile
from langchain_energyrouter.prompt.predictor import PromptPredictor

Z90 = 1.2815515655446004


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="calibration/outcomes/packaged-models.jsonl")
    parser.add_argument("--seeds", type=int, default=5, help="train/test splits (seeds 0..N-1)")
    parser.add_argument("--encoder", default="hashing", help="the packaged predictor's encoder (default hashing)")
    parser.add_argument("--profile", default="cpu-reference", help="profile whose runtime lines price the lengths")
    args = parser.parse_args()
    matrix = read_matrix(args.matrix)
    profile = (
        EnergyProfile.load(args.profile) if args.profile.endswith(".json") else EnergyProfile.reference(args.profile)
    )
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
        for divisor in (1, 2, 4, 8):
            cap = budget // divisor
            task_mean = _task_means(train_rows, cap)
            pred: list[float] = []
            median: list[float] = []
            base: list[float] = []
            true: list[float] = []
            runtime_line: list[tuple[str, int]] = []
            covered = 0
            for prompt_id in test:
                rows = matrix.by_prompt(prompt_id)
                first = next(iter(rows.values()))
                _, lengths = predictor.predict(first.prompt, first.input_tokens, first.task_type)
                for model, row in rows.items():
                    truth = float(min(row.output_tokens, cap))
                    pred.append(lengths[model].mean_tokens(cap))
                    median.append(lengths[model].quantile_tokens(0.0, cap))
                    base.append(task_mean.get((model, row.task_type), task_mean[model, None]))
                    true.append(truth)
                    runtime_line.append((model, row.input_tokens))
                    covered += truth <= lengths[model].quantile_tokens(Z90, cap) + 1e-9
            figures[cap, "predictor"].append(
                (*_errors(pred, true), covered / len(true), _runtime_mape(profile, runtime_line, pred, true))
            )
            figures[cap, "its median"].append(
                (*_errors(median, true), float("nan"), _runtime_mape(profile, runtime_line, median, true))
            )
            figures[cap, "model-task mean"].append(
                (*_errors(base, true), float("nan"), _runtime_mape(profile, runtime_line, base, true))
            )
    print(f"{matrix.source}: {len(matrix.models)} models, training budget {budget} tokens, encoder {args.encoder};")
    print(f"{args.seeds} splits of the prompts in half (figures: median over splits, on the held-out half)")
    print(
        f"{'cap':>5} {'predictor':<16} {'bias':>6} {'medAPE':>7} {'MAPE':>6} {'p90 coverage':>13} {'runtime MAPE':>13}"
    )
    for (cap, name), values in figures.items():
        bias, median_ape, mape, coverage, runtime = (statistics.median(column) for column in zip(*values, strict=True))
        shown = "" if coverage != coverage else f"{coverage:.3f}"
        print(f"{cap:>5} {name:<16} {bias:6.3f} {median_ape:7.3f} {mape:6.3f} {shown:>13} {runtime:13.3f}")


def _task_means(rows: list, cap: int) -> dict[tuple[str, str | None], float]:
    """Per (model, task) and per (model, None): the mean training length cut at ``cap``."""
    sums: dict[tuple[str, str | None], list[float]] = defaultdict(list)
    for row in rows:
        cut = float(min(row.output_tokens, cap))
        sums[row.model, row.task_type].append(cut)
        sums[row.model, None].append(cut)
    return {key: sum(values) / len(values) for key, values in sums.items()}


def _runtime_mape(
    profile: EnergyProfile, lines: list[tuple[str, int]], lengths: list[float], true: list[float]
) -> float:
    """Mean absolute percentage error of the runtime at ``lengths`` against the runtime at the ``true`` lengths."""
    errors = []
    for (model, input_tokens), length, truth in zip(lines, lengths, true, strict=True):
        entry = profile.model(model)
        at_truth = entry.predict(input_tokens, max(truth, 1.0)).runtime_s
        errors.append(abs(entry.predict(input_tokens, max(length, 1.0)).runtime_s - at_truth) / at_truth)
    return sum(errors) / len(errors)


def _errors(pred: list[float], true: list[float]) -> tuple[float, float, float]:
    ape = [abs(p - t) / max(t, 1.0) for p, t in zip(pred, true, strict=True)]
    return sum(pred) / sum(true), statistics.median(ape), sum(ape) / len(ape)


if __name__ == "__main__":
    main()
