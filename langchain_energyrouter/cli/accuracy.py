"""``energyrouter accuracy --profile P --suite S MODEL ...``: score models on a labelled suite and write their
accuracy (and per-task answer lengths) into a profile."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from langchain_energyrouter.cli.util import invocation, load_model, resolve_device, then
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import EnergyProfile


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``accuracy``."""
    from langchain_energyrouter.calibration.accuracy import DEFAULT_MAX_NEW_TOKENS

    p = sub.add_parser(
        "accuracy",
        parents=[common],
        help="score models on a labelled suite, write into a profile",
        description="Answer every prompt of a labelled suite with each model, grade the answers, and write each "
        "model's accuracy (overall and per task type) into the profile; --outcomes also writes every "
        "prompt's per-model outcome, what `energyrouter train` learns from.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="profile model name, or NAME=MODEL to load MODEL")
    p.add_argument("--profile", required=True, help="profile JSON to update (its models are the ones scored)")
    p.add_argument("--suite", required=True, help="labelled JSONL: id, prompt, answer, match, task_type")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"answer length cap (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--outcomes",
        metavar="OUT.jsonl",
        help="also write every prompt's per-model outcome (score, tokens, runtime, energy) as an outcome matrix",
    )
    p.set_defaults(func=run)


def _tick(progress: Any, item: Any, text: str, ok: bool) -> None:
    progress.update(1, f"{item.id} {'ok' if ok else 'wrong'}")


def run(args: argparse.Namespace) -> int:
    from langchain_energyrouter.calibration.accuracy import outcome_rows, print_result, score_model
    from langchain_energyrouter.calibration.design import load_suite
    from langchain_energyrouter.calibration.outcomes import OutcomeRow, write_matrix
    from langchain_energyrouter.calibration.progress import Progress

    profile = EnergyProfile.load(args.profile)
    suite = load_suite(args.suite)
    labelled = [item for item in suite if item.labelled]
    if not labelled:
        raise CalibrationError(f"Suite {args.suite} has no labelled items ('answer' fields); nothing to score.")
    specs = []
    for spec in args.models:
        name, sep, source = spec.partition("=")
        if not sep:
            source = profile.model(name).model_id or name
        else:
            profile.model(name)
        specs.append((name, source))
    device = resolve_device(args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    meter = None
    if args.outcomes:
        from langchain_energyrouter.calibration.runner import calibration_meter

        meter = calibration_meter(device)
    outcomes: list[OutcomeRow] = []
    updated = {}
    for name, source in specs:
        _resolved, model, tokenizer = load_model(source, device, args.dtype)
        progress = Progress(len(labelled), name)
        result, _outputs = score_model(
            model,
            tokenizer,
            suite,
            max_new_tokens=args.max_new_tokens,
            on_item=functools.partial(_tick, progress),
            meter=meter,
        )
        print_result(name, result)
        if args.outcomes:  # written after every model, so a later failure keeps the finished ones
            outcomes.extend(outcome_rows(name, suite, result))
            write_matrix(args.outcomes, outcomes)
            print(f"wrote {len(outcomes)} outcome rows to {args.outcomes}")
        entry = profile.models[name]
        # Answer lengths per task type refine the output-length prediction of requests that
        # name their task type (the answers are capped at --max-new-tokens, as requests are).
        lengths = {**entry.output_length.by_task, **result.output_tokens_by_task}
        updated[name] = entry.model_copy(
            update={
                "accuracy": result.accuracy,
                "accuracy_by_task": result.accuracy_by_task,
                "output_length": entry.output_length.model_copy(update={"by_task": lengths}),
            }
        )
        del model
    updated_profile = profile.with_models(updated).model_copy(update={"source": then(profile.source, invocation(args))})
    new = EnergyProfile.from_dict(updated_profile.model_dump(mode="json"), origin=str(args.profile))
    new.save(args.profile)
    print(f"wrote accuracy for {', '.join(updated)} into {args.profile}")
    return 0


__all__ = ["add_parser", "run"]
