"""``energyrouter explain``: why the scheduler picks what it picks, as a table or JSON.

Prompt tokens are counted with each model's own tokenizer when it can be loaded
locally (the prompt rendered with its chat template, as calibration measured
it); otherwise characters / 4, and the output says which.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from typing import Any

from langchain_energyrouter.decide.scheduler import Decision, Scheduler
from langchain_energyrouter.decide.scoring import NORMALIZERS, PRESETS, Weights
from langchain_energyrouter.errors import WeightsError
from langchain_energyrouter.profile import EnergyProfile

APPROX = "chars/4 (approximation: tokenizer not available locally)"


def _local_tokenizer(name: str, model_id: str | None) -> Any | None:
    """The model's tokenizer if it is on this machine (never the network), else None."""
    try:
        from transformers import AutoTokenizer

        from langchain_energyrouter.models import resolve_model
    except ImportError:
        return None
    for candidate in [c for c in (model_id, name) if c]:
        try:
            resolved = resolve_model(candidate)
        except Exception:  # unknown name, missing package: try the next candidate, then approximate
            continue
        if resolved.kind == "directory":
            source = resolved.source
        elif resolved.cache_path is not None and resolved.is_cached:
            source = str(resolved.cache_path)
        else:
            continue
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except Exception:  # a broken or partial directory: approximate instead
            continue
        if resolved.embedded is not None and resolved.embedded.chat_template is not None:
            tokenizer.chat_template = resolved.embedded.chat_template  # as load_chat_model installs it
        return tokenizer
    return None


def count_tokens(
    profile: EnergyProfile, prompt: str, models: Iterable[str], *, use_tokenizers: bool = True
) -> tuple[dict[str, int], dict[str, str]]:
    """Prompt tokens per model, and how each was counted (``tokenizer`` or the approximation)."""
    from langchain_energyrouter.calibration.runner import encode_prompt

    counts: dict[str, int] = {}
    methods: dict[str, str] = {}
    for name in models:
        tokenizer = _local_tokenizer(name, profile.models[name].model_id) if use_tokenizers else None
        if tokenizer is not None:
            counts[name] = len(encode_prompt(tokenizer, prompt))
            methods[name] = "tokenizer"
        else:
            counts[name] = max(1, math.ceil(len(prompt) / 4))
            methods[name] = APPROX
    return counts, methods


def as_json(decision: Decision, methods: Mapping[str, str], prompt: str) -> dict[str, Any]:
    data = decision.as_dict()
    data["prompt_chars"] = len(prompt)
    data["token_counting"] = dict(methods)
    data["approximate_token_counts"] = any(m != "tokenizer" for m in methods.values())
    return data


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(decision: Decision, methods: Mapping[str, str]) -> str:
    """A plain-text table of every candidate, winner first, with header lines saying how it was computed."""
    w = decision.weights
    lines = [
        f"weights: accuracy {w.accuracy:.2f}, energy {w.energy:.2f}, time {w.time:.2f}   "
        f"normalization: {decision.normalization}   max output tokens: {decision.max_output_tokens or 'none'}",
    ]
    if decision.energy_method == "estimate":
        lines.append("energy: ESTIMATED joules (the profile was measured with the estimate meter, not hardware)")
    else:
        lines.append(f"energy: measured by {decision.energy_method} when profiled")
    approx = sorted(n for n, m in methods.items() if m != "tokenizer")
    if approx:
        lines.append(f"tokens: {APPROX} for {', '.join(approx)}")
    header = (
        "",
        "model",
        "in tok",
        "pred out",
        "runtime s",
        "energy J",
        "accuracy",
        "acc term",
        "energy term",
        "time term",
        "cost",
        "note",
    )
    order = list(decision.ranking) + [n for n in decision.candidates if n not in decision.ranking]
    rows = []
    for name in order:
        c = decision.candidates[name]
        note = c.excluded or ""
        if c.flags:
            note = (note + "; " if note else "") + ", ".join(c.flags)
        rows.append(
            (
                "*" if name == decision.model else "",
                name,
                str(c.input_tokens),
                f"{c.predicted_output_tokens:.1f}",
                f"{c.predicted_runtime_s:.3g}",
                f"{c.predicted_energy_j:.3g}",
                f"{c.accuracy:.3f}",
                _fmt(c.accuracy_term, ".3f"),
                _fmt(c.energy_term, ".3f"),
                _fmt(c.time_term, ".3f"),
                _fmt(c.cost, ".3f"),
                note or ("excluded" if c.cost is None else ""),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10}
    for r in [header, *rows]:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(header))]
        lines.append("  ".join(cells).rstrip())
    verdict = f"chosen: {decision.model}" + (" (forced)" if decision.forced else "")
    if decision.note:
        verdict += f" - {decision.note}"
    lines.append(verdict + "   (cost: weighted sum of the terms, lower is better; * marks the choice)")
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------
def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``explain``."""
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="show the routing decision for a prompt",
        description="Decide, without running anything, which of a profile's models a prompt goes to, and print "
        "every candidate's predicted tokens, runtime, energy, accuracy, normalised terms and cost (the "
        "weighted sum of the terms: lower is better).",
    )
    p.add_argument("prompt", help="the prompt to route")
    p.add_argument("--profile", required=True, help="profile JSON")
    p.add_argument(
        "--weights", help="A,E,T (accuracy, energy, time) or a preset: accuracy-first, balanced, energy-first"
    )
    p.add_argument("--normalization", default="minmax", choices=sorted(NORMALIZERS), help="default: minmax")
    p.add_argument("--max-tokens", type=int, help="the request's output cap")
    p.add_argument("--task-type", help="use per-task accuracy")
    p.add_argument("--models", help="comma-separated subset of the profile's models")
    p.add_argument("--approx-tokens", action="store_true", help="count chars/4 instead of loading tokenizers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _weights(text: str | None) -> Any:
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
