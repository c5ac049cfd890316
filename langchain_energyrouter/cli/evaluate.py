"""``energyrouter evaluate``: replay an outcome matrix through routing policies (see :mod:`.evaluate`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_energyrouter.calibration.evaluate import (
    DEFAULT_NORMALIZATION,
    DEFAULT_TRAIN_FRACTION,
    Predictor,
    evaluate,
)
from langchain_energyrouter.calibration.evaluate_output import format_lengths, format_report, plot_report, report_json
from langchain_energyrouter.calibration.length_report import evaluate_lengths
from langchain_energyrouter.calibration.outcomes import OutcomeRow
from langchain_energyrouter.cli.util import DEFAULT_MIN_ROWS
from langchain_energyrouter.errors import CalibrationError, ProfileError

__all__ = ["add_parser", "run"]


def _quality_module() -> Any:
    """``langchain_energyrouter.prompt.predictor`` (the learned predictors), or None where it is not installed."""
    import importlib

    try:
        return importlib.import_module("langchain_energyrouter.prompt.predictor")
    except ModuleNotFoundError as err:
        if err.name != "langchain_energyrouter.prompt.predictor":
            raise
        return None


def _encoder_or_fallback(name: str | None, required: bool, notes: list[str]) -> Any:
    """The named (or default) encoder; with ``--predictor auto``, the hashing encoder when its packages are missing."""
    from langchain_energyrouter.errors import MissingExtraError
    from langchain_energyrouter.prompt.encoders import DEFAULT_ENCODER, load_encoder

    wanted = name or DEFAULT_ENCODER
    try:
        return load_encoder(wanted)
    except MissingExtraError as err:
        if required:
            raise
        notes.append(f"encoder {wanted!r} is not installed ({err}); --predictor auto falls back to 'hashing'")
        return load_encoder("hashing")


def _learned_predictor(
    encoder: str | None, required: bool, notes: list[str], min_rows: int
) -> tuple[Callable[[Sequence[OutcomeRow]], Predictor], str] | None:
    """``PromptPredictor.train`` as a factory, or None when that module is not installed."""
    quality = _quality_module()
    if quality is None:
        return None
    enc = _encoder_or_fallback(encoder, required, notes)

    def factory(rows: Sequence[OutcomeRow]) -> Predictor:
        predictor: Predictor = quality.PromptPredictor.train(rows, encoder=enc, min_rows=min_rows)
        return predictor

    return factory, f"prompt features (PromptPredictor), encoder {enc.name}"


def _bandit_options(exploration: float) -> Any | None:
    """:class:`~langchain_energyrouter.prompt.bandit.BanditOptions`, or None where the bandit is not installed."""
    try:
        from langchain_energyrouter.prompt.bandit import BanditOptions
    except ImportError:
        return None
    return BanditOptions(exploration=exploration)


def add_parser(sub: Any, common: Any) -> None:
    """Register ``evaluate``."""
    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="replay an outcome matrix through routing policies (APGR, CPT, score at half energy) and judge lengths",
        description="Split an outcome matrix's prompts (seeded), train the predictors on one part and replay the "
        "other through every single model, random mixes, the oracle, the router over a sweep of accuracy/energy "
        "weights and the online bandit; print mean score and total energy per policy and RouteLLM's metrics, and "
        "how well answer lengths are predicted (medAPE, MAPE, MAE, within 2x, Spearman, bias) next to per-model "
        "and per-model-per-task means and, with output_tokens_samples, the noise floor. A length-only matrix (no "
        "scores) gets the length report alone.",
    )
    p.add_argument(
        "--matrix", required=True, help="outcome matrix JSONL (.jsonl.gz ok), e.g. from `accuracy --outcomes`"
    )
    p.add_argument("--train-fraction", type=float, default=DEFAULT_TRAIN_FRACTION, help="share of prompts to train on")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--profile", help="profile for the router's energy predictions and joules the matrix lacks")
    p.add_argument(
        "--predictor",
        default="auto",
        choices=["auto", "prompt", "task"],
        help="prompt: learned per-prompt predictor (quality.py); task: per-task means; auto: prompt if installed",
    )
    p.add_argument("--encoder", help="sentence encoder for the prompt predictor (its default if not given)")
    p.add_argument(
        "--min-rows",
        type=int,
        default=DEFAULT_MIN_ROWS,
        help=f"models with fewer training rows keep their profile accuracy (default {DEFAULT_MIN_ROWS}); with "
        "--predictor auto, a matrix where no model has that many falls back to per-task means, said so",
    )
    p.add_argument("--no-bandit", action="store_true", help="skip the online bandit policy")
    p.add_argument(
        "--bandit-exploration", type=float, default=0.0, help="the bandit's UCB exploration (default 0: greedy)"
    )
    p.add_argument(
        "--normalization",
        default=DEFAULT_NORMALIZATION,
        help="scheduler normaliser (default relative: keeps magnitudes)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="OUT.png", help="write score against energy for every policy")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    """``energyrouter evaluate``."""
    from langchain_energyrouter.calibration.outcomes import read_matrix

    started = time.perf_counter()
    matrix = read_matrix(args.matrix)
    profile = None
    if args.profile:
        from langchain_energyrouter.profile import EnergyProfile

        profile = EnergyProfile.load(args.profile)
    factory: Callable[[Sequence[OutcomeRow]], Predictor] | None = None
    name = None
    notes: list[str] = []
    if args.predictor in ("auto", "prompt"):
        learned = _learned_predictor(args.encoder, args.predictor == "prompt", notes, args.min_rows)
        if learned is None:
            if args.predictor == "prompt":
                raise CalibrationError(
                    "--predictor prompt needs langchain_energyrouter.prompt.predictor, which this installation lacks; "
                    "use --predictor task."
                )
            notes.append("langchain_energyrouter.prompt.predictor is not installed: the router uses per-task means")
        else:
            factory, name = learned
    if matrix.length_only:
        lengths = evaluate_lengths(
            matrix, train_fraction=args.train_fraction, seed=args.seed, predictor_factory=factory, predictor_name=name
        )
        lengths.notes[:0] = [*notes, "length-only matrix (no scores): the length report alone, no routing replay"]
        if args.plot:
            lengths.notes.append(
                f"--plot {args.plot} not written: the plot shows score against energy, and this matrix has no scores"
            )
        lengths.notes.append(f"total time {time.perf_counter() - started:.1f} s")
        print(report_json(lengths) if args.json else format_lengths(lengths))
        return 0
    bandit = None if args.no_bandit else _bandit_options(args.bandit_exploration)
    if bandit is None and not args.no_bandit:
        notes.append("the online bandit (langchain_energyrouter.prompt.bandit) is not installed: its policy is skipped")
    options = {
        "train_fraction": args.train_fraction,
        "seed": args.seed,
        "profile": profile,
        "bandit_options": bandit,
        "normalization": args.normalization,
    }
    try:
        report = evaluate(matrix, predictor_factory=factory, predictor_name=name, **options)
    except ProfileError as err:
        if factory is None or args.predictor != "auto" or "outcome rows needed" not in str(err):
            raise
        report = evaluate(matrix, predictor_factory=None, predictor_name=None, **options)
        notes.append(
            f"the per-prompt predictor was not trained ({err}); the router used per-task means instead "
            "(--min-rows N trains it on fewer rows)"
        )
    report.notes.extend(notes)
    report.timings_s["total_s"] = time.perf_counter() - started
    if args.plot:
        plot_report(report, args.plot)
        report.notes.append(f"plot written to {args.plot}")
    print(report_json(report) if args.json else format_report(report))
    return 0
