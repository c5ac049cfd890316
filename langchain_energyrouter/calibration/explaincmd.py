"""``energyrouter explain --profile P PROMPT``: show the routing decision for a prompt."""

from __future__ import annotations

import argparse
from typing import Any

from langchain_energyrouter.profile import EnergyProfile


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``explain``."""
    p = sub.add_parser("explain", parents=[common], help="show the routing decision for a prompt")
    p.add_argument("prompt")
    p.add_argument("--profile", required=True)
    p.add_argument(
        "--weights", help="A,E,T (accuracy, energy, time) or a preset: accuracy-first, balanced, energy-first"
    )
    p.add_argument("--normalization", default="minmax", help="minmax (default), relative or hybrid")
    p.add_argument("--max-tokens", type=int, help="the request's output cap")
    p.add_argument("--task-type", help="use per-task accuracy")
    p.add_argument("--models", help="comma-separated subset of the profile's models")
    p.add_argument("--approx-tokens", action="store_true", help="count chars/4 instead of loading tokenizers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _weights(text: str | None) -> Any:
    from langchain_energyrouter.errors import WeightsError
    from langchain_energyrouter.scoring import PRESETS, Weights

    if text is None:
        return None
    if text in PRESETS:
        return PRESETS[text]
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise WeightsError(
            f"--weights {text!r} is neither A,E,T numbers (e.g. 0.6,0.3,0.1) nor a preset {sorted(PRESETS)}."
        ) from None
    return Weights.coerce(values)


def run(args: argparse.Namespace) -> int:
    import json

    from langchain_energyrouter.calibration.explain import as_json, count_tokens, render_table
    from langchain_energyrouter.scheduler import Scheduler

    profile = EnergyProfile.load(args.profile)
    scheduler = Scheduler(
        profile,
        _weights(args.weights),
        args.normalization,
        models=args.models.split(",") if args.models else None,
        on_infeasible="least_violating",
    )
    counts, methods = count_tokens(profile, args.prompt, scheduler.models, use_tokenizers=not args.approx_tokens)
    decision = scheduler.decide(counts, args.max_tokens, task_type=args.task_type)
    if args.json:
        print(json.dumps(as_json(decision, methods, args.prompt), indent=2))
    else:
        print(render_table(decision, methods))
    return 0


__all__ = ["add_parser", "run"]
