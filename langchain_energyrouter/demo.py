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
    from langchain_core.messages import HumanMessage

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
    # "The larger model": the one the profile predicts to cost most energy on a typical prompt.
    typical = router.explain([HumanMessage(prompts[0][1])])
    larger = max(typical.candidates, key=lambda m: typical.candidates[m].predicted_energy_j)

    header = (
        f"{'preset':<15} {'prompt':<34} {'model':<13} {'pred s':>7} {'meas s':>7} {'pred J':>7} {'meas J':>7}  answer"
    )
    estimated = " (estimates on this hardware)" if profile.energy_method == "estimate" else ""
    print(f"\nenergy method of the profile: {profile.energy_method}{estimated}", file=out)
    print(header, file=out)
    print("-" * len(header), file=out, flush=True)
    records: list[CallRecord] = []
    larger_runs: dict[str, CallRecord] = {}
    for preset in args.presets:
        for task_type, prompt in prompts:
            record = _call(router, preset, prompt, task_type, weights=PRESETS[preset])
            records.append(record)
            if record.model == larger:
                larger_runs.setdefault(prompt, record)
            print(_row(record), file=out, flush=True)
    for task_type, prompt in prompts:
        if prompt not in larger_runs:
            larger_runs[prompt] = _call(router, f"always {larger}", prompt, task_type, model=larger)
    _print_totals(records, [larger_runs[p] for _, p in prompts] * len(args.presets), larger, out)
    router.close()
    return records


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


def _print_totals(routed: list[CallRecord], baseline: list[CallRecord], larger: str, out: TextIO) -> None:
    def total(records: list[CallRecord]) -> tuple[float, float]:
        return sum(r.runtime_s for r in records), sum(r.energy_j or 0.0 for r in records)

    routed_s, routed_j = total(routed)
    base_s, base_j = total(baseline)
    method = routed[0].method if routed else "none"
    label = " (estimated)" if method == "estimate" else ""
    chosen = {m: sum(r.model == m for r in routed) for m in sorted({r.model for r in routed})}
    print("", file=out)
    print(f"calls per model: {chosen}", file=out)
    print(f"{'':<28} {'runtime s':>10} {'energy J' + label:>20}", file=out)
    print(f"{'routed (' + str(len(routed)) + ' calls)':<28} {routed_s:10.2f} {routed_j:20.1f}", file=out)
    print(f"{'always ' + larger:<28} {base_s:10.2f} {base_j:20.1f}", file=out)
    errors = [abs(r.predicted_runtime_s - r.runtime_s) / r.runtime_s for r in routed if r.runtime_s > 0]
    if errors:
        # Most of this error is output length: the profile predicts it from the prompt's length
        # alone, while a model may answer in two tokens or fill its budget.
        print(
            f"runtime prediction error over the routed calls: {100 * sum(errors) / len(errors):.0f}% (MAPE)", file=out
        )
    if base_j > 0 and base_s > 0:
        runtime_change = 100 * (routed_s / base_s - 1)
        energy_change = 100 * (routed_j / base_j - 1)
        print(f"{'routed vs always-larger':<28} {runtime_change:+9.0f}% {energy_change:+19.0f}%", file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="energyrouter demo", description=__doc__)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0
