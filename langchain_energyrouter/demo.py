"""``energyrouter demo``: route real prompts across the embedded default models.

Builds an :class:`~langchain_energyrouter.router.EnergyAwareRouter` over the two
packaged models (SmolLM2-135M-Instruct and Gemma-3-270M) with the committed CPU
reference profile, answers a handful of prompts under three weight presets, and
prints, per call, the chosen model, predicted vs measured runtime and energy, and
the start of the answer. At the end it compares the totals with always using the
larger model (measured by running it on the same prompts).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

DEMO_PROMPTS: tuple[tuple[str, str], ...] = (
    ("factual", "What is the capital of France?"),
    ("arithmetic", "What is 7 plus 5? Answer with a number."),
    ("instruction", "Write one sentence about the sea."),
    ("factual", "Which planet is known as the Red Planet?"),
    ("instruction", "List three colours of the rainbow."),
)
"""(task type, prompt) pairs the demo answers; task types select per-task accuracy."""

DEMO_PRESETS: tuple[str, ...] = ("accuracy-first", "balanced", "energy-first")


@dataclass(frozen=True)
class CallRecord:
    """One routed call as the demo reports it."""

    preset: str
    prompt: str
    model: str
    predicted_runtime_s: float
    runtime_s: float
    predicted_energy_j: float
    energy_j: float | None
    method: str
    answer: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (shared with the ``energyrouter`` CLI)."""
    parser.add_argument("--profile", default="cpu-reference", help="profile path or reference name")
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"], help="models to route")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="output cap per answer (tokens)")
    parser.add_argument("--prompts", type=int, default=len(DEMO_PROMPTS), help="how many demo prompts to answer")
    parser.add_argument("--presets", nargs="+", default=list(DEMO_PRESETS), help="weight presets (see scoring.PRESETS)")


def _load_profile(value: str) -> Any:
    from pathlib import Path

    from langchain_energyrouter.profile import EnergyProfile

    if Path(value).suffix == ".json" or Path(value).exists():
        return EnergyProfile.load(value)
    return EnergyProfile.reference(value)


def _cell(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> list[CallRecord]:
    """Run the demo and print its table; returns the routed calls."""

    from langchain_energyrouter.models import load_chat_model
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.scoring import PRESETS

    _quiet_transformers()
    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"Unknown preset(s) {unknown}; choose from {sorted(PRESETS)}.")
    profile = _load_profile(args.profile)
    models = {}
    for name in args.models:
        start = time.perf_counter()
        models[name] = load_chat_model(name, max_new_tokens=args.max_new_tokens)
        print(f"loaded {name} in {time.perf_counter() - start:.1f} s", file=out, flush=True)
    router = EnergyAwareRouter(models=models, profile=profile, max_tokens=args.max_new_tokens)
    prompts = DEMO_PROMPTS[: max(1, args.prompts)]
    larger = _larger_model(router, prompts[0][1])

    header = (
        f"{'preset':<15} {'prompt':<34} {'model':<13} {'pred s':>7} {'meas s':>7} {'pred J':>7} {'meas J':>7}  answer"
    )
    estimated = " (estimates on this hardware)" if profile.energy_method == "estimate" else ""
    print(f"\nenergy method of the profile: {profile.energy_method}{estimated}", file=out)
    print(header, file=out)
    print("-" * len(header), file=out, flush=True)
    records: list[CallRecord] = []
    # (model, prompt) -> one measured run, for the "always this model" baselines
    single: dict[tuple[str, str], CallRecord] = {}
    for preset in args.presets:
        for task_type, prompt in prompts:
            record = _call(router, preset, prompt, task_type, weights=PRESETS[preset])
            records.append(record)
            single.setdefault((record.model, prompt), record)
            print(_row(record), file=out, flush=True)
    for name in models:
        for task_type, prompt in prompts:
            if (name, prompt) not in single:
                single[name, prompt] = _call(router, f"always {name}", prompt, task_type, model=name)
    baselines = {name: [single[name, p] for _, p in prompts] for name in models}
    _print_totals(records, baselines, larger, out)
    router.close()
    return records


