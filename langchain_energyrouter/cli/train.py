"""``energyrouter train --matrix M --out P``: fit per-prompt quality and length predictors on an outcome
matrix."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from langchain_energyrouter.cli.util import DEFAULT_MIN_ROWS, say


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``train``."""
    p = sub.add_parser(
        "train",
        parents=[common],
        help="fit per-prompt quality and length predictors on an outcome matrix",
        description="Fit, per model, the expected score and the answer length of a prompt from its features "
        "(sentence embedding, token count, task type) on an outcome matrix (JSONL, one row per prompt and model).",
    )
    p.add_argument("--matrix", required=True, type=Path, help="outcome matrix JSONL (from `energyrouter accuracy`)")
    p.add_argument("--out", required=True, type=Path, help="predictor JSON to write (keep it beside the profile)")
    p.add_argument("--encoder", default="minilm-static", help="prompt encoder: minilm-static (default) or hashing")
    p.add_argument(
        "--min-rows",
        type=int,
        default=DEFAULT_MIN_ROWS,
        help=f"models with fewer rows keep their profile accuracy (default {DEFAULT_MIN_ROWS})",
    )
    p.add_argument(
        "--censored-at", type=int, default=None, help="generation budget of the run (default: detected; 0: none)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from langchain_energyrouter.calibration.outcomes import read_matrix
    from langchain_energyrouter.prompt.predictor import PromptPredictor

    rows = read_matrix(args.matrix).rows
    started = time.perf_counter()
    predictor = PromptPredictor.train(
        rows,
        encoder=args.encoder,
        min_rows=args.min_rows,
        censored_at="auto" if args.censored_at is None else (None if args.censored_at == 0 else args.censored_at),
        source=str(args.matrix),
    )
    predictor.save(args.out)
    spec = predictor.spec
    models: dict[str, dict[str, Any]] = {}
    for m, length in spec.lengths.items():
        score = spec.scores.get(m)
        models[m] = {
            "rows": length.n_rows,
            "mean_score": round(score.mean_score, 4) if score is not None else None,
            "score_form": score.form if score is not None else None,
            "cv_log_loss": score.cv_log_loss if score is not None else None,
            "cv_log_loss_task_only": score.cv_log_loss_task_only if score is not None else None,
            "cv_log_loss_mean_only": score.cv_log_loss_mean_only if score is not None else None,
            "length_form": length.form,
            "cv_length_median_ape": length.cv_median_ape,
            "cv_length_median_ape_task_only": length.cv_median_ape_task_only,
            "censored_at": length.censored_at,
            "censored_rows": length.n_censored,
        }
    train_s = round(time.perf_counter() - started, 2)
    if args.json:
        summary = {"out": str(args.out), "encoder": predictor.spec.encoder, "train_s": train_s, "models": models}
        print(json.dumps(summary, indent=2))
        return 0
    print(f"wrote {args.out}: encoder {predictor.spec.encoder}, {train_s} s")
    for m, info in models.items():
        print(f"  {m}: {info['rows']} rows, censored {info['censored_rows']}")
        if info["mean_score"] is not None:
            cv = info["cv_log_loss"]
            held = (
                ""
                if cv is None
                else (
                    f"; held-out log-loss {cv:.3f}, per-task means {info['cv_log_loss_task_only']:.3f}, "
                    f"mean only {info['cv_log_loss_mean_only']:.3f}"
                )
            )
            print(f"    score: mean {info['mean_score']}, form {info['score_form']}{held}")
        ape, task_ape = info["cv_length_median_ape"], info["cv_length_median_ape_task_only"]
        held = (
            "" if ape is None or task_ape is None else f"; held-out median APE {ape:.3f}, per-task means {task_ape:.3f}"
        )
        print(f"    length: form {info['length_form']}{held}")
    left_out = sorted({r.model for r in rows} - set(models))
    if left_out:
        say(f"left out (fewer than {args.min_rows} rows; their profile accuracy is used): {', '.join(left_out)}")
    return 0


__all__ = ["add_parser", "run"]
