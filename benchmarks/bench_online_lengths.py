"""How much the per-prompt length arms should trust each measured answer: error against ``length_prior_weight``.

A predictor is trained on half of an outcome matrix's prompts (split seed 0, the default encoder); the other
half's prompts are shuffled (seed 0) and, per model, each is predicted by a fresh
:class:`~langchain_energyrouter.prompt.routing.PromptRouting` and then its measured length is learned, as a
router does after every answer. Printed per ridge ``lambda``: the median absolute percentage error of the
predicted mean length (under the budget, where the answers had one) on the first 20 prompts and on all of
them, and the bias (summed predictions over summed lengths); a huge ``lambda`` is the predictor alone (no
online learning). Every prediction is made before its answer is learned, on prompts the predictor never saw.

Run: ``python benchmarks/bench_online_lengths.py [--matrix M.jsonl.gz] [--prompts 150]`` (default: the packaged
models' matrix); CASTILLO's validate
split as a length-only matrix comes from ``tools/castillo_to_matrix.py``.
"""

from __future__ import annotations

import argparse
import random
import statistics

from langchain_energyrouter.calibration.baselines import split_prompts
from langchain_energyrouter.calibration.outcomes import read_matrix
from langchain_energyrouter.prompt.bandit import BanditOptions
from langchain_energyrouter.prompt.predictor import PromptPredictor
from langchain_energyrouter.prompt.routing import PromptRouting

LAMBDAS = (0.5, 2.0, 8.0, 32.0, 128.0, 512.0, 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--matrix",
        default="calibration/outcomes/packaged-models.jsonl",
        help="outcome matrix (default: the packaged models'; `make bench` runs it so)",
    )
    parser.add_argument("--prompts", type=int, default=150, help="held-out prompts per model, in learning order")
    args = parser.parse_args()
    matrix = read_matrix(args.matrix)
    train, test = split_prompts(matrix.complete_prompt_ids(), 0.5, 0)
    predictor = PromptPredictor.train([r for p in train for r in matrix.by_prompt(p).values()])
    order = list(test)
    random.Random(0).shuffle(order)
    order = order[: args.prompts]
    models = sorted(matrix.models)
    print(
        f"{matrix.source}: {len(models)} models, {len(order)} held-out prompts each, encoder {predictor.spec.encoder}"
    )
    for lam in LAMBDAS:
        routing = PromptRouting(models, predictor, options=BanditOptions(length_prior_weight=lam))
        early: list[float] = []
        every: list[float] = []
        predicted_sum = true_sum = 0.0
        for model in models:
            cap = predictor.spec.lengths[model].censored_at  # the generation budget, where answers reached one
            for i, prompt_id in enumerate(order):
                row = matrix.by_prompt(prompt_id)[model]
                estimate = routing.predict(row.prompt, row.input_tokens, row.task_type)
                predicted = estimate.output_tokens[model].mean_tokens(cap)
                error = abs(predicted - row.output_tokens) / max(row.output_tokens, 1)
                every.append(error)
                if i < 20:
                    early.append(error)
                predicted_sum += predicted
                true_sum += row.output_tokens
                run_id = f"{model}-{i}"
                routing.remember(run_id, model, estimate)
                routing.observe_length(run_id, row.output_tokens, capped=cap is not None and row.output_tokens >= cap)
        label = "predictor alone" if lam >= 1e9 else f"lambda {lam:g}"
        print(
            f"{label:>16}: medAPE first 20 {statistics.median(early):.3f}, all {statistics.median(every):.3f}, "
            f"bias {predicted_sum / true_sum:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