def _larger_model(router: Any, prompt: str) -> str:
    """The model with the most parameters (embedded models), else the costliest by prediction."""
    from langchain_core.messages import HumanMessage

    from langchain_energyrouter.models import EMBEDDED_MODELS

    names = list(router.candidates)
    if all(n in EMBEDDED_MODELS for n in names):
        return max(names, key=lambda n: EMBEDDED_MODELS[n].parameters)
    decision = router.explain([HumanMessage(prompt)])
    return max(names, key=lambda n: decision.candidates[n].predicted_energy_j)


def _quiet_transformers() -> None:
    # A command-line demo: the weight-loading progress bars would bury the table.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _call(router: Any, preset: str, prompt: str, task_type: str, **options: Any) -> CallRecord:
    from langchain_core.messages import HumanMessage

    message = router.invoke([HumanMessage(prompt)], task_type=task_type, **options)
    routing = message.response_metadata["routing"]
    energy = message.response_metadata["energy"]
    return CallRecord(
        preset=preset,
        prompt=prompt,
        model=routing["model"],
        predicted_runtime_s=routing["predicted_runtime_s"],
        runtime_s=energy["runtime_s"],
        predicted_energy_j=routing["predicted_energy_j"],
        energy_j=energy["energy_j"],
        method=energy["method"],
        answer=str(message.content),
    )


def _row(r: CallRecord) -> str:
    measured = "n/a" if r.energy_j is None else f"{r.energy_j:7.1f}"
    est = "~" if r.method == "estimate" else " "
    return (
        f"{r.preset:<15} {_cell(r.prompt, 34):<34} {r.model:<13} {r.predicted_runtime_s:7.2f} {r.runtime_s:7.2f} "
        f"{r.predicted_energy_j:7.1f} {est}{measured:>6}  {_cell(r.answer, 40)}"
    )


def _print_totals(routed: list[CallRecord], baselines: dict[str, list[CallRecord]], larger: str, out: TextIO) -> None:
    """Per preset: the routed calls' totals; per model: always sending every prompt to it."""

    def total(records: list[CallRecord]) -> tuple[float, float]:
        return sum(r.runtime_s for r in records), sum(r.energy_j or 0.0 for r in records)

    label = " (estimated)" if routed and routed[0].method == "estimate" else ""
    _, larger_j = total(baselines[larger])
    rows: list[tuple[str, list[CallRecord]]] = []
    for preset in dict.fromkeys(r.preset for r in routed):
        calls = [r for r in routed if r.preset == preset]
        used = ", ".join(f"{m} x{sum(r.model == m for r in calls)}" for m in sorted({r.model for r in calls}))
        rows.append((f"{preset} ({used})", calls))
    for name, calls in baselines.items():
        rows.append((f"always {name}" + (" (the larger)" if name == larger else ""), calls))
    width = max(len(title) for title, _ in rows) + 2
    print("", file=out)
    print(
        f"{'per set of ' + str(len(baselines[larger])) + ' prompts':<{width}} {'runtime s':>10} "
        f"{'energy J' + label:>20} {'vs always ' + larger:>24}",
        file=out,
    )
    for title, calls in rows:
        runtime_s, energy_j = total(calls)
        change = f"{100 * (energy_j / larger_j - 1):+.0f}% energy" if larger_j > 0 else "n/a"
        print(f"{title:<{width}} {runtime_s:10.2f} {energy_j:20.1f} {change:>24}", file=out)
    errors = [abs(r.predicted_runtime_s - r.runtime_s) / r.runtime_s for r in routed if r.runtime_s > 0]
    if errors:
        # Most of this error is output length: a model may answer in two tokens or fill its budget.
        mape = 100 * sum(errors) / len(errors)
        print(f"runtime prediction error over the routed calls: {mape:.0f}% (MAPE)", file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="energyrouter demo", description=__doc__)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0
